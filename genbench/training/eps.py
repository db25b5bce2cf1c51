"""The eps objective of DDPM (Ho et al., NeurIPS 2020): Algorithm 1 with the simple loss, Eq. 14.

One training step: t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,
loss = mean ||eps - eps_theta(x_t, t)||^2. The settings default to the official CIFAR-10 run
(``hojonathanho/diffusion`` ``scripts/run_cifar.py``): Adam lr 2e-4 with a linear warm-up over
5000 steps (lr * min(step / warmup, 1), ``utils.get_warmed_up_lr``; here torch's ``LambdaLR``),
global gradient-norm clipping at 1, batch 128, EMA 0.9999 of the weights started at the initial
weights as ``tf.train.ExponentialMovingAverage`` does (the EMA network is the one sampled), about
800k steps; dropout 0.1 and random flips belong to the network and data settings.

The epochs, data order, flips, dropout seeding, checkpoints and resume are the shared loop's
(:mod:`genbench.training.loop`); the noise generator, optimizer, warm-up and EMA are in the
checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from genbench.diffusion.gaussian import GaussianSchedule, q_sample
from genbench.distributed import BatchShard, average_gradients, global_shape, take
from genbench.errors import UserError
from genbench.precision import MixedPrecision, compiled
from genbench.training.ema import ema_model, update_ema
from genbench.training.loop import ObjectiveSettings
from genbench.training.seeding import stream_generator


@dataclass(frozen=True)
class EpsConfig(ObjectiveSettings):
    """Hyper-parameters of eps training (Ho et al.'s CIFAR-10 values as defaults)."""

    WHAT = "train eps"
    LR_SETTINGS = "train.eps.lr"

    epochs: int = 2048  # ~800k steps at batch 128 on 50k images (Ho et al. Sec. 4)
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.9  # Adam betas (TensorFlow defaults, as the official run)
    beta2: float = 0.999
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam (L2 in the gradient, Ho et al.) | adamw (decoupled, U-ViT)
    warmup: int = 5000  # steps of linear learning-rate warm-up; 0 = none
    grad_clip: float = 1.0  # global gradient-norm clip; 0 = none
    ema_decay: float = 0.9999
    hflip: bool = False  # random horizontal flips (Ho et al. flip CIFAR-10: ddpm_cifar10.yaml)
    seed: int = 0
    ckpt_every: int = 2000  # steps between checkpoints
    budget: str | None = None  # training compute instead of epochs: images:N | macs:N | seconds:N
    precision: str = "fp32"  # fp32 | bf16 | fp16: the step under autocast (training.precision)
    compile: bool = False  # torch.compile of the network's forward pass

    def cost_probes(self) -> dict[str, int]:
        """Every step costs the same: one network forward and backward (step 0 tells it)."""
        return {"step": 0}

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.ckpt_every < 1:
            raise UserError("train.epochs, train.batch_size and train.ckpt_every must be >= 1")
        if self.lr <= 0 or self.warmup < 0 or self.grad_clip < 0:
            raise UserError("train.lr must be > 0, train.warmup and train.grad_clip >= 0")
        if self.optimizer not in ("adam", "adamw"):
            raise UserError(f"train.optimizer must be adam or adamw, not {self.optimizer!r}")
        self.check_common()


def eps_loss(net: torch.nn.Module, schedule: GaussianSchedule, x0: torch.Tensor,
             generator: torch.Generator, shard: BatchShard | None = None) -> torch.Tensor:
    """L_simple (Ho et al. Eq. 14) on one batch, drawing t and eps from ``generator`` (with a
    data-parallel ``shard``: for the whole global batch, keeping this rank's rows)."""
    shape = global_shape(shard, x0.shape)
    t = take(shard, torch.randint(0, schedule.num_train_steps, (shape[0],), generator=generator,
                                  device=x0.device))  # t ~ U{1..T} (0-based)
    noise = take(shard, torch.randn(shape, generator=generator, device=x0.device,
                                    dtype=x0.dtype))
    x_t = q_sample(schedule, x0, t, noise)  # sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    return F.mse_loss(net(x_t, t, None), noise)  # ||eps - eps_theta(x_t, t)||^2, mean


def warmup_factor(warmup: int) -> Any:
    """``step -> min(step / warmup, 1)`` (1 throughout when ``warmup`` is 0), for LambdaLR."""
    if warmup == 0:
        return lambda step: 1.0
    return lambda step: min(step / warmup, 1.0)


class EpsTrainer:
    """Holds the eps network, its Adam optimizer, warm-up and EMA copy; one step at a time."""

    def __init__(self, net: torch.nn.Module, schedule: GaussianSchedule, cfg: EpsConfig,
                 device: torch.device) -> None:
        if net.z_dim > 0:
            raise UserError("the eps objective needs a network without z (backbone z_dim=0)")
        if net.output != "eps":
            raise UserError(f"the eps objective needs an eps-parameterised denoiser, this one has "
                            f"output={net.output!r}; use a ddpm or ddim sampler with it")
        self.net, self.schedule, self.cfg, self.device = net, schedule, cfg, device
        self.net_ema = ema_model(net, cfg.ema_decay, from_initial=True)
        # adamw: decoupled weight decay (Loshchilov and Hutter 2019), U-ViT's optimizer
        # (Bao et al. 2023, configs/cifar10_uvit_small.py: AdamW, weight decay 0.03)
        optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.opt = optimizer(net.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                             weight_decay=cfg.weight_decay)
        self.warmup = torch.optim.lr_scheduler.LambdaLR(self.opt, warmup_factor(cfg.warmup))
        self.noise_gen = stream_generator(cfg.seed, "noise", device=device)
        self.amp = MixedPrecision(cfg.precision, device)  # train.precision
        self.net_fwd = compiled(net, cfg.compile)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.shard: BatchShard | None = None  # data parallel: this rank's rows (the loop's)

    def learning_rate(self) -> float:
        """The learning rate of the coming update: lr * min(step / warmup, 1)."""
        return float(self.opt.param_groups[0]["lr"])

    def train_step(self, x0: torch.Tensor, epoch: int) -> dict[str, float]:
        """One Adam update on L_simple, then the EMA update. ``epoch`` is unused (no decay)."""
        self.net.train()
        self.amp.begin()
        self.opt.zero_grad(set_to_none=True)
        with self.amp.autocast():  # train.precision (fp32: nothing)
            loss = eps_loss(self.net_fwd, self.schedule, x0, self.noise_gen, self.shard)
        self.amp.scale(loss).backward()
        average_gradients(self.net.parameters())  # before clipping: the global gradient's norm
        self.amp.unscale_(self.opt)  # clip the true gradient
        grad_norm = self._clip_gradients()
        self.amp.step(self.opt)
        self.warmup.step()
        update_ema(self.net_ema, self.net)
        self.step += 1
        return self.amp.end({"loss": float(loss.detach()), "grad_norm": grad_norm})

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
                "opt": self.opt.state_dict(), "warmup": self.warmup.state_dict(),
                "noise_gen": self.noise_gen.get_state()} | (
                    self.amp.state())

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.opt.load_state_dict(state["opt"])
        self.warmup.load_state_dict(state["warmup"])
        self.noise_gen.set_state(state["noise_gen"])
        self.amp.load_state(state)
