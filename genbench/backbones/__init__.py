"""Denoiser backbones, all called as ``net(x, t, z=None)``."""

from genbench.backbones import (  # noqa: F401  (registers)
    discriminator,
    ncsnpp,
    patchgan,
    uvit,
    wavelet_ncsnpp,
)
