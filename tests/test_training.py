"""The shared training loop, seeding and EMA; adversarial training: losses finite, checkpoints
atomic, resume ends in the same weights."""

import pytest
import torch

from genbench import registry
from genbench.backbones.ncsnpp import ncsnpp
from genbench.diffusion.ddgan import ddgan_schedule
from genbench.errors import UserError
from genbench.training.adversarial import AdversarialConfig, AdversarialTrainer
from genbench.training.checkpoint import find_checkpoint, load_weights, save_weights
from genbench.training.ema import ema_model, update_ema
from genbench.training.loop import LoopConfig, epoch_order, train, training_batch
from genbench.training.seeding import (
    STREAMS,
    seeded_global_rng,
    stream_generator,
    stream_seed,
)


def _trainer(device="cpu", **overrides):
    torch.manual_seed(0)
    G = ncsnpp(in_channels=1, resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1,
               attn_resolutions=[], z_dim=4, z_emb_dim=16, n_mlp=1)
    torch.manual_seed(1)
    D = registry.create("discriminator", "small", in_channels=1, ngf=4, t_emb_dim=8, num_layers=3)
    cfg = AdversarialConfig(**{"epochs": 2, "batch_size": 8, "ema_decay": 0.9, "lazy_reg": 2,
                               "ckpt_every": 3, "seed": 0, **overrides})
    return AdversarialTrainer(G, D, ddgan_schedule(2), cfg, torch.device(device))


def _images(n=24):
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)


def _run(trainer, ckpt, **kwargs):
    return train(trainer, _images(), ckpt, trainer.cfg.loop(), progress=False, **kwargs)


def test_training_runs_and_updates(tmp_path):
    trainer = _trainer()
    before = [p.detach().clone() for p in trainer.G.parameters()]
    assert _run(trainer, tmp_path / "ckpt")
    assert trainer.step == 2 * 3  # 2 epochs x (24 // 8) steps
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G.parameters()))
    assert "r1" in trainer.history[0] and "r1" not in trainer.history[1]  # lazy_reg = 2
    assert find_checkpoint(tmp_path / "ckpt") is not None


def test_resume_matches_uninterrupted(tmp_path):
    full = _trainer(hflip=True)
    _run(full, tmp_path / "a")
    part = _trainer(hflip=True)
    assert not _run(part, tmp_path / "b", stop_after=4)  # mid-epoch 1, between checkpoints
    torch.manual_seed(123)  # a fresh process has another global random state
    resumed = _trainer(hflip=True)  # new modules; the state comes from disk
    assert _run(resumed, tmp_path / "b")
    assert resumed.step == full.step
    for name in ("G", "G_ema", "D"):
        for (k, a), b in zip(full.modules()[name].state_dict().items(),
                             resumed.modules()[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"
    assert full.history == resumed.history


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
        _run(_trainer(batch_size=64), tmp_path)


def test_float_images_are_refused(tmp_path):
    trainer = _trainer()
    with pytest.raises(UserError, match="uint8"):
        train(trainer, _images().float(), tmp_path, trainer.cfg.loop(), progress=False)


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


def test_interrupted_checkpoint_swap_is_found(tmp_path):
    trainer = _trainer()
    _run(trainer, tmp_path / "ckpt")
    old = tmp_path / ".ckpt.0123456789abcdef0123456789abcdef.old"
    (tmp_path / "ckpt").rename(old)  # a kill between the two renames of a swap
    assert find_checkpoint(tmp_path / "ckpt") == old


# --------------------------------------------------------------------------- seeding


def test_streams_differ_for_seed_zero():
    """No two named streams share a seed, also with seed 0 and at index 0 (where arithmetic
    mixes such as ``seed * p + step`` and the bare seed coincide)."""
    seeds = [stream_seed(0, name) for name in STREAMS]
    seeds += [stream_seed(0, name, 0) for name in STREAMS]
    seeds += [stream_seed(0, name, step) for name in ("flip", "global") for step in range(1, 50)]
    seeds += [0, 1]  # the bare seeds a plain torch.manual_seed(seed) would use
    assert len(set(seeds)) == len(seeds)
    assert stream_seed(0, "flip", 3) == stream_seed(0, "flip", 3)  # a pure function
    assert stream_seed(1, "flip", 3) != stream_seed(0, "flip", 3)
    assert all(0 <= s < 2**63 for s in seeds)
    a = torch.rand(4, generator=stream_generator(0, "noise"))
    b = torch.rand(4, generator=stream_generator(0, "flip", 0))
    assert not torch.equal(a, b)


def test_seeded_global_rng_is_reproducible_and_leaves_the_caller_alone():
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    with seeded_global_rng(0, "global", 5):
        first = torch.rand(3)
    with seeded_global_rng(0, "global", 5):
        again = torch.rand(3)
    assert torch.equal(first, again)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream continues unchanged


def test_loop_data_order_and_flips_follow_their_streams():
    images = _images()
    cfg = LoopConfig(batch_size=8, seed=0, epochs=1, hflip=True)
    order = epoch_order(24, 0, 0)
    assert torch.equal(order, torch.randperm(24, generator=stream_generator(0, "order", 0)))
    batch = training_batch(images, cfg, step=1, steps_per_epoch=3)
    plain = images[order[8:16]]
    draws = torch.rand(8, generator=stream_generator(0, "flip", 1))
    expected = torch.where(draws.view(-1, 1, 1, 1) < 0.5, plain.flip(-1), plain)
    assert torch.equal(batch, expected) and not torch.equal(batch, plain)
    assert not torch.equal(epoch_order(24, 0, 1), order)


# --------------------------------------------------------------------------- EMA


def _tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def _perturb(net, k):
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * k)
        net[1].running_mean.fill_(float(k))


@pytest.mark.parametrize("from_initial", [False, True])
def test_ema_follows_the_official_formula(from_initial):
    """ema <- d * ema + (1 - d) * w after every step. DDGAN's EMA.py starts the shadow at the
    weights after the first step; DDPM's tf.train.ExponentialMovingAverage at the initial
    weights. Buffers are copied."""
    decay = 0.9
    net = _tiny_net()
    ema = ema_model(net, decay, from_initial=from_initial)
    expected = [p.detach().clone() for p in net.parameters()]
    for k in range(1, 4):
        _perturb(net, k)
        update_ema(ema, net)
        for i, p in enumerate(net.parameters()):
            if k == 1 and not from_initial:
                expected[i] = p.detach().clone()
            else:
                expected[i] = decay * expected[i] + (1 - decay) * p.detach()
    for e, p in zip(expected, ema.module.parameters()):
        torch.testing.assert_close(p, e)
    assert torch.equal(ema.module[1].running_mean, net[1].running_mean)
    assert not any(p.requires_grad for p in ema.parameters())
    with pytest.raises(ValueError):
        ema_model(net, 1.0, from_initial=True)
