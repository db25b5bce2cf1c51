"""Latent spaces: ``encode(images) -> latents`` and ``decode(latents) -> images``."""

from genbench.latents import autoencoder, pixel, wavelet  # noqa: F401  (registers the latent spaces)
from genbench.latents.base import (
    FittedLatentSpace,
    LatentSpace,
    reconstruction_fid,
    reconstruction_images,
)

__all__ = ["FittedLatentSpace", "LatentSpace", "reconstruction_fid", "reconstruction_images"]
