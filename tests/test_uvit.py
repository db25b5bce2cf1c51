"""U-ViT backbones (Bao et al. 2023) and their LDDGAN z-conditioned generator form.

Golden values: the official CIFAR-10 U-ViT-S/2 parameter count (baofff/U-ViT
``configs/cifar10_uvit_small.py``, 44.26M in Bao et al. 2023, here exact), LDDGAN Table 11's ViT
sizes (bracketed, not matched: the paper gives no layouts), MACs against an analytic count, and
tiny-config behaviour checks. Large builds run on the meta device, so no weights are allocated.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from genbench import registry
from genbench.backbones.denoiser import Denoiser
from genbench.backbones.uvit import SIZES as SIZE_LAYOUTS
from genbench.backbones.uvit import AdaptiveLayerNorm, UViT, divisors, unpatchify, uvit
from genbench.config import compose, to_plain
from genbench.errors import UserError
from genbench.harness.build import build_backbone
from genbench.metrics.cost import measure_flops

OFFICIAL_S2_PARAMS = 44_255_328  # counted from the official constructor; Bao et al.: 44.26M
TABLE11 = {"uvit_tiny": 28.01e6, "uvit_mid": 43.32e6, "uvit_large": 56.17e6}
GENERATOR = dict(in_channels=4, resolution=16, z_dim=50)  # LDDGAN CIFAR latent
# Measured here (see registry/backbone/uvit_*.yaml): generator params, eps 3x32x32 params, and
# batch-1 MACs of each (FlopCounterMode total / 2, attention included; equal to analytic_macs).
SIZES = {
    "uvit_tiny": (18_490_468, 14_668_576, 979_472_768, 4_204_023_424),
    "uvit_mid": (51_253_156, 44_255_328, 2_927_040_000, 12_200_808_448),
    "uvit_large": (59_128_228, 51_081_824, 3_379_764_736, 14_087_723_008),
}
TINY = dict(in_channels=3, resolution=8, patch_size=2, embed_dim=32, depth=2, num_heads=4,
            z_emb_dim=16, n_mlp=1)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measured(net: UViT):
    """genbench's count of one batch-1 forward (FlopCounterMode, total / 2 = MACs)."""
    device = next(net.parameters()).device
    x = torch.zeros(1, net.in_channels, net.resolution, net.resolution, device=device)
    z = torch.zeros(1, net.z_dim, device=device) if net.z_dim else None
    with torch.no_grad():
        return measure_flops(lambda: net(x, torch.tensor([1], device=device), z))


def macs(net: UViT) -> int:
    """Batch-1 multiply-accumulates as genbench counts them."""
    return measured(net).macs


def analytic_macs(net: UViT) -> int:
    """Batch-1 MACs of U-ViT (Bao et al. 2023, Fig. 1 / official ``libs/uvit.py``), term by term.

    C channels, R resolution, p patch, D width, M = int(mlp_ratio * D) MLP width; N = (R/p)^2
    patch tokens plus the time token: L = N + 1 tokens in every block. Only matmuls and convs
    multiply-add; norms, GELU, softmax, the sinusoidal time embedding and adds do not.
    """
    c = net.config
    C, R, p, D = c.in_channels, c.resolution, c.patch_size, c.embed_dim
    M = int(D * c.mlp_ratio)
    N = (R // p) ** 2
    L = N + 1
    total = N * D * C * p * p  # patch embedding: Conv2d(C, D, p, stride p) at N positions
    if c.mlp_time_embed:
        total += D * 4 * D + 4 * D * D  # time-token MLP: Linear(D, 4D), Linear(4D, D)
    block = (L * D * 3 * D  # qkv: Linear(D, 3D)
             + L * L * D  # attention scores Q K^T: H heads x L x L x D/H
             + L * L * D  # attention-weighted values A V: H heads x L x L x D/H
             + L * D * D  # attention output projection: Linear(D, D)
             + L * D * M + L * M * D)  # MLP: Linear(D, M), Linear(M, D)
    total += (c.depth + 1) * block  # depth/2 in-blocks, the mid block, depth/2 out-blocks
    if c.skip:
        total += (c.depth // 2) * L * 2 * D * D  # long skips: concat, Linear(2D, D)
    total += L * D * p * p * C  # head Linear(D, p^2 C), on all L tokens before the time token goes
    if c.conv_out:
        total += R * R * C * C * 9  # final Conv2d(C, C, 3, padding 1)
    if c.z_dim:  # LDDGAN generator: z mapping and a (gamma, beta) Linear per adaptive LayerNorm
        total += c.z_dim * c.z_emb_dim + c.n_mlp * c.z_emb_dim * c.z_emb_dim
        total += (c.depth + 1) * 2 * c.z_emb_dim * 2 * D
    return total


def on_meta(name: str, **kwargs) -> UViT:
    with torch.device("meta"):
        return registry.create("backbone", name, **kwargs)


def tiny(**overrides) -> UViT:
    torch.manual_seed(0)
    return uvit(**{**TINY, **overrides})


def tiny_inputs(net: UViT, batch: int = 2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, net.in_channels, net.resolution, net.resolution, generator=g)
    z = torch.randn(batch, net.z_dim, generator=g) if net.z_dim else None
    return x, torch.arange(batch) % 4, z


# ---------------------------------------------------------------------------------------------
# Sizes: the official U-ViT-S/2 and LDDGAN Table 11
# ---------------------------------------------------------------------------------------------


def test_official_cifar10_uvit_s2_parameter_count():
    with torch.device("meta"):
        net = uvit(in_channels=3, resolution=32, patch_size=2, embed_dim=512, depth=12,
                   num_heads=8, mlp_ratio=4, qkv_bias=False, mlp_time_embed=False)
    count = n_params(net)
    assert abs(count - 44.26e6) / 44.26e6 < 0.01
    assert count == OFFICIAL_S2_PARAMS
    assert len(net.in_blocks) == len(net.out_blocks) == 6  # "#layers" = depth + 1 = 13


def test_official_parameter_names_so_released_weights_load():
    names = set(tiny().state_dict())
    block = {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight",
             "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
             "mlp.fc2.weight", "mlp.fc2.bias"}
    want = {"pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight",
            "norm.bias", "decoder_pred.weight", "decoder_pred.bias", "final_layer.weight",
            "final_layer.bias", "out_blocks.0.skip_linear.weight", "out_blocks.0.skip_linear.bias"}
    for prefix in ("in_blocks.0.", "mid_block.", "out_blocks.0."):
        want |= {prefix + k for k in block}
    assert names == want  # official libs/uvit.py, depth 2, no class token, qkv_bias False


def test_sizes_bracket_table11_and_match_recorded_counts():
    got = {}
    for name, (gen_params, eps_params, gen_macs, eps_macs) in SIZES.items():
        gen = on_meta(name, **GENERATOR)
        eps = on_meta(name, in_channels=3, resolution=32)
        got[name] = n_params(gen)
        assert (got[name], n_params(eps)) == (gen_params, eps_params)
        assert (macs(gen), macs(eps)) == (gen_macs, eps_macs)
        assert (analytic_macs(gen), analytic_macs(eps)) == (gen_macs, eps_macs)
        print(f"{name}: generator {got[name] / 1e6:.2f}M (Table 11 {TABLE11[name] / 1e6:.2f}M), "
              f"{gen_macs / 1e9:.2f} GMACs; eps 3x32x32 {eps_params / 1e6:.2f}M, "
              f"{eps_macs / 1e9:.2f} GMACs")
    assert got["uvit_tiny"] < got["uvit_mid"] < got["uvit_large"]
    assert got["uvit_tiny"] <= min(TABLE11.values()) and got["uvit_large"] >= max(TABLE11.values())


@pytest.mark.parametrize("backend", [None, SDPBackend.MATH])
@pytest.mark.parametrize("overrides", [
    dict(z_dim=4),
    dict(skip=False, conv_out=False, mlp_time_embed=True, qkv_bias=True, mlp_ratio=3.0),
])
def test_macs_match_the_analytic_count_with_attention(backend, overrides):
    """Real weights on CPU: the default backend runs the fused CPU attention kernel, which
    torch's counter alone counts as zero; the math backend runs bmm. Both give the analytic
    count, whose attention share is (depth + 1) * 2 * L^2 * D."""
    net = tiny(**overrides)
    with sdpa_kernel(backend) if backend else torch.no_grad():
        counts = measured(net)
    attention = (net.config.depth + 1) * 2 * 17**2 * 32  # L = 1 + (8/2)^2 tokens, D = 32
    kernel = "aten.bmm" if backend else "aten._scaled_dot_product_flash_attention_for_cpu"
    assert counts.by_operator[kernel] == 2 * attention
    assert counts.macs == analytic_macs(net)


# ---------------------------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(z_dim=6),
    dict(skip=False, conv_out=False, mlp_time_embed=True, qkv_bias=True),
    dict(z_dim=6, patch_size=4, depth=4, drop_path=0.2),
    dict(patch_size=1, depth=0),
])
def test_shapes_finite_and_backward(overrides):
    net = tiny(**overrides).train()
    x, t, z = tiny_inputs(net)
    out = net(x, t, z)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.pos_embed.grad.abs().sum() > 0


def test_attributes_and_registry_names():
    net = tiny(z_dim=6)
    assert (net.in_channels, net.resolution, net.z_dim) == (3, 8, 6)
    assert registry.names("backbone", "uvit*") == ["uvit", "uvit_large", "uvit_mid", "uvit_tiny"]


def test_deterministic_under_manual_seed():
    a, b = tiny(z_dim=6), tiny(z_dim=6)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    x, t, z = tiny_inputs(a)
    assert torch.equal(a(x, t, z), b(x, t, z))
    assert torch.equal(a(x, t, z), a(x, t, z))


def test_x0_output_is_tanh_of_the_eps_head():
    backbone = tiny(z_dim=6)
    eps, x0 = (Denoiser(backbone, output=o, z_dim=6) for o in ("eps", "x0"))
    with torch.no_grad():  # make the head large, so tanh has to saturate
        backbone.final_layer.weight.mul_(50.0)
    x, t, z = tiny_inputs(backbone)
    linear, bounded = eps(x, t, z), x0(x, t, z)
    torch.testing.assert_close(linear, backbone(x, t, z))  # eps is the plain, linear head
    assert linear.abs().max() > 1.0
    assert bounded.abs().max() <= 1.0
    torch.testing.assert_close(bounded, torch.tanh(linear))


def test_output_depends_on_t_and_z():
    net = tiny(z_dim=6)
    x, t, z = tiny_inputs(net)
    base = net(x, t, z)
    assert not torch.allclose(base, net(x, t + 1, z))
    assert not torch.allclose(base, net(x, t, -z))
    assert torch.equal(net(x, torch.tensor(2), z), net(x, torch.tensor([2, 2]), z))


def test_adaptive_layer_norm_starts_as_identity_modulation():
    net = tiny(z_dim=6)
    norms = [m for m in net.modules() if isinstance(m, AdaptiveLayerNorm)]
    assert len(norms) == 2 * 3  # two per block, three blocks; the head's norm stays plain
    for norm in norms:
        assert torch.equal(norm.style.bias[:32], torch.ones(32))  # gamma
        assert torch.equal(norm.style.bias[32:], torch.zeros(32))  # beta
        assert norm.norm.weight is None
    # With the z-dependent part switched off, the adaptive norm is a plain LayerNorm.
    norm = norms[0]
    with torch.no_grad():
        norm.style.weight.zero_()
    h = torch.randn(2, 5, 32)
    torch.testing.assert_close(norm(h, torch.randn(2, 16)),
                               torch.nn.functional.layer_norm(h, (32,)))


def test_unpatchify_inverts_the_official_patch_layout():
    x = torch.randn(2, 3, 8, 8)
    p = 2  # official patchify: 'B C (h p1) (w p2) -> B (h w) (p1 p2 C)'
    tokens = x.reshape(2, 3, 4, p, 4, p).permute(0, 2, 4, 3, 5, 1).reshape(2, 16, p * p * 3)
    assert torch.equal(unpatchify(tokens, 3, p), x)


def test_drop_path_is_only_active_in_training():
    net = tiny(drop_path=0.5).eval()
    x, t, _ = tiny_inputs(net)
    assert torch.equal(net(x, t), net(x, t))


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_z_required_when_z_dim_positive_and_rejected_otherwise():
    gen, eps = tiny(z_dim=6), tiny()
    x, t, z = tiny_inputs(gen)
    with pytest.raises(ValueError, match="needs z"):
        gen(x, t)
    with pytest.raises(ValueError, match="z must have shape"):
        gen(x, t, z[:, :3])
    with pytest.raises(ValueError, match="no z input"):
        eps(x, t, z)
    with pytest.raises(ValueError, match="expects x of shape"):
        eps(x[:, :, :4, :4], t)


def test_patch_size_must_divide_resolution():
    with pytest.raises(UserError) as err:
        uvit(in_channels=4, resolution=16, patch_size=3)
    msg = str(err.value)
    assert msg == "uvit patch_size 3 does not divide resolution 16; use one of 1, 2, 4, 8, 16"
    with pytest.raises(UserError, match="use one of 1, 2, 3, 4, 6, 8, 12, 24"):
        registry.create("backbone", "uvit_mid", in_channels=3, resolution=24, patch_size=5)
    assert divisors(32) == [1, 2, 4, 8, 16, 32]


@pytest.mark.parametrize("overrides,match", [
    (dict(embed_dim=30, num_heads=4), "not divisible by num_heads 4"),
    (dict(depth=3), "must be an even number"),
    (dict(drop_path=1.0), "drop_path"),
    (dict(z_dim=-1), "z_dim"),
])
def test_bad_layouts_are_user_errors(overrides, match):
    with pytest.raises(UserError, match=match):
        uvit(**{**TINY, **overrides})


def test_size_factory_rejects_unknown_arguments():
    with pytest.raises(UserError, match="uvit_tiny takes no argument"):
        registry.create("backbone", "uvit_tiny", in_channels=3, resolution=8, width=3)
    with pytest.raises(UserError, match="uvit_tiny takes no argument.*output"):
        registry.create("backbone", "uvit_tiny", in_channels=3, resolution=8, output="x0")


def test_the_sizes_are_defined_once():
    """registry/backbone/uvit_*.yaml name a size; its layout lives only in uvit.SIZES."""
    for size, layout in SIZE_LAYOUTS.items():
        cfg = to_plain(compose([f"backbone=uvit_{size}"]))["backbone"]
        assert not set(layout) & set(cfg), size
        with torch.device("meta"):
            net = registry.create("backbone", f"uvit_{size}", in_channels=3, resolution=32)
        assert {k: getattr(net.config, k) for k in layout} == layout


# ---------------------------------------------------------------------------------------------
# YAML presets through the harness
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SIZES))
def test_presets_build_for_both_objectives(name):
    cfg = to_plain(compose([f"backbone={name}"]))
    assert cfg["backbone"]["name"] == name
    with torch.device("meta"):
        gen = build_backbone(cfg, (4, 16, 16), "adversarial")
        eps = build_backbone(cfg, (4, 16, 16), "eps")
    assert (gen.z_dim, gen.output, eps.z_dim, eps.output) == (50, "x0", 0, "eps")
    assert n_params(gen) == SIZES[name][0]
