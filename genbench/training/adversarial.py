"""The adversarial objective of DDGAN (Xiao et al., ICLR 2022), WDDGAN and LDDGAN.

One training step, as in the official ``NVlabs/denoising-diffusion-gan train_ddgan.py``:

* D step: k ~ U{0..T-1}, (x_k, x_{k+1}) ~ q; loss softplus(-D(x_k, k, x_{k+1})) on real pairs
  plus softplus(D(x'_k, k, x_{k+1})) on fake pairs, x'_k ~ q(x_k | x_{k+1}, G(x_{k+1}, k, z))
  (paper Eq. 5, non-saturating form). R1 = gamma/2 E||grad_{x_k} D(real)||^2 on real x_k,
  every ``lazy_reg`` steps and - as in the official code, unlike StyleGAN2 - not multiplied by it.
* G step: fresh k, pairs and z; loss softplus(-D(x'_k, k, x_{k+1})), plus an L1 reconstruction
  term |x0' - x0| for WDDGAN (weight 1) or LDDGAN's weighted learning (weight 1 - sigmoid(phi),
  phi = linspace(-delta, delta) over epochs; Trinh and Hamagami 2024 (LDDGAN), as
  ``thanhluantrinh/LDDGAN train_ldgan.py`` computes it).
* Adam(0.5, 0.9), cosine learning-rate decay per epoch to 1e-5, EMA of the generator
  (:mod:`genbench.training.ema`, started as ``NVlabs/denoising-diffusion-gan EMA.py`` starts it).

The random draws of a step (:class:`StepDraws`: k, the noise of x_{k+1} then of x_k, z and the
posterior noise, for D then for G) come from the ``noise`` stream in the official order, or are
given (tests/test_parity_ddgan.py feeds the draws of official DDGAN, WaveDiff and LDDGAN runs and
checks the weights after four steps against the official loops'). Two deliberate differences
from the official loops, which change no weight: the generator's forward in the D step runs
without gradients (officially its gradients are computed and then zeroed by
``netG.zero_grad()``), and the R1 and the D losses are backpropagated in one sum instead of three
``backward`` calls. One difference in length: the official loops run ``range(num_epoch + 1)``,
one epoch more than the cosine schedule's T_max (that last epoch at eta_min); ``epochs`` here is
the number of epochs trained.

The epochs, data, checkpoints and resume are the shared loop's (:mod:`genbench.training.loop`);
the noise generator (the ``noise`` stream), optimizers, schedulers and EMA are in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from genbench.backbones.discriminator import stddev_group
from genbench.diffusion.ddgan import (
    DDGANSchedule,
    posterior_sample,
    q_sample_pairs,
    weighted_learning_weights,
)
from genbench.distributed import (
    BatchShard,
    average_gradients,
    global_shape,
    take,
)
from genbench.errors import UserError
from genbench.precision import FP32, MixedPrecision, compiled
from genbench.training.ema import ema_model, update_ema
from genbench.training.loop import ObjectiveSettings
from genbench.training.seeding import stream_generator

REC_LOSSES = ("none", "l1", "weighted")


@dataclass(frozen=True)
class AdversarialConfig(ObjectiveSettings):
    """Hyper-parameters of adversarial training (official CIFAR-10 values as defaults)."""

    WHAT = "train adversarial"
    LR_SETTINGS = "train.adversarial.lr_g, train.adversarial.lr_d"
    SUBSECTIONS = ("discriminator",)  # the discriminator's architecture, built by the harness

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
    budget: str | None = None  # training compute instead of epochs: images:N | macs:N | seconds:N
    precision: str = "fp32"  # fp32 | bf16 | fp16: the step under autocast (training.precision)
    compile: bool = False  # torch.compile of G's and D's forward passes

    def cost_probes(self) -> dict[str, int]:
        """Steps whose training MACs tell every step's (:mod:`genbench.training.budget`): a lazy
        R1 step (step 0) and, when lazy steps are not every step, a plain one (step 1)."""
        r1 = self.r1_gamma > 0
        if r1 and self.lazy_reg == 1:
            return {"r1": 0}
        return {"r1": 0, "plain": 1} if r1 else {"plain": 1}

    def __post_init__(self) -> None:
        if self.rec_loss not in REC_LOSSES:
            raise UserError(f"train.rec_loss={self.rec_loss!r}; use one of {', '.join(REC_LOSSES)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lazy_reg < 1:
            raise UserError("train.epochs, train.batch_size and train.lazy_reg must be >= 1")
        self.check_common()


@dataclass(frozen=True)
class PhaseDraws:
    """The random draws of one phase (the D update or the G update) of a training step.

    ``k`` [B] step indices; ``noise_next`` and ``noise_k`` the noise of x_{k+1} and of x_k
    (:func:`genbench.diffusion.ddgan.q_sample_pairs`); ``z`` [B, z_dim] the generator's latent;
    ``posterior`` the noise of x'_k ~ q(x_k | x_{k+1}, x0'). The G phase draws ``noise_k`` too,
    unused, as the official loop does.
    """

    k: torch.Tensor
    noise_next: torch.Tensor
    noise_k: torch.Tensor
    z: torch.Tensor
    posterior: torch.Tensor

    @classmethod
    def draw(cls, num_steps: int, x0: torch.Tensor, z_dim: int,
             generator: torch.Generator | None, shard: BatchShard | None = None) -> PhaseDraws:
        """Draw in the official order (NVlabs/denoising-diffusion-gan ``train_ddgan.py``, lines
        335-379 for D and 400-412 for G): ``t = torch.randint``, then ``q_sample_pairs``
        (x_{t+1}'s noise, then x_t's), ``latent_z = torch.randn``, and the ``sample_posterior``
        noise. With a ``shard`` (data parallel) each is drawn for the whole global batch and
        this rank's rows are kept."""
        shape = global_shape(shard, x0.shape)

        def normal(shape: tuple[int, ...]) -> torch.Tensor:
            noise = torch.randn(shape, generator=generator, device=x0.device, dtype=x0.dtype)
            return take(shard, noise)

        b = shape[0]
        k = take(shard, torch.randint(0, num_steps, (b,), generator=generator, device=x0.device))
        noise_next = normal(shape)
        noise_k = normal(shape)
        z = normal((b, z_dim))
        return cls(k, noise_next, noise_k, z, normal(shape))


@dataclass(frozen=True)
class StepDraws:
    """Every random draw of one training step: the D phase's, then the G phase's.

    Normal training draws them from the trainer's ``noise`` stream (:meth:`draw`: the same
    sequence, drawn up front, that the official loop draws as it goes); a test can feed them.
    """

    d: PhaseDraws
    g: PhaseDraws

    @classmethod
    def draw(cls, num_steps: int, x0: torch.Tensor, z_dim: int,
             generator: torch.Generator | None, shard: BatchShard | None = None) -> StepDraws:
        d = PhaseDraws.draw(num_steps, x0, z_dim, generator, shard)
        return cls(d, PhaseDraws.draw(num_steps, x0, z_dim, generator, shard))


def _losses_d(G, D, sched, x0, cfg, step, dr: PhaseDraws, *, D_r1=None,
              amp: MixedPrecision = FP32) -> dict[str, torch.Tensor]:
    """Discriminator losses on one batch (real, fake, and R1 on lazy steps).

    R1 = r1_gamma / 2 * mean ||grad_{x_k} D(x_k, k, x_{k+1})||^2 when ``step % lazy_reg == 0``
    (``train_ddgan.py`` lines 362-372, the global step counted from 0, not scaled by lazy_reg).
    ``D_r1``: the discriminator for R1's pass when ``D`` is compiled (a double backward needs the
    eager module); ``amp``: the trainer's precision, under fp16 with the loss scale R1's
    gradient is taken at and divided by (:mod:`genbench.precision`).
    """
    x_k, x_next = q_sample_pairs(sched, x0, dr.k, noise_next=dr.noise_next, noise_k=dr.noise_k)
    x_k.requires_grad_(True)
    r1 = step % cfg.lazy_reg == 0 and cfg.r1_gamma > 0
    d_real = (D_r1 if r1 and D_r1 is not None else D)(x_k, dr.k, x_next)
    losses = {"d_real": F.softplus(-d_real).mean()}
    if r1:
        (grad,) = torch.autograd.grad(amp.scale(d_real.sum()), x_k, create_graph=True)
        grad = amp.unscaled(grad)
        losses["r1"] = cfg.r1_gamma / 2 * grad.flatten(1).pow(2).sum(1).mean()
    with torch.no_grad():  # officially with gradients, which netG.zero_grad() then discards
        x0_fake = G(x_next, dr.k, dr.z)
    x_k_fake = posterior_sample(sched, x0_fake, x_next, dr.k, dr.posterior)
    losses["d_fake"] = F.softplus(D(x_k_fake, dr.k, x_next)).mean()
    return losses


def _losses_g(G, D, sched, x0, rec_weight, dr: PhaseDraws) -> dict[str, torch.Tensor]:
    """Generator losses on one batch: non-saturating adversarial (+ weighted L1)."""
    _, x_next = q_sample_pairs(sched, x0, dr.k, noise_next=dr.noise_next, noise_k=dr.noise_k)
    x0_fake = G(x_next, dr.k, dr.z)
    x_k_fake = posterior_sample(sched, x0_fake, x_next, dr.k, dr.posterior)
    losses = {"g_adv": F.softplus(-D(x_k_fake, dr.k, x_next)).mean()}
    if rec_weight > 0:
        losses["g_rec"] = rec_weight * F.l1_loss(x0_fake, x0)
    return losses


class AdversarialTrainer:
    """Holds G, D, their optimizers, schedulers and the generator EMA; one step at a time."""

    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, schedule: DDGANSchedule,
                 cfg: AdversarialConfig, device: torch.device) -> None:
        if G.z_dim < 1:
            raise UserError("the adversarial objective needs a generator with z "
                            "(backbone z_dim > 0)")
        self.G, self.D, self.sched, self.cfg, self.device = G, D, schedule, cfg, device
        self.G_ema = ema_model(G, cfg.ema_decay, from_initial=False)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas)
        self.sch_g = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_g, cfg.epochs, cfg.lr_min)
        self.sch_d = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_d, cfg.epochs, cfg.lr_min)
        self.noise_gen = stream_generator(cfg.seed, "noise", device=device)
        self.rec_weights = weighted_learning_weights(cfg.epochs, cfg.wl_delta)
        self.amp = MixedPrecision(cfg.precision, device)  # train.precision
        self.G_fwd, self.D_fwd = compiled(G, cfg.compile), compiled(D, cfg.compile)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.shard: BatchShard | None = None  # data parallel: this rank's rows (the loop's)
        # None: draw each step's randomness from the noise stream; a callable (step, x0) ->
        # StepDraws feeds given draws instead (the official-parity test)
        self.draw_source: Callable[[int, torch.Tensor], StepDraws] | None = None

    def draws(self, x0: torch.Tensor) -> StepDraws:
        """The random draws of the next step on batch ``x0``."""
        if self.draw_source is not None:
            return self.draw_source(self.step, x0)
        return StepDraws.draw(self.sched.num_steps, x0, self.G.z_dim, self.noise_gen, self.shard)

    def batch_group(self, batch: int) -> int:
        """The discriminator's minibatch-stddev group for a global batch of ``batch``
        (:func:`genbench.backbones.discriminator.minibatch_stddev`'s rule): the data-parallel
        shards keep these groups whole, so the step equals the one-process step."""
        return stddev_group(batch)

    def rec_weight(self, epoch: int) -> float:
        """Weight of the L1 term at ``epoch`` (0, 1, or the weighted-learning schedule)."""
        if self.cfg.rec_loss == "none":
            return 0.0
        if self.cfg.rec_loss == "l1":
            return 1.0
        return float(self.rec_weights[epoch])

    def train_step(self, x0: torch.Tensor, epoch: int,
                   draws: StepDraws | None = None) -> dict[str, float]:
        """One D update then one G update (official order), then the EMA update; ``draws``:
        the step's random draws (default :meth:`draws`)."""
        dr = self.draws(x0) if draws is None else draws
        amp = self.amp
        amp.begin()
        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with amp.autocast():
            d_losses = _losses_d(self.G_fwd, self.D_fwd, self.sched, x0, self.cfg, self.step,
                                 dr.d, D_r1=self.D, amp=amp)
        amp.scale(sum(d_losses.values())).backward()
        average_gradients(self.D.parameters())
        amp.step(self.opt_d)
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with amp.autocast():
            g_losses = _losses_g(self.G_fwd, self.D_fwd, self.sched, x0, self.rec_weight(epoch),
                                 dr.g)
        amp.scale(sum(g_losses.values())).backward()
        average_gradients(self.G.parameters())
        amp.step(self.opt_g)
        update_ema(self.G_ema, self.G)
        self.step += 1
        return amp.end({k: float(v.detach()) for k, v in {**d_losses, **g_losses}.items()})

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
        } | self.amp.state()

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sch_g.load_state_dict(state["sch_g"])
        self.sch_d.load_state_dict(state["sch_d"])
        self.noise_gen.set_state(state["noise_gen"])
        self.amp.load_state(state)
