"""DDIM sampling: the generalized update of Song, Meng & Ermon, ICLR 2021 (Eq. 12, sigma Eq. 16).

For consecutive visited indices t > prev (prev = -1 is the data, abar = 1):

    x_prev = sqrt(abar_prev) x0' + sqrt(1 - abar_prev - sigma_t^2) eps_theta(x_t, t) + sigma_t z,
    x0' = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t)                                (Eq. 9)
    sigma_t = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)        (Eq. 16)

eta = 0 is the deterministic DDIM; eta = 1 is DDPM's posterior variance on the sub-sequence.
Any number of steps S <= T runs from the same eps network trained on T steps (Sec. 4.2).

The visited indices are a named ``spacing`` and are recorded, because they change FID a great
deal (diffusers issue 7401); each step goes to the *next visited index*, not to t - T // S
(diffusers issue 12633: its DDIMScheduler steps to the wrong abar for ``linspace``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from genbench.diffusion.gaussian import Step, predict_eps_and_x0
from genbench.errors import UserError
from genbench.registry import register
from genbench.samplers.base import Callback, Sampler, report_step
from genbench.samplers.ddpm import eps_sampler
from genbench.samplers.noise import PerSampleRNG


@torch.no_grad()
def sample_ddim(
    denoiser: torch.nn.Module,
    x_T: torch.Tensor,
    chain: Sequence[Step],
    rng: PerSampleRNG,
    *,
    callback: Callback | None = None,
    eta: float = 0.0,
    clip_x0: bool = False,
) -> torch.Tensor:
    """DDIM along ``chain`` (:func:`reverse_steps` of the visited indices); returns x_0.

    ``clip_x0`` clamps x0' to [-1, 1] and re-derives eps from it, as Nichol & Dhariwal's
    ``ddim_sample`` does (diffusers: ``use_clipped_model_output=True``); the DDIM code does not.
    """
    x = x_T
    for i, step in enumerate(chain):
        eps, x0 = predict_eps_and_x0(denoiser, x, step, clip_x0=clip_x0)  # eps_theta, x0' (Eq. 9)
        report_step(callback, i, step.t, x, x0)
        if clip_x0:
            eps = (x - math.sqrt(step.abar) * x0) / math.sqrt(1.0 - step.abar)  # eps from x0'
        sigma = eta * math.sqrt(step.posterior_variance)  # Eq. 16
        direction = math.sqrt(max(1.0 - step.abar_prev - sigma**2, 0.0))  # "pointing to x_t"
        x = math.sqrt(step.abar_prev) * x0 + direction * eps  # Eq. 12 without noise
        if sigma > 0 and step.prev >= 0:  # sigma = 0 on the last step (abar_prev = 1)
            x = x + sigma * rng.randn(*x.shape[1:]).to(x.device, x.dtype)  # + sigma_t z
    return x


@register("sampler", "ddim", paper="Song et al., ICLR 2021, Eq. 12", objective="eps")
def ddim(
    steps: int = 50,
    eta: float = 0.0,
    schedule: str = "linear",
    num_train_steps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    spacing: str = "leading",
    clip_x0: bool = True,
) -> Sampler:
    """DDIM sampler (NFE = steps) for an eps network trained with DDPM's loss.

    ``spacing`` defaults to ``leading``: the sub-sequence 0, c, 2c, ... (c = T // S) of the
    official DDIM code's default ``--skip_type uniform`` (and diffusers' default); ``quadratic``
    is its other option. With very few steps ``leading`` starts far below T - 1 (S = 5: t = 800);
    ``trailing`` starts at T - 1 (Lin et al. 2024; diffusers issue 7401 for the FID spread).
    ``clip_x0`` defaults to on (diffusers' ``clip_sample`` and Nichol & Dhariwal's ``ddim_sample``
    defaults); the official DDIM ``generalized_steps`` does not clip (``clip_x0=False``). Briefly
    trained CPU models need it: their deterministic trajectories leave [-1, 1] without it.
    """
    if not 0.0 <= eta <= 1.0:
        raise UserError(f"sampler.eta={eta} must be in [0, 1] (0: DDIM, 1: DDPM variance)")
    return eps_sampler("ddim", sample_ddim, steps, schedule, num_train_steps, beta_start, beta_end,
                       spacing, eta=eta, clip_x0=clip_x0)
