"""Samplers: pure functions of (denoiser, initial noise, schedule, generator, options)."""

from genbench.samplers import ddgan, ddim, ddpm  # noqa: F401  (registers the samplers)
