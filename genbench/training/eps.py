"""The eps objective of DDPM (Ho et al., NeurIPS 2020): Algorithm 1 with the simple loss, Eq. 14.

One training step: t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,
loss = mean ||eps - eps_theta(x_t, t)||^2. The settings default to the official CIFAR-10 run
(``hojonathanho/diffusion`` ``scripts/run_cifar.py``): Adam lr 2e-4 with a linear warm-up over
5000 steps (lr * min(step / warmup, 1), ``utils.get_warmed_up_lr``), global gradient-norm
clipping at 1, batch 128, EMA 0.9999 of the weights (the EMA network is the one sampled), about
800k steps; dropout 0.1 and random flips belong to the network and data settings.

Training resumes exactly: the data order is a function of (seed, epoch), flips and dropout masks
of (seed, step), and the noise generator, optimizer and EMA weights are in the checkpoint. The
epoch loop is the one adversarial training uses (:func:`~genbench.training.adversarial.
train_adversarial` drives any trainer with ``train_step``/``end_epoch``/``state``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from genbench.diffusion.gaussian import GaussianSchedule, q_sample
from genbench.errors import UserError
from genbench.training.adversarial import train_adversarial
from genbench.training.ema import EMA

DROPOUT_SEED = 15_485_863  # offsets the per-step dropout stream from the other streams


@dataclass(frozen=True)
class EpsConfig:
    """Hyper-parameters of eps training (Ho et al.'s CIFAR-10 values as defaults)."""

    epochs: int = 2048  # ~800k steps at batch 128 on 50k images (Ho et al. Sec. 4)
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.9  # Adam betas (TensorFlow defaults, as the official run)
    beta2: float = 0.999
    weight_decay: float = 0.0
    warmup: int = 5000  # steps of linear learning-rate warm-up; 0 = none
    grad_clip: float = 1.0  # global gradient-norm clip; 0 = none
    ema_decay: float = 0.9999
    hflip: bool = False  # random horizontal flips (Ho et al. flip CIFAR-10: ddpm_cifar10.yaml)
    seed: int = 0
    ckpt_every: int = 2000  # steps between checkpoints

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.ckpt_every < 1:
            raise UserError("train.epochs, train.batch_size and train.ckpt_every must be >= 1")
        if self.lr <= 0 or self.warmup < 0 or self.grad_clip < 0:
            raise UserError("train.lr must be > 0, train.warmup and train.grad_clip >= 0")


def eps_config(train_cfg: dict[str, Any], seed: int) -> EpsConfig:
    """An :class:`EpsConfig` from a ``train`` config section (other keys are ignored)."""
    known = {f.name for f in fields(EpsConfig)}
    return EpsConfig(**{**{k: v for k, v in train_cfg.items() if k in known}, "seed": seed})


def eps_loss(net: torch.nn.Module, schedule: GaussianSchedule, x0: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
    """L_simple (Ho et al. Eq. 14) on one batch, drawing t and eps from ``generator``."""
    t = torch.randint(0, schedule.num_train_steps, (x0.shape[0],), generator=generator,
                      device=x0.device)  # t ~ U{1..T} (0-based)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = q_sample(schedule, x0, t, noise)  # sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    return F.mse_loss(net(x_t, t, None), noise)  # ||eps - eps_theta(x_t, t)||^2, mean


class EpsTrainer:
    """Holds the eps network, its Adam optimizer and EMA copy; steps and checkpoints."""

    def __init__(self, net: torch.nn.Module, schedule: GaussianSchedule, cfg: EpsConfig,
                 device: torch.device) -> None:
        if int(getattr(net, "z_dim", 0)) > 0:
            raise UserError("the eps objective needs a network without z (backbone z_dim=0)")
        if getattr(net, "output", "eps") != "eps":
            raise UserError(f"the eps objective needs a linear eps output, the backbone has "
                            f"output={net.output!r}; set backbone.output=eps")
        self.net, self.schedule, self.cfg, self.device = net, schedule, cfg, device
        self.net_ema = copy.deepcopy(net).eval().requires_grad_(False)
        self.ema = EMA(cfg.ema_decay)
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                    weight_decay=cfg.weight_decay)
        self.noise_gen = torch.Generator(device).manual_seed(cfg.seed)
        self.step = 0
        self.in_step = False  # True between the first and last update of a step
        self.history: list[dict[str, float]] = []

    def learning_rate(self) -> float:
        """lr * min(step / warmup, 1) for the coming update (the official warm-up)."""
        if self.cfg.warmup == 0:
            return self.cfg.lr
        return self.cfg.lr * min(self.step / self.cfg.warmup, 1.0)

    def train_step(self, x0: torch.Tensor, epoch: int) -> dict[str, float]:
        """One Adam update on L_simple, then the EMA update. ``epoch`` is unused (no decay)."""
        self.in_step = True
        self.net.train()
        for group in self.opt.param_groups:
            group["lr"] = self.learning_rate()
        self.opt.zero_grad(set_to_none=True)
        with torch.random.fork_rng(devices=self._cuda_devices()):
            torch.manual_seed(self.cfg.seed * DROPOUT_SEED + self.step)  # dropout masks
            loss = eps_loss(self.net, self.schedule, x0, self.noise_gen)
            loss.backward()
        grad_norm = self._clip_gradients()
        self.opt.step()
        self.ema.update(self.net_ema, self.net)
        self.step += 1
        self.in_step = False
        return {"loss": float(loss.detach()), "grad_norm": grad_norm}

    def _cuda_devices(self) -> list[int]:
        if self.device.type != "cuda":
            return []
        return [self.device.index if self.device.index is not None
                else torch.cuda.current_device()]

    def _clip_gradients(self) -> float:
        params = [p for p in self.net.parameters() if p.grad is not None]
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def end_epoch(self) -> None:
        """Nothing changes per epoch: Ho et al. keep the learning rate constant after warm-up."""

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"net": self.net, "net_ema": self.net_ema}

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "config": asdict(self.cfg), "history": self.history,
                "opt": self.opt.state_dict(), "noise_gen": self.noise_gen.get_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.opt.load_state_dict(state["opt"])
        self.noise_gen.set_state(state["noise_gen"])


def train_eps(
    trainer: EpsTrainer,
    images: torch.Tensor,
    encode: Callable[[torch.Tensor], torch.Tensor],
    ckpt_dir: Path,
    *,
    progress: bool = True,
    stop_after: int | None = None,
) -> bool:
    """Train to the configured number of epochs, resuming from ``ckpt_dir`` if it holds one.

    ``images`` in [-1, 1] on the CPU; ``encode`` maps a batch into the space the diffusion runs
    in; ``stop_after`` leaves after that many total steps, as an interruption would. Returns True
    when training is complete. The loop (data order, flips, checkpoints, interruption) is the
    shared one of :func:`genbench.training.adversarial.train_adversarial`.
    """
    return train_adversarial(trainer, images, encode, ckpt_dir,  # type: ignore[arg-type]
                             progress=progress, stop_after=stop_after, desc="train eps")
