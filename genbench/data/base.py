"""The dataset contract shared by every genbench dataset, and the pixel conversions around it.

A dataset yields ``(uint8 image [C, H, W], int label or -1)``. Images stay uint8 (0..255) until the
model needs them: :func:`to_model_range` maps them to [-1, 1] as DDGAN's CIFAR-10 pipeline does
(NVlabs/denoising-diffusion-gan train_ddgan.py: resize -> random horizontal flip -> normalise to
[-1, 1]), and :func:`to_uint8` maps generated samples back, in memory and never through JPEG
(FID changes when samples are saved as JPEG: mseitzer/pytorch-fid issue #63).
"""

from __future__ import annotations

import abc
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from genbench.errors import UserError

__all__ = [
    "ImageDataset",
    "InMemoryImageDataset",
    "all_images",
    "random_hflip",
    "resize_images",
    "to_model_range",
    "to_uint8",
]

_RESIZE_CHUNK = 4096  # images resized per chunk, to bound the float32 copy


class ImageDataset(Dataset, abc.ABC):
    """The contract: ``dataset[i] -> (uint8 tensor [C, H, W], int label or -1)``.

    Attributes every dataset sets: ``name`` (registry name), ``split``, ``channels``,
    ``resolution`` (images are square, ``resolution`` x ``resolution``) and ``num_classes``
    (None when unlabelled). :meth:`identity` is a JSON-safe description used as a cache key for
    reference statistics, so it names everything that changes the images.
    """

    name: str
    split: str
    channels: int
    resolution: int
    num_classes: int | None

    @abc.abstractmethod
    def __len__(self) -> int:
        """How many images the split holds."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Image ``index`` as uint8 [C, H, W] and its label (-1 when unlabelled)."""

    def identity(self) -> dict[str, Any]:
        """Name, split, resolution, channels and size; subclasses add their source."""
        return {
            "name": self.name,
            "split": self.split,
            "resolution": self.resolution,
            "channels": self.channels,
            "size": len(self),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, size={len(self)}, "
            f"shape=({self.channels}, {self.resolution}, {self.resolution}))"
        )


class InMemoryImageDataset(ImageDataset):
    """A dataset held as one uint8 tensor ``images`` [N, C, H, W] and int64 ``labels`` [N]."""

    def __init__(
        self,
        images: torch.Tensor,  # uint8 [N, C, H, W], H == W
        labels: torch.Tensor,  # int64 [N], -1 where unlabelled
        *,
        name: str,
        split: str,
        num_classes: int | None,
        source: dict[str, Any] | None = None,  # extra identity fields (origin, root, seed)
        class_names: list[str] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != images.shape[-2]:
            raise ValueError(
                f"images must be uint8 [N, C, S, S], got {images.dtype} {images.shape}"
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels {tuple(labels.shape)} do not match {images.shape[0]} images")
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64)
        self.name = name
        self.split = split
        self.channels = int(images.shape[1])
        self.resolution = int(images.shape[-1])
        self.num_classes = num_classes
        self.class_names = class_names
        self._source = dict(source or {})

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return self.images[index], int(self.labels[index])

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), **self._source}


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 in [-1, 1]: ``x / 127.5 - 1``."""
    if images.dtype != torch.uint8:
        raise ValueError(f"to_model_range expects uint8 images, got {images.dtype}")
    return images.to(torch.float32) / 127.5 - 1.0


def to_uint8(samples: torch.Tensor) -> torch.Tensor:
    """Float in [-1, 1] -> uint8: ``((x + 1) * 127.5).round().clamp(0, 255)``.

    Values outside [-1, 1] are clamped. Non-finite values (a diverged model) raise ValueError
    rather than being turned silently into black or white pixels that a metric would score.
    """
    if not torch.is_floating_point(samples):
        raise ValueError(f"to_uint8 expects floating-point samples, got {samples.dtype}")
    bad = int((~torch.isfinite(samples)).sum())
    if bad:
        raise ValueError(f"samples contain {bad} non-finite values (NaN/inf); the model diverged")
    return ((samples.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def resize_images(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize uint8 square images [N, C, S, S] to ``resolution``; identity when S == resolution.

    Bilinear, with antialiasing when shrinking (so that downsampling averages rather than
    aliases) and plain bilinear when enlarging; the result is rounded back to uint8.
    """
    check_resolution(resolution)
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    antialias = resolution < images.shape[-1]
    chunks = []
    for chunk in images.split(_RESIZE_CHUNK):
        resized = F.interpolate(
            chunk.to(torch.float32),
            size=(resolution, resolution),
            mode="bilinear",
            align_corners=False,
            antialias=antialias,
        )
        chunks.append(resized.round().clamp(0, 255).to(torch.uint8))
    if not chunks:
        return images.new_empty((0, images.shape[1], resolution, resolution))
    return torch.cat(chunks)


def check_resolution(resolution: int) -> int:
    """A positive integer resolution, or a UserError naming the fix."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise UserError(
            f"dataset resolution must be a positive integer, got {resolution!r}; "
            f"pass e.g. dataset.resolution=32"
        )
    return resolution


def check_channels(channels: int, allowed: tuple[int, ...] = (1, 3)) -> int:
    """``channels`` must be one of ``allowed`` (1 = grayscale, 3 = RGB)."""
    if isinstance(channels, bool) or channels not in allowed:
        raise UserError(
            f"dataset channels must be one of {', '.join(map(str, allowed))}, got {channels!r}; "
            f"pass dataset.channels=3 for RGB or 1 for grayscale"
        )
    return int(channels)


def check_split(split: str, allowed: tuple[str, ...], dataset: str) -> str:
    """``split`` must be one of ``allowed``."""
    if split not in allowed:
        raise UserError(
            f"{dataset} has no split {split!r}; pass dataset.split= one of {', '.join(allowed)}"
        )
    return split


def all_images(
    dataset: ImageDataset, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` images (all when None) as (uint8 [N, C, H, W], int64 labels [N]).

    In-memory datasets are sliced directly; other datasets are read item by item. The returned
    tensors are copies, safe to modify.
    """
    count = len(dataset) if limit is None else min(int(limit), len(dataset))
    if count < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if isinstance(dataset, InMemoryImageDataset):
        return dataset.images[:count].clone(), dataset.labels[:count].clone()
    shape = (count, dataset.channels, dataset.resolution, dataset.resolution)
    images = torch.empty(shape, dtype=torch.uint8)
    labels = torch.empty(count, dtype=torch.int64)
    for i in range(count):
        image, label = dataset[i]
        images[i] = image
        labels[i] = label
    return images, labels


def random_hflip(images: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Flip each image left-right with probability ``p``, drawing from ``generator``.

    ``images`` is [N, C, H, W] (one draw per sample) or [C, H, W] (one draw). The draw is made on
    the generator's device, so the same seed gives the same flips whatever the batch's device.
    DDGAN's CIFAR-10 training applies RandomHorizontalFlip (NVlabs/denoising-diffusion-gan
    train_ddgan.py).
    """
    single = images.ndim == 3
    batch = images.unsqueeze(0) if single else images
    if batch.ndim != 4:
        raise ValueError(f"random_hflip expects [N, C, H, W] or [C, H, W], got {images.shape}")
    draws = torch.rand(batch.shape[0], generator=generator, device=generator.device)
    flip = (draws < p).to(batch.device).view(-1, 1, 1, 1)
    out = torch.where(flip, batch.flip(-1), batch)
    return out[0] if single else out
