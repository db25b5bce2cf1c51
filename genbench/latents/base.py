"""The latent-space contract shared by pixel, wavelet and autoencoder spaces.

A latent space maps images in [-1, 1] to the tensors the denoiser works on and back. Its cost
(parameters and MACs of ``decode``) is part of a generator's cost: LDDGAN (Trinh and Hamagami
2024) counts the decoder in Table 2 and its sampling time in Table 3, and measures its
autoencoders by reconstruction FID (Table 1): FID between the reconstructions
``decode(encode(x))`` of held-out images and those images (:func:`reconstruction_images`).

Learned spaces (autoencoders) also follow :class:`FittedLatentSpace`: the harness has them
fitted once per cell before training the denoiser
(:func:`genbench.training.autoencoder.fit_autoencoder`); the fitted artifact is cached by the
hash of everything that changes it and shared by every cell that uses it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from genbench.data.base import to_model_range, to_uint8
from genbench.errors import UserError


@runtime_checkable
class LatentSpace(Protocol):
    """What every latent space provides.

    ``needs_fit``: True for learned spaces (autoencoders), which the harness fits and caches.
    ``latent_shape(image_shape)``: the (C, H, W) a (C, H, W) image becomes; raises
    :class:`UserError` when the image shape does not fit the space (odd size for the wavelet,
    size not divisible by an autoencoder's factor, wrong channel count).
    ``encode``: images in [-1, 1] ``[N, C, H, W]`` -> latents ``[N, *latent_shape]``.
    ``decode``: latents -> images in [-1, 1]; it is what the timed sampling span ends with.
    ``decoder_module()``: the module whose parameters count as the decoder (None: nothing to
    count); the harness measures decoder MACs by running ``decode`` under torch's
    ``FlopCounterMode``.
    ``identity()``: a JSON-safe description that changes whenever the latents would change
    (for learned spaces it names the fitted artifact's hash and the scale factor).
    ``to(device)``: moves its modules (if any) and returns the space.
    """

    name: str
    needs_fit: bool

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]: ...

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...

    def decoder_module(self) -> torch.nn.Module | None: ...

    def identity(self) -> dict[str, Any]: ...

    def to(self, device: str | torch.device) -> LatentSpace: ...


@runtime_checkable
class FittedLatentSpace(LatentSpace, Protocol):
    """A latent space that must be fitted (trained or loaded from the cache) before ``encode``.

    ``fitted``: None until fitted, then a JSON-safe info dict (artifact hash, source
    "trained"/"cache", steps, seconds, scale factor, final losses, the perceptual loss status).
    """

    fitted: dict[str, Any] | None


def check_image_shape(image_shape: tuple[int, ...], space: str) -> tuple[int, int, int]:
    """``image_shape`` as three positive ints (C, H, W), or a UserError naming ``space``."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"latent {space!r} takes image shapes (C, H, W), got {tuple(image_shape)}")
    return shape  # type: ignore[return-value]


@torch.no_grad()
def reconstruction_images(latent: LatentSpace, images: torch.Tensor, batch_size: int = 100,
                          device: str | torch.device | None = None) -> torch.Tensor:
    """``decode(encode(x))`` of uint8 ``images`` as uint8 on the CPU (Table 1's rFID inputs).

    The reconstructions go through the same float -> uint8 conversion as generated samples
    (``genbench.data.to_uint8``), so their FID against ``images`` is measured exactly like a
    generator's. ``device``: where to run (default: the images' device).
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise UserError(f"reconstruction_images takes uint8 [N, C, H, W], got {images.dtype} "
                        f"{tuple(images.shape)}")
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    target = torch.device(device) if device is not None else images.device
    out = []
    for batch in images.split(batch_size):
        x = to_model_range(batch.to(target))
        out.append(to_uint8(latent.decode(latent.encode(x))).cpu())
    if not out:
        return images.new_empty(images.shape)
    return torch.cat(out)


def reconstruction_fid(latent: LatentSpace, images: torch.Tensor, extractor: Any, *,
                       real_features: torch.Tensor | None = None, batch_size: int = 100,
                       device: str | torch.device | None = None) -> dict[str, Any]:
    """Reconstruction FID (LDDGAN Table 1): FID(features of ``decode(encode(x))``, of ``x``).

    ``images``: uint8 held-out images (Table 1 uses the validation set); ``extractor``: a
    ``genbench.metrics.features.FeatureExtractor`` (the one the cell's FID uses);
    ``real_features``: the extractor's features of ``images`` when already cached.
    """
    from genbench.metrics.quality import fid

    recon = reconstruction_images(latent, images, batch_size, device)
    real = real_features if real_features is not None else extractor(images)
    return {"rfid": fid(real, extractor(recon)), "num_images": int(images.shape[0]),
            "extractor": extractor.name, "recipe": dict(extractor.recipe)}
