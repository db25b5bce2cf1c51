"""Adversarial training: losses finite, checkpoints atomic, resume ends in the same weights."""

import pytest
import torch

from genbench.backbones.discriminator import make_discriminator
from genbench.backbones.ncsnpp import ncsnpp
from genbench.diffusion.ddgan import ddgan_schedule
from genbench.errors import UserError
from genbench.training.adversarial import AdversarialConfig, AdversarialTrainer, train_adversarial
from genbench.training.checkpoint import find_checkpoint, load_weights, save_weights


def _trainer(device="cpu", **overrides):
    torch.manual_seed(0)
    G = ncsnpp(in_channels=1, resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1,
               attn_resolutions=[], z_dim=4, z_emb_dim=16, n_mlp=1)
    torch.manual_seed(1)
    D = make_discriminator("small", in_channels=1, ngf=4, t_emb_dim=8, num_layers=3)
    cfg = AdversarialConfig(**{"epochs": 2, "batch_size": 8, "ema_decay": 0.9, "lazy_reg": 2,
                               "ckpt_every": 3, "seed": 0, **overrides})
    return AdversarialTrainer(G, D, ddgan_schedule(2), cfg, torch.device(device))


def _images(n=24):
    g = torch.Generator().manual_seed(5)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1


def _identity(x):
    return x


def test_training_runs_and_updates(tmp_path):
    trainer = _trainer()
    before = [p.detach().clone() for p in trainer.G.parameters()]
    assert train_adversarial(trainer, _images(), _identity, tmp_path / "ckpt", progress=False)
    assert trainer.step == 2 * 3  # 2 epochs x (24 // 8) steps
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G.parameters()))
    assert "r1" in trainer.history[0] and "r1" not in trainer.history[1]  # lazy_reg = 2
    assert find_checkpoint(tmp_path / "ckpt") is not None


def test_resume_matches_uninterrupted(tmp_path):
    full = _trainer()
    train_adversarial(full, _images(), _identity, tmp_path / "a", progress=False)
    part = _trainer()
    assert not train_adversarial(part, _images(), _identity, tmp_path / "b", progress=False,
                                 stop_after=4)  # interrupted mid-epoch 1, between checkpoints
    resumed = _trainer()  # a fresh process: new modules, state comes from disk
    assert train_adversarial(resumed, _images(), _identity, tmp_path / "b", progress=False)
    assert resumed.step == full.step
    for name in ("G", "G_ema", "D"):
        for (k, a), b in zip(full.modules()[name].state_dict().items(),
                             resumed.modules()[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"


def test_reconstruction_term_modes():
    assert _trainer(rec_loss="none").rec_weight(0) == 0.0
    assert _trainer(rec_loss="l1").rec_weight(1) == 1.0
    weighted = _trainer(rec_loss="weighted")
    assert weighted.rec_weight(0) == pytest.approx(0.9975, abs=1e-4)
    assert weighted.rec_weight(2) == pytest.approx(0.0025, abs=1e-4)
    with pytest.raises(UserError):
        AdversarialConfig(rec_loss="bogus")


def test_batch_larger_than_data_is_user_error(tmp_path):
    with pytest.raises(UserError, match="batch_size"):
        train_adversarial(_trainer(batch_size=64), _images(), _identity, tmp_path, progress=False)


def test_corrupt_weights_file_is_user_error(tmp_path):
    trainer = _trainer()
    path = tmp_path / "g.safetensors"
    save_weights(path, {"G": trainer.G})
    load_weights(path, {"G": trainer.G})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="corrupt"):
        load_weights(path, {"G": trainer.G})
    with pytest.raises(UserError, match="not found"):
        load_weights(tmp_path / "missing.safetensors", {"G": trainer.G})
