"""Eps training (DDPM's simple loss): learns, resumes exactly, and runs through the CLI."""

import json

import pytest
import torch
from conftest import TINY

from genbench.backbones.denoiser import Denoiser
from genbench.backbones.ncsnpp import ncsnpp
from genbench.diffusion.gaussian import linear_schedule, q_sample
from genbench.errors import UserError
from genbench.training.checkpoint import find_checkpoint
from genbench.training.eps import EpsConfig, EpsTrainer
from genbench.training.loop import train


def _net(dropout=0.0, **overrides):
    torch.manual_seed(0)
    args = {"in_channels": 1, "resolution": 8, "nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1,
            "attn_resolutions": [], "z_dim": 0, "dropout": dropout}
    output = overrides.pop("output", "eps")
    args.update(overrides)
    return Denoiser(ncsnpp(**args), output=output, z_dim=args["z_dim"])


def _trainer(net=None, **overrides):
    cfg = EpsConfig(**{"epochs": 2, "batch_size": 8, "warmup": 2, "ema_decay": 0.9,
                       "ckpt_every": 3, "seed": 0, **overrides})
    return EpsTrainer(net if net is not None else _net(), linear_schedule(), cfg,
                      torch.device("cpu"))


def _images(n=24):
    """Smooth, structured uint8 8x8 images (a learnable distribution)."""
    g = torch.Generator().manual_seed(5)
    ramp = torch.linspace(-1, 1, 8)
    base = ramp.view(1, 1, 1, 8) * ramp.view(1, 1, 8, 1)
    x = (base * torch.rand(n, 1, 1, 1, generator=g).mul(2).sub(1)).clamp(-1, 1)
    return ((x + 1) * 127.5).round().to(torch.uint8)


def _model_range(images):
    return images.float() / 127.5 - 1


def train_eps(trainer, images, ckpt, **kwargs):
    return train(trainer, images, ckpt, trainer.cfg.loop(), progress=False, **kwargs)


def _fixed_loss(net, images):
    """L_simple on fixed (t, eps): the same draws before and after training."""
    g = torch.Generator().manual_seed(11)
    sched = linear_schedule()
    t = torch.randint(0, 1000, (images.shape[0],), generator=g)
    noise = torch.randn(images.shape, generator=g)
    x0 = _model_range(images)
    with torch.no_grad():
        return float((net.eval()(q_sample(sched, x0, t, noise), t, None) - noise).pow(2).mean())


def test_training_reduces_the_loss(tmp_path):
    images = _images(32)
    trainer = _trainer(epochs=15, batch_size=16, lr=2e-3, warmup=0, ckpt_every=1000)
    before = _fixed_loss(_net(), images)
    assert train_eps(trainer, images, tmp_path / "ckpt")
    assert trainer.step == 15 * 2
    after = _fixed_loss(trainer.net, images)
    assert after < 0.7 * before, (before, after)
    assert {"loss", "grad_norm"} <= set(trainer.history[-1])
    assert find_checkpoint(tmp_path / "ckpt") is not None


def test_resume_matches_uninterrupted_with_dropout(tmp_path):
    full = _trainer(_net(dropout=0.3), hflip=True)
    train_eps(full, _images(), tmp_path / "a")
    part = _trainer(_net(dropout=0.3), hflip=True)
    assert not train_eps(part, _images(), tmp_path / "b", stop_after=4)  # mid-epoch 1
    torch.manual_seed(123)  # a fresh process has another global random state
    resumed = _trainer(_net(dropout=0.3), hflip=True)
    assert train_eps(resumed, _images(), tmp_path / "b")
    assert resumed.step == full.step == 6
    for name in ("net", "net_ema"):
        for (k, a), b in zip(full.modules()[name].state_dict().items(),
                             resumed.modules()[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]


def test_warmup_is_linear_from_zero():
    """LambdaLR gives exactly the official lr * min(step / warmup, 1) (``get_warmed_up_lr``)."""
    trainer = _trainer(warmup=4, lr=1e-3)
    rates = []
    for _ in range(6):
        rates.append(trainer.learning_rate())
        trainer.train_step(_model_range(_images(8)), 0)
    assert rates == [1e-3 * min(step / 4, 1.0) for step in range(6)]
    assert rates == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert trainer.opt.param_groups[0]["lr"] == 1e-3
    assert _trainer(warmup=0, lr=1e-3).learning_rate() == 1e-3


def test_ema_starts_from_the_initial_weights():
    """DDPM's tf.train.ExponentialMovingAverage: ema_1 = d * w_0 + (1 - d) * w_1."""
    trainer = _trainer(warmup=0, ema_decay=0.9)
    initial = [p.detach().clone() for p in trainer.net.parameters()]
    trainer.train_step(_model_range(_images(8)), 0)
    for w0, w1, e in zip(initial, trainer.net.parameters(), trainer.net_ema.module.parameters()):
        torch.testing.assert_close(e, 0.9 * w0 + 0.1 * w1.detach())


def test_gradients_are_clipped():
    trainer = _trainer(grad_clip=1e-3, warmup=0)
    trainer.train_step(_model_range(_images(8)), 0)
    norm = torch.nn.utils.get_total_norm([p.grad for p in trainer.net.parameters()
                                          if p.grad is not None])
    assert float(norm) == pytest.approx(1e-3, rel=1e-3)
    assert trainer.history == [] and trainer.step == 1


def test_adamw_decays_weights_decoupled_from_the_gradient():
    """optimizer=adamw (U-ViT): a zero gradient still shrinks the
    weights by lr * weight_decay; Adam's L2 term would move them by ~lr (m / sqrt(v) = 1)."""
    for name, expected in (("adamw", 1 - 1e-2 * 0.5), ("adam", None)):
        trainer = _trainer(optimizer=name, weight_decay=0.5, lr=1e-2, warmup=0, grad_clip=0.0)
        assert type(trainer.opt).__name__ == ("AdamW" if name == "adamw" else "Adam")
        w = next(trainer.net.parameters())
        before = w.detach().clone()
        for p in trainer.net.parameters():
            p.grad = torch.zeros_like(p)
        trainer.opt.step()
        ratio = (w.detach()[before.abs() > 1e-3] / before[before.abs() > 1e-3])
        if expected is not None:
            assert torch.allclose(ratio, torch.full_like(ratio, expected), atol=1e-6)
        else:  # Adam: g = wd * w, step lr * sign -> not a constant factor
            assert not torch.allclose(ratio, torch.full_like(ratio, 1 - 1e-2 * 0.5), atol=1e-4)


def test_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="z_dim"):
        _trainer(_net(z_dim=4, z_emb_dim=8, n_mlp=1))
    with pytest.raises(UserError, match="output"):
        _trainer(_net(output="x0"))
    with pytest.raises(UserError, match="batch_size"):
        train_eps(_trainer(batch_size=64), _images(), tmp_path)
    with pytest.raises(UserError):
        EpsConfig(epochs=0)
    cfg = EpsConfig.from_section({"lr": 1e-3}, seed=7)
    assert cfg.lr == 1e-3 and cfg.seed == 7
    # a key that is not a setting is an error naming the closest ones, never ignored (issue 10)
    with pytest.raises(UserError, match="did you mean epochs"):
        EpsConfig.from_section({"lr": 1e-3, "epoch": 3}, seed=7)


def _record(tmp_path, experiment):
    (path,) = (tmp_path / "results" / experiment).glob("*/result.json")
    return json.loads(path.read_text())


EPS_TINY = TINY  # one train preset serves every objective (its eps: section here)


@pytest.mark.slow
def test_cli_ddim_then_ddpm_share_one_trained_model(run_cli, tmp_path):
    proc = run_cli("run", "sampler=ddim", "sampler.steps=5", *EPS_TINY, "experiment=a")
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = _record(tmp_path, "a")
    assert first["metrics"]["nfe"] == 5 and first["status"] == "ok"
    assert first["training"]["source"] == "trained"
    assert first["sampler"]["objective"] == "eps" and first["sampler"]["spacing"] == "leading"
    assert first["sampler"]["timesteps"] == [800, 600, 400, 200, 0]
    proc = run_cli("run", "sampler=ddpm", "sampler.steps=4", *EPS_TINY, "experiment=b")
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = _record(tmp_path, "b")
    assert second["training"]["source"] == "cache"
    assert second["training"]["key"] == first["training"]["key"]
    assert second["metrics"]["nfe"] == 4


def test_cli_train_preset_without_the_objective_section_is_one_line_error(run_cli, tmp_path):
    proc = run_cli("run", "sampler=ddim", "sampler.steps=2", *TINY, "train=ddgan_cifar10")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("genbench: error")
    assert "'eps:' section" in lines[0] and "train=digits_cpu" in lines[0]
    assert not list(tmp_path.glob("results/*/*/result.json"))
