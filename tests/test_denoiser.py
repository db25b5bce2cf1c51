"""The parameterisation wrapper (NVlabs/edm ``training/networks.py`` preconditioning style):
x0 through tanh or eps as is, z only when z_dim > 0, and a state dict that is the backbone's."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel

from genbench.backbones.denoiser import Denoiser
from genbench.backbones.ncsnpp import ncsnpp

TINY = dict(in_channels=2, resolution=8, nf=16, ch_mult=(1, 2), num_res_blocks=1,
            attn_resolutions=(), z_emb_dim=16, n_mlp=1, init_scale=1.0)


def _backbone(seed=0, z_dim=4):
    torch.manual_seed(seed)
    return ncsnpp(**TINY, z_dim=z_dim)


def _inputs(z_dim=4):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, z_dim, generator=g) if z_dim else None
    return torch.randn(2, 2, 8, 8, generator=g), torch.tensor([0, 3]), z


def test_heads_and_attributes():
    backbone = _backbone()
    x, t, z = _inputs()
    raw = backbone(x, t, z)
    x0, eps = Denoiser(backbone, output="x0", z_dim=4), Denoiser(backbone, output="eps", z_dim=4)
    assert raw.abs().max() > 1
    torch.testing.assert_close(x0(x, t, z), torch.tanh(raw))
    assert torch.equal(eps(x, t, z), raw)
    assert (x0.output, x0.z_dim, eps.output) == ("x0", 4, "eps")
    assert sum(p.numel() for p in x0.parameters()) == sum(p.numel() for p in backbone.parameters())


def test_z_is_required_exactly_when_z_dim_is_positive():
    x, t, z = _inputs()
    with pytest.raises(ValueError, match=r"needs z of shape \[2, 4\]"):
        Denoiser(_backbone(), output="x0", z_dim=4)(x, t, None)
    with pytest.raises(ValueError, match=r"needs z of shape \[2, 4\], got \[2, 3\]"):
        Denoiser(_backbone(), output="x0", z_dim=4)(x, t, z[:, :3])
    eps = Denoiser(_backbone(z_dim=0), output="eps", z_dim=0)
    assert eps(x, t).shape == x.shape
    with pytest.raises(ValueError, match="takes no z"):
        eps(x, t, z)


@pytest.mark.parametrize("bad,match", [(dict(output="v", z_dim=0), "output"),
                                       (dict(output="x0", z_dim=-1), "z_dim")])
def test_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        Denoiser(_backbone(), **bad)


def test_state_dict_is_the_backbones_and_loads_both_ways(tmp_path):
    backbone, other = _backbone(0), _backbone(1)
    net = Denoiser(backbone, output="x0", z_dim=4)
    state = net.state_dict()
    assert list(state) == list(backbone.state_dict())  # same keys, same order: no prefix
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, tmp_path / "g.st")
    target = Denoiser(other, output="x0", z_dim=4)
    target.load_state_dict(load_file(tmp_path / "g.st"), strict=True)  # a backbone's file
    x, t, z = _inputs()
    assert torch.equal(target(x, t, z), net(x, t, z))
    fresh = _backbone(2)
    fresh.load_state_dict(state, strict=True)  # and a wrapper's state loads into a backbone
    assert torch.equal(fresh(x, t, z), backbone(x, t, z))


def test_nested_state_dicts_round_trip():
    """Inside another module (an EMA copy) the keys are still prefix + the backbone's keys."""
    ema = AveragedModel(Denoiser(_backbone(0), output="x0", z_dim=4))
    state = ema.state_dict()
    assert "module.z_transform.1.weight" in state and "n_averaged" in state
    assert not any(k.startswith("module.backbone.") for k in state)
    copy = AveragedModel(Denoiser(_backbone(1), output="x0", z_dim=4))
    copy.load_state_dict(state, strict=True)
    for a, b in zip(ema.parameters(), copy.parameters(), strict=True):
        assert torch.equal(a, b)
