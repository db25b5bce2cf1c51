"""The adversarial objective of DDGAN (Xiao et al., ICLR 2022), WDDGAN and LDDGAN.

One training step, as in the official ``train_ddgan.py`` (REFERENCE.md B.3):

* D step: k ~ U{0..T-1}, (x_k, x_{k+1}) ~ q; loss softplus(-D(x_k, k, x_{k+1})) on real pairs
  plus softplus(D(x'_k, k, x_{k+1})) on fake pairs, x'_k ~ q(x_k | x_{k+1}, G(x_{k+1}, k, z))
  (paper Eq. 5, non-saturating form). R1 = gamma/2 E||grad_{x_k} D(real)||^2 on real x_k,
  every ``lazy_reg`` steps and - as in the official code, unlike StyleGAN2 - not multiplied by it.
* G step: fresh k, pairs and z; loss softplus(-D(x'_k, k, x_{k+1})), plus an L1 reconstruction
  term |x0' - x0| for WDDGAN (weight 1) or LDDGAN's weighted learning (weight 1 - sigmoid(phi),
  phi = linspace(-delta, delta) over epochs; LDDGAN paper Eq. 9 as the official code has it).
* Adam(0.5, 0.9), cosine learning-rate decay per epoch to 1e-5, EMA of the generator.

Training resumes exactly: the data order of an epoch is a function of (seed, epoch), and the
noise generator, optimizers, schedulers and EMA are all in the checkpoint.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genbench.diffusion.ddgan import (
    DDGANSchedule,
    posterior_sample,
    q_sample_pairs,
    weighted_learning_weights,
)
from genbench.errors import UserError
from genbench.training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from genbench.training.ema import EMA

REC_LOSSES = ("none", "l1", "weighted")


@dataclass(frozen=True)
class AdversarialConfig:
    """Hyper-parameters of adversarial training (official CIFAR-10 values as defaults)."""

    epochs: int = 1800
    batch_size: int = 64
    lr_g: float = 1.6e-4  # generator learning rate
    lr_d: float = 1.25e-4  # discriminator learning rate
    beta1: float = 0.5  # Adam betas (0.5, 0.9)
    beta2: float = 0.9
    lr_decay: bool = True  # cosine annealing per epoch (LDDGAN passes --no_lr_decay)
    lr_min: float = 1e-5  # eta_min of the cosine schedule
    ema_decay: float = 0.9999
    r1_gamma: float = 0.02
    lazy_reg: int = 15  # R1 every N steps; 1 = every step
    rec_loss: str = "none"  # none (DDGAN) | l1 (WDDGAN, weight 1) | weighted (LDDGAN)
    wl_delta: float = 6.0  # weighted-learning range: phi in [-delta, delta]
    hflip: bool = False  # random horizontal flip of training images
    seed: int = 0
    ckpt_every: int = 200  # steps between checkpoints

    def __post_init__(self) -> None:
        if self.rec_loss not in REC_LOSSES:
            raise UserError(f"train.rec_loss={self.rec_loss!r}; use one of {', '.join(REC_LOSSES)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lazy_reg < 1:
            raise UserError("train.epochs, train.batch_size and train.lazy_reg must be >= 1")


def _losses_d(G, D, sched, x0, cfg, step, noise_gen) -> dict[str, torch.Tensor]:
    """Discriminator losses on one batch (real, fake, and R1 on lazy steps)."""
    k = torch.randint(0, sched.num_steps, (x0.shape[0],), generator=noise_gen, device=x0.device)
    x_k, x_next = q_sample_pairs(sched, x0, k, noise_gen)
    x_k.requires_grad_(True)
    d_real = D(x_k, k, x_next)
    losses = {"d_real": F.softplus(-d_real).mean()}
    if step % cfg.lazy_reg == 0 and cfg.r1_gamma > 0:
        (grad,) = torch.autograd.grad(d_real.sum(), x_k, create_graph=True)
        losses["r1"] = cfg.r1_gamma / 2 * grad.flatten(1).pow(2).sum(1).mean()
    z = torch.randn(x0.shape[0], G.z_dim, generator=noise_gen, device=x0.device)
    with torch.no_grad():
        x0_fake = G(x_next, k, z)
    noise = torch.randn(x0.shape, generator=noise_gen, device=x0.device)
    x_k_fake = posterior_sample(sched, x0_fake, x_next, k, noise)
    losses["d_fake"] = F.softplus(D(x_k_fake, k, x_next)).mean()
    return losses


def _losses_g(G, D, sched, x0, rec_weight, noise_gen) -> dict[str, torch.Tensor]:
    """Generator losses on one batch: non-saturating adversarial (+ weighted L1)."""
    k = torch.randint(0, sched.num_steps, (x0.shape[0],), generator=noise_gen, device=x0.device)
    _, x_next = q_sample_pairs(sched, x0, k, noise_gen)
    z = torch.randn(x0.shape[0], G.z_dim, generator=noise_gen, device=x0.device)
    x0_fake = G(x_next, k, z)
    noise = torch.randn(x0.shape, generator=noise_gen, device=x0.device)
    x_k_fake = posterior_sample(sched, x0_fake, x_next, k, noise)
    losses = {"g_adv": F.softplus(-D(x_k_fake, k, x_next)).mean()}
    if rec_weight > 0:
        losses["g_rec"] = rec_weight * F.l1_loss(x0_fake, x0)
    return losses


class AdversarialTrainer:
    """Holds G, D, their optimizers, schedulers and the generator EMA; steps and checkpoints."""

    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, schedule: DDGANSchedule,
                 cfg: AdversarialConfig, device: torch.device) -> None:
        if int(getattr(G, "z_dim", 0)) < 1:
            raise UserError("the adversarial objective needs a generator with z "
                            "(backbone z_dim > 0)")
        self.G, self.D, self.sched, self.cfg, self.device = G, D, schedule, cfg, device
        self.G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        self.ema = EMA(cfg.ema_decay)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas)
        self.sch_g = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_g, cfg.epochs, cfg.lr_min)
        self.sch_d = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_d, cfg.epochs, cfg.lr_min)
        self.noise_gen = torch.Generator(device).manual_seed(cfg.seed)
        self.rec_weights = weighted_learning_weights(cfg.epochs, cfg.wl_delta)
        self.step = 0
        self.in_step = False  # True between the first and last update of a step
        self.history: list[dict[str, float]] = []

    def rec_weight(self, epoch: int) -> float:
        """Weight of the L1 term at ``epoch`` (0, 1, or the weighted-learning schedule)."""
        if self.cfg.rec_loss == "none":
            return 0.0
        if self.cfg.rec_loss == "l1":
            return 1.0
        return float(self.rec_weights[epoch])

    def train_step(self, x0: torch.Tensor, epoch: int) -> dict[str, float]:
        """One D update then one G update (official order), then the EMA update."""
        self.in_step = True
        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        d_losses = _losses_d(self.G, self.D, self.sched, x0, self.cfg, self.step, self.noise_gen)
        sum(d_losses.values()).backward()
        self.opt_d.step()
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        g_losses = _losses_g(self.G, self.D, self.sched, x0, self.rec_weight(epoch),
                             self.noise_gen)
        sum(g_losses.values()).backward()
        self.opt_g.step()
        self.ema.update(self.G_ema, self.G)
        self.step += 1
        self.in_step = False
        return {k: float(v.detach()) for k, v in {**d_losses, **g_losses}.items()}

    def end_epoch(self) -> None:
        if self.cfg.lr_decay:
            self.sch_g.step()
            self.sch_d.step()

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"G": self.G, "G_ema": self.G_ema, "D": self.D}

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step, "config": asdict(self.cfg), "history": self.history,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "sch_g": self.sch_g.state_dict(), "sch_d": self.sch_d.state_dict(),
            "noise_gen": self.noise_gen.get_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sch_g.load_state_dict(state["sch_g"])
        self.sch_d.load_state_dict(state["sch_d"])
        self.noise_gen.set_state(state["noise_gen"])


def epoch_order(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch ``epoch``: a pure function of (seed, epoch)."""
    return torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 7919 + epoch))


def _hflip(x: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(seed * 104729 + step))
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device) < 0.5, x.flip(-1), x)


def train_adversarial(
    trainer: AdversarialTrainer,
    images: torch.Tensor,
    encode: Callable[[torch.Tensor], torch.Tensor],
    ckpt_dir: Path,
    *,
    progress: bool = True,
    stop_after: int | None = None,
    desc: str = "train adversarial",
) -> bool:
    """Train to the configured number of epochs, resuming from ``ckpt_dir`` if it holds one.

    ``images``: training images in [-1, 1] on the CPU; ``encode`` maps a batch to the space the
    GAN works in. ``stop_after``: leave after that many total steps, as an interruption would
    (tests). Returns True when training is complete. KeyboardInterrupt saves a checkpoint first.
    """
    cfg = trainer.cfg
    steps_per_epoch = batches_per_epoch(images.shape[0], cfg.batch_size, "train.batch_size")
    found = find_checkpoint(ckpt_dir)
    if found is not None:
        trainer.load_state(load_checkpoint(found, trainer.modules()))
    total = cfg.epochs * steps_per_epoch
    bar = tqdm(total=total, initial=trainer.step, desc=desc, disable=not progress,
               unit="step", dynamic_ncols=True)
    try:
        while trainer.step < total:
            if stop_after is not None and trainer.step >= stop_after:
                save_checkpoint(ckpt_dir, trainer.modules(), trainer.state())
                return False
            epoch, index = divmod(trainer.step, steps_per_epoch)
            order = epoch_order(images.shape[0], cfg.seed, epoch)
            batch = images[order[index * cfg.batch_size:(index + 1) * cfg.batch_size]]
            if cfg.hflip:
                batch = _hflip(batch, cfg.seed, trainer.step)
            with torch.no_grad():
                x0 = encode(batch.to(trainer.device))
            losses = trainer.train_step(x0, epoch)
            check_finite(losses, trainer.step)
            trainer.history.append({"step": trainer.step, **losses})
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items() if k != "r1"})
            if trainer.step % steps_per_epoch == 0:
                trainer.end_epoch()
            if trainer.step % cfg.ckpt_every == 0 or trainer.step == total:
                save_checkpoint(ckpt_dir, trainer.modules(), trainer.state())
    except KeyboardInterrupt:
        if not trainer.in_step:  # a half-done step cannot be resumed exactly: keep the last one
            save_checkpoint(ckpt_dir, trainer.modules(), trainer.state())
        raise
    finally:
        bar.close()
    return True


def batches_per_epoch(num_items: int, batch_size: int, setting: str) -> int:
    """Full batches per epoch (the last partial batch is dropped); a one-line error if none."""
    if num_items // batch_size < 1:
        raise UserError(f"{setting}={batch_size} exceeds the {num_items} training images; "
                        f"lower it")
    return num_items // batch_size


def check_finite(losses: dict[str, float], step: int, what: str = "training") -> None:
    """Stop a run whose losses are no longer finite, naming them and the step."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise RuntimeError(f"{what} diverged at step {step}: non-finite {', '.join(bad)}")
