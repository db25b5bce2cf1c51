"""Every registered entry of every kind at tiny size (timm's ``tests/test_models.py`` idea).

Each entry is built from its registered factory with small arguments and checked for shape,
finiteness and determinism; networks (backbones, discriminators, the learned parts of latent
spaces) must give every trainable parameter a non-zero gradient. A registered name with no tiny
arguments here fails, so a new entry cannot go untested.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from genbench import registry
from genbench.errors import UserError

BACKBONES = {
    "ncsnpp": dict(nf=16, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[4], z_dim=4,
                   z_emb_dim=8, n_mlp=1),
    "uvit": dict(patch_size=2, embed_dim=16, depth=2, num_heads=2, z_dim=4, z_emb_dim=8, n_mlp=1),
    "wavelet_ncsnpp": dict(nf=16, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[4], z_dim=4,
                           z_emb_dim=8, n_mlp=1),
}
for _size in ("tiny", "mid", "large"):  # the named sizes, shrunk through their overrides
    BACKBONES[f"uvit_{_size}"] = dict(BACKBONES["uvit"], mlp_time_embed=True, qkv_bias=True)
DISCRIMINATORS = {  # DDGAN's time-conditioned D(x_k, k, x_{k+1})
    "small": dict(ngf=4, t_emb_dim=8, num_layers=3),
    "large": dict(ngf=4, t_emb_dim=8, num_layers=3),
}
PATCH_DISCRIMINATORS = {"patchgan": dict(ndf=8, n_layers=2)}  # image-only D(x): a logit map
LATENTS_WITHOUT_PARAMETERS = {"pixel": {}, "wavelet": {}}
AUTOENCODERS = {  # registry/latent/{kl,vq}_tiny.yaml, smaller still
    "kl": dict(image_channels=1, block_out_channels=[8, 16], layers_per_block=1,
               latent_channels=4, attn_levels=[], norm_num_groups=4),
    "vq": dict(image_channels=1, block_out_channels=[8, 16], layers_per_block=1,
               latent_channels=4, attn_levels=[], norm_num_groups=4, num_vq_embeddings=16),
}
SAMPLERS = {"ddgan": dict(steps=3), "lddgan": dict(steps=2), "ddpm": dict(steps=4),
            "ddim": dict(steps=3, eta=0.5)}
METRICS = {"fid": {}, "precision_recall": dict(k=2), "kid": dict(subsets=3, subset_size=8)}
DATASETS = {"digits": dict(resolution=8, split="test"), "image_folder": dict(resolution=8)}
NOT_CHEAP = {("dataset", "cifar10"): "downloads 170 MB; tests/test_data.py reads a fake copy"}
TINY = {"backbone": BACKBONES, "discriminator": {**DISCRIMINATORS, **PATCH_DISCRIMINATORS},
        "latent": {**LATENTS_WITHOUT_PARAMETERS, **AUTOENCODERS}, "sampler": SAMPLERS,
        "metric": METRICS, "dataset": DATASETS}


def _entries(kind):
    return [n for n in registry.names(kind) if not n.startswith("test_")]  # test registrations


@pytest.mark.parametrize("kind", registry.KINDS)
def test_every_registered_entry_has_tiny_arguments_here(kind):
    missing = [n for n in _entries(kind) if n not in TINY[kind] and (kind, n) not in NOT_CHEAP]
    assert not missing, f"add tiny arguments for {kind} {missing} to this file"


def _perturbed(module):
    """Zero-initialised layers (NCSN++'s init_scale 0, the discriminator's last convs) pass no
    gradient on; a small seeded perturbation connects them, so every parameter is tested."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return module


def _assert_every_parameter_learns(module, loss):
    loss.backward()
    for name, p in module.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} receives no gradient"
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def _build(kind, name, **shape):
    torch.manual_seed(0)
    return registry.create(kind, name, **shape, **TINY[kind][name])


@pytest.mark.parametrize("name", _entries("backbone"))
def test_backbone(name):
    net = _perturbed(_build("backbone", name, in_channels=3, resolution=8))
    twin = _perturbed(_build("backbone", name, in_channels=3, resolution=8))
    g = torch.Generator().manual_seed(1)
    x, z = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, net.z_dim, generator=g)
    t = torch.tensor([0, 3])
    out = net(x, t, z)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(out, twin(x, t, z))  # seeded construction and forward are deterministic
    assert not torch.allclose(out, net(x, t + 1, z)) and not torch.allclose(out, net(x, t, -z))
    _assert_every_parameter_learns(net, out.square().mean())


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminator(name):
    D = _perturbed(_build("discriminator", name, in_channels=2))
    twin = _perturbed(_build("discriminator", name, in_channels=2))
    g = torch.Generator().manual_seed(1)
    x_k, x_kp1 = torch.randn(4, 2, 16, 16, generator=g), torch.randn(4, 2, 16, 16, generator=g)
    t = torch.tensor([0, 1, 2, 3])
    logits = D(x_k, t, x_kp1)
    assert logits.shape == (4,) and torch.isfinite(logits).all()
    assert torch.equal(logits, twin(x_k, t, x_kp1))
    _assert_every_parameter_learns(D, logits.square().mean())


@pytest.mark.parametrize("name", sorted(PATCH_DISCRIMINATORS))
def test_patch_discriminator(name):
    D = _perturbed(_build("discriminator", name, in_channels=2))
    twin = _perturbed(_build("discriminator", name, in_channels=2))
    x = torch.randn(4, 2, 32, 32, generator=torch.Generator().manual_seed(1))
    logits = D(x)
    side = type(D).output_side(32, TINY["discriminator"][name]["n_layers"])
    assert logits.shape == (4, 1, side, side) and torch.isfinite(logits).all()
    assert torch.equal(logits, twin(x))
    _assert_every_parameter_learns(D, logits.square().mean())


@pytest.mark.parametrize("name", sorted(LATENTS_WITHOUT_PARAMETERS))
def test_fixed_latent_space_round_trips(name):
    space = _build("latent", name)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    latents = space.encode(images)
    assert latents.shape == (2, *space.latent_shape((3, 8, 8)))
    assert torch.equal(latents, space.encode(images))
    torch.testing.assert_close(space.decode(latents), images, rtol=1e-5, atol=1e-5)
    decoder = space.decoder_module()
    assert decoder is None or not any(p.requires_grad for p in decoder.parameters())


@pytest.mark.parametrize("name", sorted(AUTOENCODERS))
def test_autoencoder_latent_space(name):
    space, twin = _build("latent", name), _build("latent", name)
    assert space.needs_fit and space.latent_shape((1, 8, 8)) == (4, 4, 4)
    latents = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = space.decode(latents)
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()
    assert torch.equal(images, twin.decode(latents))
    ae = _perturbed(space.autoencoder.train())
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    rec, terms = ae.training_forward(x, torch.Generator().manual_seed(3))
    assert rec.shape == x.shape
    _assert_every_parameter_learns(ae, (rec - x).abs().mean() + sum(terms.values()))


class _FakeDenoiser(torch.nn.Module):
    """x0 (bounded) or eps prediction that depends on x, t and z."""

    def __init__(self, output):
        super().__init__()
        self.output, self.z_dim = output, 3 if output == "x0" else 0

    def forward(self, x, t, z=None):
        h = torch.sin(x + t.view(-1, 1, 1, 1).to(x.dtype))
        if z is not None:
            h = h + z[:, :1, None, None]
        return torch.tanh(h) if self.output == "x0" else h


@pytest.mark.parametrize("name", _entries("sampler"))
def test_sampler(name):
    sampler = _build("sampler", name)
    denoiser = _FakeDenoiser("x0" if sampler.objective == "adversarial" else "eps")
    from genbench.samplers.noise import PerSampleRNG

    def draw(seed, callback=None):
        rng = PerSampleRNG.for_range(seed, 0, 2)
        return sampler.sample(denoiser, rng.randn(1, 4, 4), rng, callback)

    steps = []
    out = draw(0, steps.append)
    assert out.shape == (2, 1, 4, 4) and torch.isfinite(out).all()
    assert len(steps) == sampler.steps == TINY["sampler"][name]["steps"]
    assert torch.equal(out, draw(0)) and not torch.equal(out, draw(1))


@pytest.mark.parametrize("name", _entries("metric"))
def test_metric(name):
    entry = registry.get("metric", name)
    metric = _build("metric", name)
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(32, 6, generator=g), torch.randn(32, 6, generator=g) + 0.5
    values = metric(real, fake)
    assert set(values) == set(entry.extra["keys"])
    assert all(np.isfinite(v) for v in values.values())
    assert values == metric(real, fake)


def _write_images(folder, count=3):
    for i in range(count):
        pixels = np.full((10, 12, 3), 40 * i, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.mark.parametrize("name", _entries("dataset"))
def test_dataset(name, tmp_path):
    if ("dataset", name) in NOT_CHEAP:
        pytest.skip(NOT_CHEAP[("dataset", name)])
    args = dict(TINY["dataset"][name])
    if name == "image_folder":
        _write_images(tmp_path)
        args["root"] = str(tmp_path)
    data, again = registry.create("dataset", name, **args), registry.create("dataset", name, **args)
    image, label = data[0]
    assert len(data) > 0 and image.dtype == torch.uint8 and image.shape[-2:] == (8, 8)
    assert torch.equal(image, again[0][0]) and label == again[0][1]


@pytest.mark.parametrize("preset", ["kl_tiny_rgb", "vq_tiny_rgb", "kl_rgb", "vq_rgb"])
def test_rgb_autoencoder_presets_take_rgb_images(preset):
    """The RGB CPU presets (registry/latent/*_rgb.yaml) as composed: 3x32x32 <-> 4x16x16."""
    from genbench.config import compose_plain

    section = dict(compose_plain([f"latent={preset}"])["latent"])
    torch.manual_seed(0)
    space = registry.create("latent", section.pop("name"), **section)
    assert space.latent_shape((3, 32, 32)) == (4, 16, 16)
    with pytest.raises(UserError, match="takes 3-channel images"):
        space.latent_shape((1, 32, 32))
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = space.decode(latents)
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    ae = space.autoencoder.train()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    rec, _ = ae.training_forward(x, torch.Generator().manual_seed(3))
    assert rec.shape == x.shape
