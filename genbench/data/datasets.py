"""Registered datasets: the embedded digits, CIFAR-10 from a local root, and image folders.

- ``digits``: the UCI optical-recognition handwritten digits (Alpaydin & Kaynak, 1998; 1,797
  images, 8x8, 17 grey levels) that ship inside scikit-learn, so the embedded default benchmark
  runs with no download.
- ``cifar10``: CIFAR-10 (Krizhevsky, 2009, "Learning Multiple Layers of Features from Tiny
  Images"), read from the python-pickle batches in the format documented at
  https://www.cs.toronto.edu/~kriz/cifar.html. The DDGAN, WaveDiff and LDDGAN papers all
  benchmark on its training set (REFERENCE.md section 3 "Data").
- ``image_folder``: every image under a local folder, center-cropped and resized as clean-fid
  does (PIL bicubic), for CelebA-HQ, LSUN or any user data.

All return an :class:`~genbench.data.base.ImageDataset` of uint8 images.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from genbench.data.base import (
    ImageDataset,
    InMemoryImageDataset,
    all_images,
    check_channels,
    check_resolution,
    check_split,
    random_hflip,
    resize_images,
    to_model_range,
    to_uint8,
)
from genbench.errors import UserError
from genbench.registry import register

__all__ = [
    "CIFAR10_FILES",
    "DEFAULT_CIFAR10_ROOT",
    "DIGITS_SPLIT_SEED",
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "ImageFolderDataset",
    "InMemoryImageDataset",
    "all_images",
    "cifar10",
    "digits",
    "image_folder",
    "random_hflip",
    "resize_images",
    "to_model_range",
    "to_uint8",
]

# ----------------------------------------------------------------------------------------- digits

DIGITS_SPLIT_SEED = 0  # fixed seed of the stratified train/test split
DIGITS_TEST_FRACTION = 0.2
_DIGITS_LEVELS = 16  # load_digits pixels are counts 0..16 of an 4x4 block of a 32x32 bitmap


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [1797, 8, 8] scaled to 0..255, int64 labels), read once from scikit-learn."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * 255.0 / _DIGITS_LEVELS).clip(0, 255).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


@lru_cache(maxsize=4)
def _digits_split_indices(split: str) -> np.ndarray:
    """Sorted indices of ``split``: a stratified 80/20 split with a fixed seed, or everything."""
    _, labels = _digits_arrays()
    everything = np.arange(len(labels))
    if split == "all":
        return everything
    from sklearn.model_selection import train_test_split

    # An int seed means numpy's frozen legacy RandomState stream: stable across versions.
    train, test = train_test_split(
        everything,
        test_size=DIGITS_TEST_FRACTION,
        stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    return np.sort(train if split == "train" else test)


@register(
    "dataset",
    "digits",
    paper="Alpaydin & Kaynak 1998, UCI optical recognition of handwritten digits (scikit-learn)",
    description="1,797 handwritten 8x8 digits shipped with scikit-learn; no download",
    tags=("embedded", "labelled"),
)
def digits(*, resolution: int = 8, split: str = "train", channels: int = 1) -> InMemoryImageDataset:
    """The scikit-learn handwritten digits as uint8 images, 10 classes.

    Pixels (0..16) are scaled to 0..255 by ``round(v * 255 / 16)``; resolution 8 is native, other
    resolutions are bilinear (antialiased when shrinking). ``split`` is "train" (1,437 images),
    "test" (360; stratified, seed ``DIGITS_SPLIT_SEED``) or "all" (1,797). ``channels`` 3 repeats
    the grey channel.
    """
    check_resolution(resolution)
    check_channels(channels)
    check_split(split, ("train", "test", "all"), "digits")
    images, labels = _digits_arrays()
    index = _digits_split_indices(split)
    tensor = torch.from_numpy(images[index]).unsqueeze(1)  # [N, 1, 8, 8]
    tensor = resize_images(tensor, resolution).repeat(1, channels, 1, 1)
    return InMemoryImageDataset(
        tensor,
        torch.from_numpy(labels[index]),
        name="digits",
        split=split,
        num_classes=10,
        source={"source": "sklearn.datasets.load_digits", "split_seed": DIGITS_SPLIT_SEED},
        class_names=[str(d) for d in range(10)],
    )


# ---------------------------------------------------------------------------------------- CIFAR-10

DEFAULT_CIFAR10_ROOT = "~/.cache/genbench/cifar10"
CIFAR10_FOLDER = "cifar-10-batches-py"
# File -> MD5 of the official release (as listed by torchvision.datasets.CIFAR10).
CIFAR10_FILES: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
_CIFAR10_SPLITS: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
    "all": tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
}


def _cifar10_folder(root: Path) -> Path:
    """``root/cifar-10-batches-py``, or ``root`` itself when it already holds the batches."""
    if (root / "data_batch_1").is_file() or (root / "test_batch").is_file():
        return root
    return root / CIFAR10_FOLDER


def _download_cifar10(root: Path) -> None:
    """Let torchvision download and verify the official archive into ``root``."""
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as exc:
        raise UserError(
            f"downloading CIFAR-10 needs torchvision ({exc}); install torchvision or put "
            f"{CIFAR10_FOLDER} under {root} yourself"
        ) from exc
    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise UserError(
            f"CIFAR-10 download into {root} failed ({exc}); put {CIFAR10_FOLDER} there by hand"
        ) from exc


def _read_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with str keys (the release has str keys, re-pickles bytes keys)."""
    try:
        with path.open("rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
    except Exception as exc:
        raise UserError(
            f"corrupt CIFAR-10 file {path} ({type(exc).__name__}); delete it and put the "
            f"official {CIFAR10_FOLDER} there"
        ) from exc
    if not isinstance(entry, dict):
        raise UserError(
            f"corrupt CIFAR-10 file {path}: not a dict; replace it with the official one"
        )
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, 3, 32, 32], int64 [N]) from one batch: rows of 3,072 bytes, R then G then B."""
    entry = _read_pickle(path)
    data = np.asarray(entry.get("data"))
    labels = np.asarray(entry.get("labels", []), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(
            f"corrupt CIFAR-10 file {path}: 'data' is {data.dtype} {data.shape}, expected uint8 "
            f"[N, 3072]; replace it with the official file"
        )
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise UserError(
            f"corrupt CIFAR-10 file {path}: labels do not match the images or are not 0..9; "
            f"replace it with the official file"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Cifar10Dataset(InMemoryImageDataset):
    """CIFAR-10 in memory; :meth:`identity` adds the root and whether the files are official."""

    def __init__(self, *args: Any, files: list[Path], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.files = files
        self._checksums: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        if self._checksums is None:  # hashing ~180 MB once, only when a cache key is needed
            md5s = {path.name: _md5(path) for path in self.files}
            self._checksums = {
                "verified": all(CIFAR10_FILES.get(n) == h for n, h in md5s.items()),
                "fingerprint": hashlib.sha256(
                    "".join(f"{n}:{h};" for n, h in sorted(md5s.items())).encode()
                ).hexdigest()[:16],
            }
        return {**super().identity(), **self._checksums}


@register(
    "dataset",
    "cifar10",
    paper="Krizhevsky 2009, Learning Multiple Layers of Features from Tiny Images",
    description="CIFAR-10 (50,000 train / 10,000 test, 32x32 RGB) from a local root",
    tags=("labelled", "local"),
)
def cifar10(
    *,
    root: str = DEFAULT_CIFAR10_ROOT,
    split: str = "train",
    resolution: int = 32,
    download: bool = False,
) -> InMemoryImageDataset:
    """CIFAR-10 read from ``root/cifar-10-batches-py`` (or ``root`` holding the batches).

    ``split`` is "train", "test" or "all". Nothing is fetched unless ``download`` is true; then
    torchvision downloads and MD5-checks the official archive. Files are read in the documented
    pickle format; :meth:`identity` records whether their MD5s match the official release.
    """
    check_resolution(resolution)
    check_split(split, tuple(_CIFAR10_SPLITS), "cifar10")
    base = Path(os.path.expanduser(str(root))).resolve()
    folder = _cifar10_folder(base)
    missing = [n for n in _CIFAR10_SPLITS[split] if not (folder / n).is_file()]
    if missing and download:
        _download_cifar10(base)
        folder = _cifar10_folder(base)
        missing = [n for n in _CIFAR10_SPLITS[split] if not (folder / n).is_file()]
    if missing:
        raise UserError(
            f"CIFAR-10 not found under {base} (missing {missing[0]}): put {CIFAR10_FOLDER} there "
            f"or pass dataset.download=true on a machine with network"
        )
    files = [folder / n for n in _CIFAR10_SPLITS[split]]
    batches = [_read_cifar_batch(path) for path in files]
    images = torch.from_numpy(np.concatenate([b[0] for b in batches]))
    labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    class_names = _cifar10_class_names(folder / "batches.meta")
    return _Cifar10Dataset(
        resize_images(images, resolution),
        labels,
        name="cifar10",
        split=split,
        num_classes=10,
        source={"root": str(base)},
        class_names=class_names,
        files=files,
    )


def _cifar10_class_names(meta: Path) -> list[str] | None:
    """The class names in ``batches.meta``, or None when that file is absent."""
    if not meta.is_file():
        return None
    names = _read_pickle(meta).get("label_names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names else None


# ------------------------------------------------------------------------------------ image folder

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden entries skipped), in sorted order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if not filename.startswith(".") and filename.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath) / filename)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _class_labels(folder: Path, files: list[Path]) -> tuple[list[int], list[str] | None]:
    """Class-subfolder labels when every image lies in one of two or more subfolders."""
    tops = [p.relative_to(folder).parts for p in files]
    if any(len(parts) == 1 for parts in tops):
        return [-1] * len(files), None
    classes = sorted({parts[0] for parts in tops})
    if len(classes) < 2:
        return [-1] * len(files), None
    index = {name: i for i, name in enumerate(classes)}
    return [index[parts[0]] for parts in tops], classes


def _load_square(path: Path, resolution: int, mode: str) -> np.ndarray:
    """One image: converted to ``mode``, center-cropped to a square, PIL-bicubic resized."""
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            if side != resolution:
                image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"cannot read image {path} ({exc}); remove or replace that file") from exc


class ImageFolderDataset(ImageDataset):
    """Images under a folder, read lazily; labels from class subfolders, else -1."""

    def __init__(self, root: Path, split: str, resolution: int, channels: int) -> None:
        self.root = root
        self.name = "image_folder"
        self.split = split
        self.resolution = resolution
        self.channels = channels
        self.files = _image_files(root)
        if not self.files:
            raise UserError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}; "
                f"point dataset.root at a folder of images"
            )
        self.labels, self.class_names = _class_labels(root, self.files)
        self.num_classes = len(self.class_names) if self.class_names else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        mode = "RGB" if self.channels == 3 else "L"
        array = _load_square(self.files[index], self.resolution, mode)
        tensor = torch.from_numpy(array.copy())
        tensor = tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor.unsqueeze(0)
        return tensor.contiguous(), self.labels[index]

    def identity(self) -> dict[str, Any]:
        """Adds the root and a fingerprint of the file list (relative paths and byte sizes)."""
        listing = "".join(
            f"{p.relative_to(self.root).as_posix()}:{p.stat().st_size};" for p in self.files
        )
        fingerprint = hashlib.sha256(listing.encode()).hexdigest()[:16]
        return {**super().identity(), "root": str(self.root), "fingerprint": fingerprint}


@register(
    "dataset",
    "image_folder",
    description="every image (png/jpg/jpeg/webp/bmp) under a local folder, center-cropped",
    tags=("local",),
)
def image_folder(
    *, root: str, resolution: int, split: str = "all", channels: int = 3
) -> ImageFolderDataset:
    """Every image under ``root`` (recursive, sorted), read lazily with PIL.

    Each image is converted to RGB (``channels`` 3) or grey (1), center-cropped to a square and
    resized with PIL bicubic (antialiased when shrinking) to ``resolution``. ``split`` "all" reads
    ``root``; any other split reads the subfolder ``root/<split>`` (e.g. "train", "val"). Labels
    are the sorted class-subfolder index when every image lies in one of two or more subfolders,
    otherwise -1.
    """
    check_resolution(resolution)
    check_channels(channels)
    base = Path(os.path.expanduser(str(root))).resolve()
    if not base.is_dir():
        raise UserError(f"image folder {base} does not exist; pass dataset.root=<folder of images>")
    folder = base if split == "all" else base / split
    if not folder.is_dir():
        raise UserError(
            f"image folder {base} has no subfolder {split!r} for split={split}; "
            f"pass dataset.split=all or create {folder}"
        )
    return ImageFolderDataset(folder, split, resolution, channels)
