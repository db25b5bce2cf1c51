"""Pixel space: the identity latent space (DDGAN works on pixels, Xiao et al. 2022)."""

from __future__ import annotations

import torch

from genbench.registry import register


class PixelSpace:
    """Identity encode/decode; no parameters, no decode cost."""

    name = "pixel"
    needs_fit = False

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(image_shape)  # type: ignore[return-value]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def decoder_module(self) -> torch.nn.Module | None:
        return None

    def identity(self) -> dict[str, str]:
        return {"name": self.name}

    def to(self, device: str | torch.device) -> PixelSpace:
        return self


@register("latent", "pixel", paper="Xiao et al. 2022 (DDGAN)")
def pixel() -> PixelSpace:
    """Pixel space (identity)."""
    return PixelSpace()
