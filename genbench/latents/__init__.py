"""Latent spaces: ``encode(images) -> latents`` and ``decode(latents) -> images``."""

from genbench.latents import pixel  # noqa: F401  (registers the latent spaces)
