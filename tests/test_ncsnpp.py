"""NCSN++ / DDGAN generator, FIR resampling and DDGAN discriminators.

Golden values: parameter counts and MACs of the official constructors
(NVlabs/denoising-diffusion-gan, VinAIResearch/WaveDiff and thanhluantrinh/LDDGAN ``run.sh``
settings; Trinh and Hamagami 2024, Table 2),
the FIR against a direct loop implementation of upfirdn2d, and tiny-config behaviour checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from genbench import registry
from genbench.backbones.denoiser import Denoiser
from genbench.backbones.discriminator import (
    DiscriminatorLarge,
    DiscriminatorSmall,
    minibatch_stddev,
)
from genbench.backbones.layers import (
    AdaptiveGroupNorm,
    AttentionBlock,
    conv_downsample_2d,
    downsample_2d,
    setup_fir_kernel,
    upfirdn2d,
    upsample_2d,
    upsample_conv_2d,
)
from genbench.backbones.ncsnpp import NCSNpp, ncsnpp
from genbench.errors import UserError

# Official run.sh / README commands, counted and measured by running the official constructors;
# Trinh and Hamagami 2024, Table 2 prints 48.43M / 7.05 G (DDGAN), 33.37M / 1.67 G (WDDGAN).
PRESETS = {
    "ddgan": (dict(in_channels=3, resolution=32), 48_432_515, 7.052e9),
    "wddgan": (dict(in_channels=12, resolution=16, ch_mult=(1, 2, 2), attn_resolutions=(32,)),
               33_370_124, 1.671e9),
    "lddgan": (dict(in_channels=4, resolution=16, ch_mult=(1, 2, 2), attn_resolutions=(32,),
                    z_dim=50), 33_329_668, 1.665e9),
}
TINY = dict(in_channels=3, resolution=8, nf=16, ch_mult=(1, 2), num_res_blocks=1,
            attn_resolutions=(4,), z_dim=8, z_emb_dim=16, n_mlp=1)
FIR = (1, 3, 3, 1)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def macs(fn, *args) -> float:
    """Multiply-accumulates of one call: FlopCounterMode total / 2 (fvcore's convention)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() / 2


def tiny(**overrides) -> NCSNpp:
    torch.manual_seed(0)
    return ncsnpp(**{**TINY, **overrides})


def tiny_inputs(net: NCSNpp, batch: int = 2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, net.in_channels, net.resolution, net.resolution, generator=g)
    z = torch.randn(batch, net.z_dim, generator=g) if net.z_dim else None
    return x, torch.arange(batch) % 4, z


# ---------------------------------------------------------------------------------------------
# FIR up/down-sampling
# ---------------------------------------------------------------------------------------------


def upfirdn_loops(x: np.ndarray, k: np.ndarray, up: int, down: int, p0: int, p1: int):
    """StyleGAN2's upfirdn2d on one [H, W] image, written as plain loops (the reference)."""
    h, w = x.shape
    stuffed = np.zeros((h * up, w * up))
    stuffed[::up, ::up] = x
    size = h * up + p0 + p1
    padded = np.zeros((size, w * up + p0 + p1))
    for i in range(size):
        for j in range(padded.shape[1]):
            si, sj = i - p0, j - p0
            if 0 <= si < h * up and 0 <= sj < w * up:
                padded[i, j] = stuffed[si, sj]
    kh = k.shape[0]
    out = np.zeros((size - kh + 1, padded.shape[1] - kh + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            for a in range(kh):
                for b in range(kh):  # true convolution: the kernel is flipped
                    out[i, j] += padded[i + a, j + b] * k[kh - 1 - a, kh - 1 - b]
    return out[::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 2)), (1, 2, (1, 1)), (2, 1, (2, 1)),
                                         (2, 1, (-1, 0)), (2, 2, (1, 1)), (1, 2, (-1, 2))])
def test_upfirdn2d_matches_loop_reference(up, down, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    k = torch.rand(4, 4, generator=g, dtype=torch.float64)  # asymmetric: catches a missed flip
    got = upfirdn2d(x, k, up=up, down=down, pad=pad)
    for b in range(2):
        for c in range(3):
            want = upfirdn_loops(x[b, c].numpy(), k.numpy(), up, down, *pad)
            np.testing.assert_allclose(got[b, c].numpy(), want, atol=1e-12)


def test_fir_keeps_constant_images_constant():
    k = setup_fir_kernel(FIR)
    const = torch.full((1, 2, 12, 12), 0.7)
    down, up = downsample_2d(const, k), upsample_2d(const, k)
    assert down.shape == (1, 2, 6, 6) and up.shape == (1, 2, 24, 24)
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full((1, 2, 4, 4), 0.7))
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full((1, 2, 20, 20), 0.7))
    torch.testing.assert_close(downsample_2d(up, k)[..., 2:-2, 2:-2], torch.full((1, 2, 8, 8), 0.7))


def test_box_fir_is_nearest_up_and_average_down_and_recovers():
    box = setup_fir_kernel((1, 1))
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    up = upsample_2d(x, box)
    torch.testing.assert_close(up, x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    torch.testing.assert_close(downsample_2d(x, box), F.avg_pool2d(x, 2))
    torch.testing.assert_close(downsample_2d(up, box), x)


def test_fused_resampling_convs_equal_unfused_in_the_interior():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64)
    k = setup_fir_kernel(FIR).double()
    up = upsample_conv_2d(x, w, k)
    ref = F.conv2d(upsample_2d(x, k), w, padding=1)
    assert up.shape == ref.shape == (2, 5, 16, 16)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])  # pads once at the edge
    down = conv_downsample_2d(x, w, k)
    ref = downsample_2d(F.conv2d(x, w, padding=1), k)
    assert down.shape == ref.shape == (2, 5, 4, 4)
    torch.testing.assert_close(down[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])


def test_fir_is_counted_as_a_convolution_and_has_gradients():
    k = setup_fir_kernel(FIR)
    x = torch.randn(1, 8, 16, 16)
    assert macs(downsample_2d, x, k) == 8 * 8 * 8 * 16  # only the kept outputs are computed
    assert macs(upsample_2d, x, k) == 8 * 16 * 16 * 16  # transposed conv: per input sample
    xd = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, k.double(), up=2, pad=(2, 1)), (xd,))


# ---------------------------------------------------------------------------------------------
# Published configurations: parameters and MACs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameters_and_macs_match_official(name):
    kwargs, params, ref_macs = PRESETS[name]
    with torch.device("meta"):
        net = ncsnpp(**kwargs)
        assert n_params(net) == params
        c, r = kwargs["in_channels"], kwargs["resolution"]
        got = macs(net, torch.zeros(1, c, r, r), torch.tensor([1]), torch.zeros(1, net.z_dim))
    # The official CPU path filters at full rate before decimating (18.2M MACs for DDGAN);
    # here only kept samples are computed, so the total is ~0.2% lower.
    assert got == pytest.approx(ref_macs, rel=2.5e-3)  # known gap 0.18%: FIR at kept samples
    assert got < ref_macs


def test_score_sde_ncsnpp_cifar10_parameter_count():
    # yang-song/score_sde_pytorch configs/vp/cifar10_ncsnpp_continuous.py; 62,693,251 counted
    # by running the official score_sde_pytorch constructor.
    with torch.device("meta"):
        net = ncsnpp(in_channels=3, resolution=32, num_res_blocks=4, dropout=0.1, z_dim=0)
    assert n_params(net) == 62_693_251


def test_official_checkpoint_names():
    net = tiny()
    keys = net.state_dict().keys()
    # Released netG_*.pth keys (NVlabs/denoising-diffusion-gan, after stripping ``module.``)
    # look like all_modules.N.GroupNorm_0.style.weight, z_transform.*
    assert "all_modules.3.GroupNorm_0.style.weight" in keys
    assert "z_transform.1.weight" in keys and "z_transform.3.bias" in keys
    assert not any("fir_filter" in k for k in keys)


# ---------------------------------------------------------------------------------------------
# Behaviour at tiny size
# ---------------------------------------------------------------------------------------------


def test_x0_generator_shape_range_and_finiteness():
    backbone = tiny(init_scale=1.0)  # non-zero output conv, so tanh saturation is exercised
    net = Denoiser(backbone, output="x0", z_dim=8)
    x, t, z = tiny_inputs(backbone, batch=3)
    out = net(x, t, z)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.abs().max() <= 1.0
    assert (backbone.in_channels, backbone.resolution, net.z_dim, net.output) == (3, 8, 8, "x0")


def test_the_backbone_head_is_linear_and_the_x0_head_is_its_tanh():
    backbone = tiny(init_scale=1.0)
    x, t, z = tiny_inputs(backbone)
    raw = backbone(x, t, z)
    assert raw.abs().max() > 1.0  # the plain network's head is linear
    torch.testing.assert_close(Denoiser(backbone, output="eps", z_dim=8)(x, t, z), raw)
    torch.testing.assert_close(Denoiser(backbone, output="x0", z_dim=8)(x, t, z), raw.tanh())


def test_backward_reaches_every_trainable_parameter():
    net = tiny(init_scale=1.0)
    x, t, z = tiny_inputs(net)
    net(x, t, z).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_seeded_init_and_forward_are_deterministic():
    a, b = tiny(), tiny()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    x, t, z = tiny_inputs(a)
    assert torch.equal(a(x, t, z), b(x, t, z))


def test_conditioning_inputs_matter_and_t_dtype_does_not():
    net = tiny(init_scale=1.0)
    x, t, z = tiny_inputs(net)
    base = net(x, t, z)
    assert not torch.allclose(base, net(x, t, -z))
    assert not torch.allclose(base, net(x, t + 1, z))
    torch.testing.assert_close(base, net(x, t.float(), z))
    torch.testing.assert_close(net(x, torch.tensor(2), z), net(x, torch.tensor([2, 2]), z))


def test_input_errors():
    net = tiny()
    x, t, z = tiny_inputs(net)
    with pytest.raises(ValueError, match="needs z"):
        net(x, t, None)
    with pytest.raises(ValueError, match=r"\[B, 3, 8, 8\].*\[2, 3, 16, 16\]"):
        net(torch.zeros(2, 3, 16, 16), t, z)
    with pytest.raises(ValueError, match="z must have shape"):
        net(x, t, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="t must have shape"):
        net(x, torch.zeros(3), z)


def test_eps_network_without_z():
    net = tiny(z_dim=0)
    assert not hasattr(net, "z_transform") and net.z_dim == 0
    assert not any(isinstance(m, AdaptiveGroupNorm) for m in net.modules())
    x, t, _ = tiny_inputs(net)
    assert net(x, t).shape == x.shape
    with pytest.raises(ValueError, match="no z input"):
        net(x, t, torch.zeros(2, 8))


@pytest.mark.parametrize("resblock_type", ["biggan", "ddpm"])
@pytest.mark.parametrize("fir", [True, False])
@pytest.mark.parametrize("progressive,progressive_input,combine", [
    ("none", "residual", "sum"), ("none", "none", "sum"), ("output_skip", "input_skip", "sum"),
    ("output_skip", "input_skip", "cat"), ("residual", "residual", "sum")])
def test_architecture_variants_run(resblock_type, fir, progressive, progressive_input, combine):
    net = tiny(resblock_type=resblock_type, fir=fir, progressive=progressive,
               progressive_input=progressive_input, progressive_combine=combine, init_scale=1.0)
    x, t, z = tiny_inputs(net)
    out = net(x, t, z)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_fourier_embedding_takes_continuous_time():
    net = tiny(embedding_type="fourier", z_dim=0)
    x, _, _ = tiny_inputs(net)
    out = net(x, torch.tensor([0.0, 0.5]))
    assert torch.isfinite(out).all()
    assert not net.all_modules[0].W.requires_grad


def test_adaptive_group_norm_starts_as_plain_group_norm():
    norm = AdaptiveGroupNorm(4, 16, style_dim=8)
    torch.testing.assert_close(norm.style.bias, torch.cat([torch.ones(16), torch.zeros(16)]))
    torch.nn.init.zeros_(norm.style.weight)
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(norm(x, torch.randn(2, 8)), F.group_norm(x, 4, eps=1e-6))


@pytest.mark.parametrize("bad,match", [
    (dict(resolution=12, ch_mult=(1, 2, 2, 2)), "not divisible"),
    (dict(in_channels=0), "in_channels"),
    (dict(resblock_type="resnet"), "resblock_type"),
    (dict(ch_mult="122"), "ch_mult"),
    (dict(nf=6), "group norm"),
    (dict(fir_kernel=(1,)), "fir_kernel"),
])
def test_invalid_arguments_raise_user_errors(bad, match):
    with pytest.raises(UserError, match=match):
        ncsnpp(**{**TINY, **bad})


def test_the_backbone_takes_no_output_argument():
    with pytest.raises(UserError, match="takes no argument.*output"):  # the Denoiser decides
        registry.create("backbone", "ncsnpp", **TINY, output="eps")


def test_unreached_attention_resolution_means_no_attention():
    # WDDGAN/LDDGAN pass attn_resolutions 32 at 16 px: attention only in the middle.
    # tiny: 4x4 level (one down block + the up path) plus the middle block
    assert sum(isinstance(m, AttentionBlock) for m in tiny().all_modules) == 3
    assert sum(isinstance(m, AttentionBlock) for m in tiny(attn_resolutions=(32,)).all_modules) == 1


def test_registry_builds_from_yaml_style_lists():
    yaml_like = {**TINY, "ch_mult": [1, 2], "attn_resolutions": [4], "fir_kernel": [1, 3, 3, 1]}
    net = registry.create("backbone", "ncsnpp", **yaml_like)
    assert isinstance(net, NCSNpp) and net.config.ch_mult == (1, 2)


# ---------------------------------------------------------------------------------------------
# Discriminators
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels,layers,params", [(3, 4, 12_741_633), (12, 3, 7_630_593),
                                                    (4, 3, 7_628_545)])
def test_small_discriminator_parameter_counts(channels, layers, params):
    with torch.device("meta"):
        D = registry.create("discriminator", "small", in_channels=channels, num_layers=layers)
        assert n_params(D) == params


def test_large_discriminator_parameter_count_and_shape():
    with torch.device("meta"):  # 27,737,217: official Discriminator_large(nc=6, ngf=64, 256)
        assert n_params(registry.create("discriminator", "large", in_channels=3)) == 27_737_217
    torch.manual_seed(0)
    disc = DiscriminatorLarge(3, ngf=8, t_emb_dim=16)
    x = torch.randn(2, 3, 64, 64)
    assert disc(x, torch.tensor([0, 1]), x).shape == (2,)


def test_small_discriminator_forward_backward_and_r1():
    torch.manual_seed(0)
    disc = DiscriminatorSmall(3, ngf=8, t_emb_dim=16)
    x_k = torch.randn(6, 3, 16, 16, requires_grad=True)  # 6: not a multiple of the stddev group
    logits = disc(x_k, torch.arange(6) % 4, torch.randn(6, 3, 16, 16))
    assert logits.shape == (6,) and torch.isfinite(logits).all()
    (grad,) = torch.autograd.grad(logits.sum(), x_k, create_graph=True)
    grad.square().sum().backward()  # R1 needs a double backward
    no_grad = [n for n, p in disc.named_parameters() if p.grad is None]
    assert no_grad == ["end_linear.bias"]  # a constant offset has no input gradient


def test_discriminator_is_deterministic_and_conditions_on_t():
    def build():
        torch.manual_seed(0)
        return DiscriminatorSmall(4, ngf=8, t_emb_dim=16, num_layers=3)

    a, b = build(), build()
    x, y = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    t = torch.tensor([0, 1, 2, 3])
    assert torch.equal(a(x, t, y), b(x, t, y))
    with torch.no_grad():  # the official init zeroes the last conv of each branch; wake them up
        for p in a.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    assert not torch.allclose(a(x, t, y), a(x, 3 - t, y))
    assert a.conv3 is not None and not hasattr(a, "conv4")


def test_minibatch_stddev_of_identical_samples_is_tiny():
    x = torch.randn(1, 5, 3, 3).repeat(4, 1, 1, 1)
    out = minibatch_stddev(x)
    assert out.shape == (4, 6, 3, 3)
    torch.testing.assert_close(out[:, -1], torch.full((4, 3, 3), 1e-4))


def test_discriminator_errors():
    with pytest.raises(UserError, match="unknown discriminator"):
        registry.create("discriminator", "medium", in_channels=3)
    with pytest.raises(UserError, match="num_layers"):
        registry.create("discriminator", "small", in_channels=3, num_layers=5)
    disc = DiscriminatorSmall(3, ngf=8, t_emb_dim=16)
    with pytest.raises(ValueError, match="equal shape"):
        disc(torch.zeros(2, 3, 8, 8), torch.zeros(2), torch.zeros(2, 4, 8, 8))
