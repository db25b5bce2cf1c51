"""Denoiser backbones, all called as ``net(x, t, z=None)``."""

from genbench.backbones import discriminator, ncsnpp, patchgan, uvit  # noqa: F401  (registers)
