"""The DDGAN sampler: Algorithm 1 of Xiao et al., ICLR 2022 (also LDDGAN's Algorithm 1).

x_T ~ N(0, I); for k = T-1 .. 0: z ~ N(0, I) fresh, x0' = G(x_{k+1}, k, z),
x_k ~ q(x_k | x_{k+1}, x0') (the posterior of the forward process, Ho et al. 2020, Eq. 6-7;
Xiao et al. 2022, Sec. 3.3, parameterise p(x_k | x_{k+1}) by it). NFE = T. The raw integer index
k is fed to the generator, as in the official ``sample_from_model`` (NVlabs/denoising-diffusion-gan
``test_ddgan.py``).
"""

from __future__ import annotations

import torch

from genbench.diffusion.ddgan import DDGANSchedule, ddgan_schedule, posterior_sample
from genbench.errors import UserError
from genbench.registry import register
from genbench.samplers.base import Callback, Sampler, bind, report_step
from genbench.samplers.noise import PerSampleRNG


@torch.no_grad()
def sample_ddgan(
    denoiser: torch.nn.Module,
    x_T: torch.Tensor,
    schedule: DDGANSchedule,
    rng: PerSampleRNG,
    *,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Run the T-step DDGAN reverse process from ``x_T`` with an x0 denoiser; returns x_0."""
    x = x_T
    batch = x.shape[0]
    for step, k in enumerate(reversed(range(schedule.num_steps))):
        t = torch.full((batch,), k, dtype=torch.long, device=x.device)
        z = rng.randn(denoiser.z_dim).to(x.device) if denoiser.z_dim > 0 else None  # z ~ N(0, I)
        x0_pred = denoiser(x, t, z)  # x0' = G(x_{k+1}, k, z)
        report_step(callback, step, k, x, x0_pred)
        noise = rng.randn(*x.shape[1:]).to(x.device)
        x = posterior_sample(schedule, x0_pred, x, t, noise)  # x_k ~ q(x_k | x_{k+1}, x0')
    return x


def ddgan_sampler(
    steps: int = 4,
    beta_min: float = 0.1,
    beta_max: float = 20.0,
    schedule: str = "vp",
    name: str = "ddgan",
    objective_options: dict | None = None,
) -> Sampler:
    """Bind the DDGAN schedule; the denoiser's ``z_dim`` says how wide z is."""
    sched = ddgan_schedule(steps, beta_min=beta_min, beta_max=beta_max, kind=schedule)
    key = {"steps": steps, "beta_min": beta_min, "beta_max": beta_max, "schedule": schedule}
    extra = dict(objective_options or {})
    return Sampler(name=name, objective="adversarial", steps=steps,
                   sample=bind(sample_ddgan, sched), schedule=sched,
                   training_key={**key, **extra}, options={**key, **extra},
                   objective_options=extra)


@register("sampler", "ddgan", paper="Xiao et al., ICLR 2022, Algorithm 1", objective="adversarial")
def ddgan(steps: int = 4, beta_min: float = 0.1, beta_max: float = 20.0,
          schedule: str = "vp") -> Sampler:
    """Denoising Diffusion GAN sampler (few-step posterior sampling, NFE = T)."""
    return ddgan_sampler(steps, beta_min, beta_max, schedule)


@register("sampler", "lddgan", objective="adversarial",
          paper="Trinh and Hamagami 2024 (LDDGAN), Algorithm 1 and Eq. 9 (weighted learning)")
def lddgan(steps: int = 4, beta_min: float = 0.1, beta_max: float = 20.0, schedule: str = "vp",
           rec_loss: str = "weighted", wl_delta: float = 6.0) -> Sampler:
    """Latent DDGAN: DDGAN's sampler in a latent space, trained with weighted learning.

    Sampling is DDGAN's Algorithm 1 on latents, then the latent space's decode (inside the
    timed span). Training adds an L1 term |x0' - x0| on latents weighted by
    1 - sigmoid(phi), phi = linspace(-wl_delta, wl_delta) over epochs (the official
    ``train_ldgan.py`` schedule; the paper's Eq. 9 as printed would stop at 0.5). ``rec_loss``
    selects the rows of the paper's Table 6: ``none`` (adversarial only), ``l1`` (fixed weight
    1, as WDDGAN) or ``weighted`` (weighted learning).
    """
    if rec_loss not in ("none", "l1", "weighted"):
        raise UserError(f"sampler.rec_loss={rec_loss!r}; use none, l1 or weighted")
    options = {"rec_loss": rec_loss, "wl_delta": float(wl_delta)}
    return ddgan_sampler(steps, beta_min, beta_max, schedule, name="lddgan",
                         objective_options=options)
