"""Discrete Gaussian diffusion of DDPM (Ho et al., NeurIPS 2020) and DDIM (Song et al., ICLR 2021).

One module holds the noise schedule and the coefficients that training (eps objective) and the
samplers (ddpm, ddim) share, apart from the solvers (as k-diffusion keeps ``get_sigmas_*`` apart
from its samplers):

* forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), abar_t = prod_{s<=t} (1 -
  beta_s) (Ho et al. Eq. 4), drawn by :func:`q_sample`;
* schedules: linear betas from 1e-4 to 0.02 over T = 1000 steps (Ho et al. Sec. 4) and the cosine
  schedule abar_t = f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) pi/2)^2, betas clipped at 0.999
  (Nichol & Dhariwal, ICML 2021, Eq. 17);
* the timesteps a sampler visits (:func:`sampling_timesteps`) and respacing: a sub-sequence
  tau_S > ... > tau_1 of training steps defines a shorter Markov chain whose betas come from the
  kept abar (Nichol & Dhariwal Sec. 4, "improving sampling speed"; DDIM Sec. 4.2);
* the thin eps -> x0 parameterization wrapper (:func:`predict_eps_and_x0`, DDIM Eq. 9).

Indices are 0-based as in the official code: training index t = 0..T-1 is the paper's step t + 1,
the network sees that integer, and ``alpha_bar(schedule, -1) = 1`` is the clean data (the DDIM
official ``compute_alpha`` convention, diffusers' ``set_alpha_to_one``). Schedules are kept in
float64 and coefficients are computed in float64 before they meet float32 tensors, as Ho et al.'s
``diffusion_utils_2.py`` and Nichol & Dhariwal's ``gaussian_diffusion.py`` do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from genbench.errors import UserError

SCHEDULES = ("linear", "cosine")
# Timestep spacings, named as diffusers names them (Lin et al., WACV 2024, Table 2), plus the DDIM
# paper's quadratic one (Song et al. 2021, Appendix D.2, official ``--skip_type quad``).
SPACINGS = ("leading", "trailing", "linspace", "quadratic")
COSINE_S = 0.008  # Nichol & Dhariwal Eq. 17 offset
COSINE_MAX_BETA = 0.999  # Nichol & Dhariwal: betas clipped to avoid a singularity at t = T


@dataclass(frozen=True, eq=False)
class GaussianSchedule:
    """A T-step variance schedule; ``betas[t]`` and ``alphas_cumprod[t]`` for t = 0..T-1 (float64).

    ``settings`` names the schedule completely (kind, T and its parameters): it is what training
    depends on, so it is the samplers' ``training_key``.
    """

    kind: str
    num_train_steps: int
    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    settings: dict[str, Any]


def linear_schedule(num_train_steps: int = 1000, beta_start: float = 1e-4,
                    beta_end: float = 0.02) -> GaussianSchedule:
    """Ho et al. 2020 Sec. 4: betas linear from beta_1 = 1e-4 to beta_T = 0.02, T = 1000."""
    if num_train_steps < 1:
        raise UserError(f"num_train_steps must be >= 1, got {num_train_steps}")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise UserError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    betas = torch.linspace(beta_start, beta_end, num_train_steps, dtype=torch.float64)
    settings = {"schedule": "linear", "num_train_steps": num_train_steps,
                "beta_start": float(beta_start), "beta_end": float(beta_end)}
    return _schedule("linear", betas, settings)


def cosine_schedule(num_train_steps: int = 1000, s: float = COSINE_S,
                    max_beta: float = COSINE_MAX_BETA) -> GaussianSchedule:
    """Nichol & Dhariwal 2021 Eq. 17: beta_t = min(1 - abar(t+1)/abar(t), max_beta)."""
    if num_train_steps < 1:
        raise UserError(f"num_train_steps must be >= 1, got {num_train_steps}")
    grid = torch.arange(num_train_steps + 1, dtype=torch.float64) / num_train_steps
    f = torch.cos((grid + s) / (1.0 + s) * math.pi / 2) ** 2  # f(t); abar(t) = f(t) / f(0)
    betas = (1.0 - f[1:] / f[:-1]).clamp(max=max_beta)
    settings = {"schedule": "cosine", "num_train_steps": num_train_steps, "s": float(s),
                "max_beta": float(max_beta)}
    return _schedule("cosine", betas, settings)


def _schedule(kind: str, betas: torch.Tensor, settings: dict[str, Any]) -> GaussianSchedule:
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)  # abar_t = prod_{s<=t} alpha_s (Eq. 4)
    return GaussianSchedule(kind, betas.numel(), betas, alphas_cumprod, settings)


def gaussian_schedule(kind: str = "linear", num_train_steps: int = 1000, *,
                      beta_start: float = 1e-4, beta_end: float = 0.02) -> GaussianSchedule:
    """The schedule named ``kind`` (``beta_start``/``beta_end`` only apply to ``linear``)."""
    if kind == "linear":
        return linear_schedule(num_train_steps, beta_start, beta_end)
    if kind == "cosine":
        return cosine_schedule(num_train_steps)
    raise UserError(f"unknown schedule {kind!r}; use one of {', '.join(SCHEDULES)}")


def alpha_bar(schedule: GaussianSchedule, t: int) -> float:
    """abar_t as a float64 Python number; t = -1 is the data itself (abar = 1)."""
    return 1.0 if t < 0 else float(schedule.alphas_cumprod[t])


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] as [B, 1, 1, ...] in ``like``'s dtype and device (``values`` in float64)."""
    out = values.to(like.device)[t.detach().to(like.device, torch.long)].to(like.dtype)
    return out.reshape(-1, *([1] * (like.dim() - 1)))


def q_sample(schedule: GaussianSchedule, x0: torch.Tensor, t: torch.Tensor,
             noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps for per-sample indices t (Ho et al. Eq. 4)."""
    abar = schedule.alphas_cumprod  # the square roots are taken in float64, then cast
    return (_per_sample(abar.sqrt(), t, x0) * x0
            + _per_sample((1.0 - abar).sqrt(), t, x0) * noise)


# ------------------------------------------------------------------------------ sampling steps


def sampling_timesteps(num_train_steps: int, steps: int, spacing: str = "leading") -> list[int]:
    """The S training indices a sampler visits, descending (first = where x_T is denoised).

    For T = 1000: ``leading`` S = 50 -> 980, 960, ..., 0 (DDIM's "uniform" stride c = T // S,
    diffusers' default); ``trailing`` -> 999, 979, ..., 19 (starts at the last training step;
    Lin et al. 2024); ``linspace`` S = 10 -> 999, 888, ..., 0 (both ends, as Nichol & Dhariwal's
    ``space_timesteps`` for one section); ``quadratic`` -> int(linspace(0, sqrt(0.8 T), S)^2)
    reversed (DDIM Appendix D.2). diffusers issue 7401: the choice changes FID a lot.

    Only ``quadratic`` can repeat an index (for T = 1000 from S = 30 on, near t = 0): the official
    DDIM code keeps the repeats, and so does this; a step from t to t is the identity (beta = 0)
    and still counts one network evaluation.
    """
    T, S = int(num_train_steps), int(steps)
    if not 1 <= S <= T:
        raise UserError(f"sampler.steps={S} must be between 1 and num_train_steps={T}")
    if spacing == "leading":
        ascending = np.arange(S) * (T // S)
    elif spacing == "trailing":  # [:S]: the float arange can add an element near 0
        ascending = (np.round(np.arange(T, 0, -T / S)[:S]) - 1)[::-1]
    elif spacing == "linspace":
        ascending = np.linspace(0, T - 1, S).round()
    elif spacing == "quadratic":
        ascending = np.floor(np.linspace(0, np.sqrt(T * 0.8), S) ** 2)
    else:
        raise UserError(f"unknown sampler.spacing {spacing!r}; use one of {', '.join(SPACINGS)}")
    return [int(t) for t in ascending[::-1]]


class Step(NamedTuple):
    """One reverse step x_t -> x_prev of a (possibly respaced) chain."""

    t: int  # training index fed to the network
    prev: int  # training index reached; -1 = the data
    abar: float  # abar_t
    abar_prev: float  # abar_prev (1 for the data)

    @property
    def beta(self) -> float:
        """Respaced beta_t = 1 - abar_t / abar_prev (Nichol & Dhariwal Sec. 4)."""
        return 1.0 - self.abar / self.abar_prev

    @property
    def posterior_variance(self) -> float:
        """beta-tilde_t = (1 - abar_prev) / (1 - abar_t) beta_t (Ho et al. Eq. 7)."""
        return (1.0 - self.abar_prev) / (1.0 - self.abar) * self.beta


def reverse_steps(schedule: GaussianSchedule, timesteps: list[int]) -> list[Step]:
    """Pair each visited index with the next one (the last goes to the data, index -1).

    Repeated indices (``quadratic`` spacing) give identity steps with beta = 0.
    """
    if not timesteps:
        raise UserError("a sampler needs at least one timestep")
    if timesteps[0] >= schedule.num_train_steps or timesteps[-1] < 0 or any(
            a < b for a, b in zip(timesteps, timesteps[1:])):
        raise UserError(f"timesteps must descend within 0..{schedule.num_train_steps - 1}")
    prevs = [*timesteps[1:], -1]
    return [Step(t, p, alpha_bar(schedule, t), alpha_bar(schedule, p))
            for t, p in zip(timesteps, prevs)]


def respaced_betas(schedule: GaussianSchedule, timesteps: list[int]) -> torch.Tensor:
    """Betas of the chain that keeps only ``timesteps``, in training order (float64).

    With every index kept they are the original betas (up to float64 rounding); in general
    cumprod(1 - respaced betas) equals abar at the kept indices.
    """
    return torch.tensor([step.beta for step in reversed(reverse_steps(schedule, timesteps))],
                        dtype=torch.float64)


def predict_eps_and_x0(eps_net: torch.nn.Module, x: torch.Tensor, step: Step, *,
                       clip_x0: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The eps parameterization: eps = net(x_t, t), x0 = (x_t - sqrt(1-abar) eps) / sqrt(abar).

    DDIM Eq. 9 (Ho et al. Eq. 4 solved for x_0). ``clip_x0`` clamps x0 to [-1, 1] as Ho et al.'s
    sampler does (``clip_denoised=True``); eps is returned unclipped.
    """
    t = torch.full((x.shape[0],), step.t, dtype=torch.long, device=x.device)
    eps = eps_net(x, t, None)
    x0 = (x - math.sqrt(1.0 - step.abar) * eps) / math.sqrt(step.abar)
    return eps, x0.clamp(-1.0, 1.0) if clip_x0 else x0


__all__ = [
    "SCHEDULES",
    "SPACINGS",
    "GaussianSchedule",
    "Step",
    "alpha_bar",
    "cosine_schedule",
    "gaussian_schedule",
    "linear_schedule",
    "predict_eps_and_x0",
    "q_sample",
    "respaced_betas",
    "reverse_steps",
    "sampling_timesteps",
]
