"""The latent-space contract shared by pixel, wavelet and autoencoder spaces.

A latent space maps images in [-1, 1] to the tensors the denoiser works on and back. Its cost
(parameters and MACs of ``decode``) is part of a generator's cost: LDDGAN's paper counts the
decoder in Table 2 and its sampling time in Table 3.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class LatentSpace(Protocol):
    """What every latent space provides.

    ``needs_fit``: True for learned spaces (autoencoders), which the harness fits and caches.
    ``decoder_module()``: the module whose parameters and MACs count as the decoder (None: free).
    """

    name: str
    needs_fit: bool

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]: ...

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...

    def decoder_module(self) -> torch.nn.Module | None: ...
