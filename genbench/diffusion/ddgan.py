"""Few-step diffusion coefficients of the Denoising Diffusion GAN (Xiao et al., ICLR 2022).

DDGAN, WDDGAN and LDDGAN share these coefficients (official ``Diffusion_Coefficients`` and
``Posterior_Coefficients`` of NVlabs/denoising-diffusion-gan ``train_ddgan.py``, repeated in
VinAIResearch/WaveDiff and thanhluantrinh/LDDGAN ``diffusion.py``):

* time grid t_i = (i / T)(1 - eps) + eps, i = 0..T, eps = 1e-3;
* VP schedule (default): alpha_bar(t) = exp(-1/2 t^2 (beta_max - beta_min) - t beta_min), the
  marginal of the VP-SDE (Song et al. 2021, Eq. 33) with beta_min = 0.1, beta_max = 20;
  geometric option: 1 - alpha_bar(t) = beta_min (beta_max / beta_min)^t (must stay below 1);
* beta_i = 1 - alpha_bar(t_i) / alpha_bar(t_{i-1}) for i = 1..T, and beta_0 = 1e-8 (official);
* forward: x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps, x_{k+1} = sqrt(1 - beta_{k+1}) x_k +
  sqrt(beta_{k+1}) eps' (``q_sample_pairs``; eps' is drawn before eps, as officially);
* posterior q(x_k | x_{k+1}, x0) (DDPM, Ho et al. 2020, Eq. 6-7) with index k mapping
  x_{k+1} -> x_k, k = 0..T-1.

Everything is computed in float64 and cast to float32, as the official code keeps float32 tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genbench.errors import UserError

EPS_T = 1e-3  # smallest time of the grid (official ``eps_small``)
BETA_0 = 1e-8  # the official code's fixed beta_0: the k = 0 entry, not a diffusion step


@dataclass(frozen=True)
class DDGANSchedule:
    """Coefficients of a T-step DDGAN diffusion; index k of every tensor is one step.

    ``betas[k]``, ``alphas_cumprod[k]`` for k = 0..T (k = 0 is the data, abar_0 ~= 1);
    ``posterior_*[k]`` for k = 0..T-1, mapping x_{k+1} -> x_k.
    """

    num_steps: int
    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    posterior_mean_coef_x0: torch.Tensor
    posterior_mean_coef_xt: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor

    @property
    def sqrt_alphas_cumprod(self) -> torch.Tensor:
        return self.alphas_cumprod.sqrt()

    @property
    def sqrt_one_minus_alphas_cumprod(self) -> torch.Tensor:
        return (1.0 - self.alphas_cumprod).sqrt()


def time_grid(num_steps: int) -> torch.Tensor:
    """t_i = (i / T)(1 - eps) + eps for i = 0..T (float64)."""
    i = torch.arange(num_steps + 1, dtype=torch.float64)
    return i / num_steps * (1.0 - EPS_T) + EPS_T


def vp_alpha_bar(t: torch.Tensor, beta_min: float, beta_max: float) -> torch.Tensor:
    """Marginal signal power of the VP-SDE: exp(-1/2 t^2 (b_max - b_min) - t b_min)."""
    return torch.exp(-0.5 * t**2 * (beta_max - beta_min) - t * beta_min)


def geometric_alpha_bar(t: torch.Tensor, beta_min: float, beta_max: float) -> torch.Tensor:
    """1 - beta_min (beta_max / beta_min)^t, the official ``--use_geometric`` variance."""
    return 1.0 - beta_min * (beta_max / beta_min) ** t


def ddgan_schedule(
    num_steps: int,
    *,
    beta_min: float = 0.1,
    beta_max: float = 20.0,
    kind: str = "vp",
) -> DDGANSchedule:
    """Coefficients for a T-step DDGAN (Xiao et al. 2022: T = 4 on CIFAR-10, 2 on CelebA-HQ)."""
    if num_steps < 1:
        raise UserError(f"sampler.steps must be >= 1 for ddgan, got {num_steps}")
    if not 0 < beta_min < beta_max:
        raise UserError(f"need 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
    t = time_grid(num_steps)
    if kind == "vp":
        abar = vp_alpha_bar(t, beta_min, beta_max)
    elif kind == "geometric":
        abar = geometric_alpha_bar(t, beta_min, beta_max)
        if not bool(((abar > 0) & (abar < 1)).all()):
            raise UserError(
                f"geometric schedule with beta_min={beta_min}, beta_max={beta_max} gives a "
                f"variance >= 1 (the official code then yields NaN); use beta_max < 1 or "
                f"schedule=vp"
            )
    else:
        raise UserError(f"unknown ddgan schedule {kind!r}; use 'vp' or 'geometric'")
    betas = torch.cat([torch.tensor([BETA_0], dtype=torch.float64),
                       1.0 - abar[1:] / abar[:-1]])
    # The official code rebuilds abar as cumprod(1 - beta), beta_0 = 1e-8 included.
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return _with_posterior(num_steps, betas, alphas_cumprod)


def _with_posterior(num_steps: int, betas: torch.Tensor, abar: torch.Tensor) -> DDGANSchedule:
    """Posterior q(x_k | x_{k+1}, x0) for k = 0..T-1 (DDPM Eq. 7, with beta_{k+1})."""
    beta_next = betas[1:]
    abar_prev, abar_next = abar[:-1], abar[1:]
    variance = beta_next * (1.0 - abar_prev) / (1.0 - abar_next)
    coef_x0 = beta_next * abar_prev.sqrt() / (1.0 - abar_next)
    coef_xt = (1.0 - abar_prev) * (1.0 - beta_next).sqrt() / (1.0 - abar_next)
    f32 = torch.float32
    return DDGANSchedule(
        num_steps=num_steps,
        betas=betas.to(f32),
        alphas_cumprod=abar.to(f32),
        posterior_mean_coef_x0=coef_x0.to(f32),
        posterior_mean_coef_xt=coef_xt.to(f32),
        posterior_variance=variance.to(f32),
        posterior_log_variance_clipped=variance.clamp(min=1e-20).log().to(f32),
    )


def _at(values: torch.Tensor, k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[k] shaped [B, 1, 1, ...] to broadcast against ``like``."""
    out = values.to(like.device)[k.to(like.device)]
    return out.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def q_sample_pairs(
    schedule: DDGANSchedule,
    x0: torch.Tensor,
    k: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    noise_next: torch.Tensor | None = None,
    noise_k: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (x_k, x_{k+1}) from the forward process for step indices k in 0..T-1.

    x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) ``noise_k``; x_{k+1} = sqrt(1 - beta_{k+1}) x_k +
    sqrt(beta_{k+1}) ``noise_next``. Noise not given is drawn from ``generator`` in the official
    order: x_{k+1}'s noise first, then x_k's (NVlabs/denoising-diffusion-gan ``train_ddgan.py``
    ``q_sample_pairs``, lines 112-124: ``noise = torch.randn_like(x_start)`` before the call to
    ``q_sample``, which draws x_t's noise), so that one seeded stream gives the official pairs.
    """
    def draw() -> torch.Tensor:
        return torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)

    if noise_next is None:
        noise_next = draw()
    if noise_k is None:
        noise_k = draw()
    x_k = _at(schedule.sqrt_alphas_cumprod, k, x0) * x0 + _at(
        schedule.sqrt_one_minus_alphas_cumprod, k, x0) * noise_k
    beta_next = _at(schedule.betas, k + 1, x0)
    x_next = (1.0 - beta_next).sqrt() * x_k + beta_next.sqrt() * noise_next
    return x_k, x_next


def posterior_sample(
    schedule: DDGANSchedule,
    x0_pred: torch.Tensor,
    x_next: torch.Tensor,
    k: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Sample x_k ~ q(x_k | x_{k+1}, x0_pred) with the given standard-normal ``noise``.

    No noise is added where k = 0, so the last step returns the posterior mean, which equals
    x0_pred there (the k = 0 coefficients are 1 and 0 up to beta_0 = 1e-8).
    """
    mean = _at(schedule.posterior_mean_coef_x0, k, x_next) * x0_pred + _at(
        schedule.posterior_mean_coef_xt, k, x_next) * x_next
    log_var = _at(schedule.posterior_log_variance_clipped, k, x_next)
    nonzero = (k != 0).to(x_next.dtype).reshape(-1, *([1] * (x_next.dim() - 1)))
    return mean + nonzero * torch.exp(0.5 * log_var) * noise


def weighted_learning_weights(num_epochs: int, delta: float = 6.0) -> torch.Tensor:
    """LDDGAN weighted learning (paper Eq. 9 as implemented in ``train_ldgan.py``).

    lambda[e] = 1 - sigmoid(phi[e]) with phi = linspace(-delta, delta, num_epochs + 1): the
    reconstruction weight falls from ~1 to 0.5 at mid-training to ~0 (Trinh and Hamagami 2024:
    the printed Eq. 9 would stop at 0.5; the text and the official code go to ~0).
    """
    phi = torch.linspace(-delta, delta, num_epochs + 1, dtype=torch.float64)
    return 1.0 - torch.sigmoid(phi)


__all__ = [
    "DDGANSchedule",
    "ddgan_schedule",
    "posterior_sample",
    "q_sample_pairs",
    "time_grid",
    "vp_alpha_bar",
    "weighted_learning_weights",
]
