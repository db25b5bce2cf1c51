"""DDPM ancestral sampling: Algorithm 2 of Ho et al., NeurIPS 2020, with optional respacing.

x_T ~ N(0, I); for each visited step t (descending): eps = eps_theta(x_t, t), x0' from eps
(Eq. 4 inverted, clipped to [-1, 1] as the official sampler does), x_prev ~ N(mu~(x_t, x0'),
sigma_t^2 I) with the posterior mean of Eq. 7 and sigma_t^2 = beta-tilde_t (Eq. 7, "small") or
beta_t ("large", the official CIFAR-10 setting ``model_var_type='fixedlarge'``); no noise on the
last step (Algorithm 2 line 3: z = 0 at t = 1). Without clipping the mean equals Algorithm 2
line 4, 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps).

Fewer than T steps respace the chain (Nichol & Dhariwal, ICML 2021, Sec. 4): the kept indices
tau_1 < ... < tau_S define betas 1 - abar_{tau_i} / abar_{tau_{i-1}}, and the same formulas run
on them. NFE = number of visited steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from genbench.diffusion.gaussian import (
    Step,
    gaussian_schedule,
    predict_eps_and_x0,
    reverse_steps,
    sampling_timesteps,
)
from genbench.errors import UserError
from genbench.registry import register
from genbench.samplers.base import Callback, Sampler, bind, report_step
from genbench.samplers.noise import PerSampleRNG

VARIANCES = ("small", "large")


@torch.no_grad()
def sample_ddpm(
    denoiser: torch.nn.Module,
    x_T: torch.Tensor,
    chain: Sequence[Step],
    rng: PerSampleRNG,
    *,
    callback: Callback | None = None,
    clip_x0: bool = True,
    variance: str = "small",
) -> torch.Tensor:
    """Ancestral sampling along ``chain`` (:func:`reverse_steps` of the visited indices)."""
    if variance not in VARIANCES:
        raise UserError(f"unknown ddpm variance {variance!r}; use small or large")
    x = x_T
    for i, step in enumerate(chain):
        _, x0 = predict_eps_and_x0(denoiser, x, step, clip_x0=clip_x0)  # x0' (Eq. 4 inverted)
        report_step(callback, i, step.t, x, x0)
        beta, abar, abar_prev = step.beta, step.abar, step.abar_prev  # respaced beta_t (N&D S4)
        coef_x0 = math.sqrt(abar_prev) * beta / (1.0 - abar)  # Eq. 7, weight of x0
        coef_xt = math.sqrt(1.0 - beta) * (1.0 - abar_prev) / (1.0 - abar)  # Eq. 7, weight of x_t
        x = coef_x0 * x0 + coef_xt * x  # mu~_t(x_t, x0'), Eq. 7
        if step.prev < 0:
            break  # Algorithm 2 line 3: z = 0 on the last step
        var = step.posterior_variance if variance == "small" else beta  # sigma_t^2, Sec. 3.2
        x = x + math.sqrt(var) * rng.randn(*x.shape[1:]).to(x.device, x.dtype)  # + sigma_t z
    return x


@register("sampler", "ddpm", paper="Ho et al., NeurIPS 2020, Algorithm 2", objective="eps")
def ddpm(
    steps: int = 1000,
    schedule: str = "linear",
    num_train_steps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    spacing: str = "linspace",
    variance: str = "small",
    clip_x0: bool = True,
) -> Sampler:
    """DDPM ancestral sampler (NFE = steps; steps < num_train_steps respaces the chain).

    ``spacing`` defaults to ``linspace``, Nichol & Dhariwal's respacing of one section (keeps
    both the first and the last training step); with all steps every spacing is the full chain.
    """
    if variance not in VARIANCES:
        raise UserError(f"unknown sampler.variance {variance!r}; use small or large")
    return eps_sampler("ddpm", sample_ddpm, steps, schedule, num_train_steps, beta_start, beta_end,
                       spacing, variance=variance, clip_x0=clip_x0)


def eps_sampler(name: str, algorithm: Callable[..., torch.Tensor], steps: int, schedule: str,
                num_train_steps: int, beta_start: float, beta_end: float, spacing: str,
                **options: Any) -> Sampler:
    """Bind ``algorithm(net, x_T, chain, rng, *, callback, **options)`` of an eps network.

    The chain is the schedule's visited steps (:func:`reverse_steps`). The training key is the
    schedule's settings only (kind, T, betas): every eps sampler on the same schedule - ddpm or
    ddim, any steps, eta or spacing - shares one trained model.
    """
    sched = gaussian_schedule(schedule, num_train_steps, beta_start=beta_start,
                              beta_end=beta_end)
    timesteps = sampling_timesteps(num_train_steps, steps, spacing)
    chain = reverse_steps(sched, timesteps)
    recorded = {**sched.settings, "steps": steps, "spacing": spacing, **options,
                "timesteps": timesteps}
    return Sampler(name=name, objective="eps", steps=steps,
                   sample=bind(algorithm, chain, **options), schedule=sched,
                   training_key=dict(sched.settings), options=recorded)
