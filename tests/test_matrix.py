"""Every registered backbone with every registered sampler, at tiny size (timm's test_models idea).

For each pair: the harness builds the backbone for the sampler's objective (x0 with z for
adversarial samplers, eps without z for ddpm/ddim), one training loss of that objective
back-propagates to finite gradients, and sampling is finite, correctly shaped and deterministic
under a seed. A second test runs every latent space with every sampler through the harness.
"""

import pytest
import torch

from genbench import registry
from genbench.errors import UserError
from genbench.harness.build import build_backbone
from genbench.samplers.noise import PerSampleRNG
from genbench.training.adversarial import PhaseDraws, _losses_g
from genbench.training.autoencoder import fit_autoencoder
from genbench.training.eps import eps_loss

SHAPE = (1, 8, 8)
# Small overrides per backbone family so that every registered size still runs in seconds.
TINY_ARGS = {
    "ncsnpp": {"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4],
               "z_dim": 4, "z_emb_dim": 16, "n_mlp": 1},
    "uvit": {"patch_size": 2, "embed_dim": 32, "depth": 2, "num_heads": 2, "z_dim": 4,
             "z_emb_dim": 16, "n_mlp": 1},
}
TINY_ARGS["wavelet_ncsnpp"] = TINY_ARGS["ncsnpp"]  # WaveDiff's generator at the same tiny size
GAN_ONLY = {"wavelet_ncsnpp"}
SAMPLER_ARGS = {"ddgan": {"steps": 2}, "lddgan": {"steps": 2}, "ddpm": {"steps": 3},
                "ddim": {"steps": 3, "eta": 0.5}}


def _backbone_cfg(name):
    family = "uvit" if name.startswith("uvit") else name
    args = dict(TINY_ARGS.get(family, {}))
    if name.startswith("uvit_"):  # the named sizes keep their layout; only z is made small
        args = {"patch_size": 2, "z_dim": 4, "z_emb_dim": 16, "n_mlp": 1}
    return {"name": name, **args}


@pytest.mark.parametrize("sampler_name", registry.names("sampler"))
@pytest.mark.parametrize("backbone_name", registry.names("backbone"))
def test_backbone_with_sampler(backbone_name, sampler_name):
    sampler = registry.create("sampler", sampler_name, **SAMPLER_ARGS.get(sampler_name, {}))
    cfg = {"backbone": _backbone_cfg(backbone_name), "latent": {"name": "pixel"}}
    torch.manual_seed(0)
    if backbone_name in GAN_ONLY and sampler.objective != "adversarial":
        # WaveDiff's WaveletNCSNpp exists only as a DDGAN generator (z in every AdaGN): an eps
        # sampler is refused in one line, not run with a network the paper never had
        with pytest.raises(UserError, match="DDGAN generator"):
            build_backbone(cfg, SHAPE, sampler.objective)
        return
    net = build_backbone(cfg, SHAPE, sampler.objective)
    x0 = torch.rand(4, *SHAPE) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    if sampler.objective == "adversarial":
        assert net.z_dim > 0 and net.output == "x0"
        D = registry.create("discriminator", "small", in_channels=1, ngf=4, t_emb_dim=8,
                               num_layers=3)
        draws = PhaseDraws.draw(sampler.schedule.num_steps, x0, net.z_dim, gen)
        loss = sum(_losses_g(net, D, sampler.schedule, x0, 1.0, draws).values())
    else:
        assert net.z_dim == 0 and net.output == "eps"
        loss = eps_loss(net, sampler.schedule, x0, gen)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

    net.eval()

    def draw(seed):
        rng = PerSampleRNG.for_range(seed, 0, 3)
        return sampler.sample(net, rng.randn(*SHAPE), rng)

    a, b = draw(1), draw(1)
    assert a.shape == (3, *SHAPE) and torch.isfinite(a).all()
    assert torch.equal(a, b)


LATENTS = ["pixel", "wavelet", "kl_tiny", "vq_tiny"]


@pytest.fixture(scope="module")
def fitted_latents(tmp_path_factory):
    """Each latent preset built from its YAML and fitted once on the 16x16 digits."""
    from genbench.config import compose_plain
    from genbench.data.base import all_images
    from genbench.harness.build import build_latent

    cache = tmp_path_factory.mktemp("latent-cache")
    images = None
    spaces = {}
    for preset in LATENTS:
        cfg = compose_plain([f"latent={preset}", "dataset=digits16"])
        space = build_latent(cfg)
        if space.needs_fit:
            if images is None:
                images, _ = all_images(registry.create("dataset", "digits", resolution=16))
            fit_autoencoder(space, images[:256], cache_dir=cache, progress=False)
        spaces[preset] = space
    real = all_images(registry.create("dataset", "digits", resolution=16))[0][:4]
    return spaces, real


@pytest.mark.parametrize("sampler_name", registry.names("sampler"))
@pytest.mark.parametrize("backbone_name", ["ncsnpp", "uvit"])
@pytest.mark.parametrize("latent_name", LATENTS)
def test_latent_backbone_sampler_end_to_end(fitted_latents, latent_name, backbone_name,
                                            sampler_name):
    """Encode real images, one training loss, sample, decode: every latent x backbone x sampler."""
    from genbench.data.base import to_model_range, to_uint8

    spaces, real = fitted_latents
    latent = spaces[latent_name]
    shape = tuple(latent.latent_shape((1, 16, 16)))
    sampler = registry.create("sampler", sampler_name, **SAMPLER_ARGS.get(sampler_name, {}))
    cfg = {"backbone": _backbone_cfg(backbone_name), "latent": {"name": latent_name}}
    torch.manual_seed(0)
    net = build_backbone(cfg, shape, sampler.objective)
    with torch.no_grad():
        z0 = latent.encode(to_model_range(real))
    assert z0.shape == (4, *shape) and float(z0.abs().max()) <= 1.0 + 1e-5
    gen = torch.Generator().manual_seed(0)
    if sampler.objective == "adversarial":
        D = registry.create("discriminator", "small", in_channels=shape[0], ngf=4, t_emb_dim=8,
                               num_layers=3)
        draws = PhaseDraws.draw(sampler.schedule.num_steps, z0, net.z_dim, gen)
        loss = sum(_losses_g(net, D, sampler.schedule, z0, 1.0, draws).values())
    else:
        loss = eps_loss(net, sampler.schedule, z0, gen)
    loss.backward()
    assert torch.isfinite(loss)
    rng = PerSampleRNG.for_range(0, 0, 2)
    with torch.no_grad():
        images = to_uint8(latent.decode(sampler.sample(net.eval(), rng.randn(*shape), rng)))
    assert images.shape == (2, 1, 16, 16)


def test_backbone_that_cannot_take_the_latent_is_a_clear_error():
    from genbench.errors import UserError

    cfg = {"backbone": {"name": "uvit", "patch_size": 3}, "latent": {"name": "wavelet"}}
    with pytest.raises(UserError, match=r"cannot take the 12x8x8 latent of 'wavelet'.*patch"):
        build_backbone(cfg, (12, 8, 8), "adversarial")
    cfg = {"backbone": {"name": "ncsnpp", "ch_mult": [1, 2, 2, 2]}, "latent": {"name": "kl"}}
    with pytest.raises(UserError, match="cannot take the 4x4x4 latent"):
        build_backbone(cfg, (4, 4, 4), "adversarial")
