"""Registered datasets: the embedded digits, CIFAR-10 from a local root, and image folders.

- ``digits``: the UCI optical-recognition handwritten digits (Alpaydin & Kaynak, 1998; 1,797
  images, 8x8, 17 grey levels) that ship inside scikit-learn, so the embedded default benchmark
  runs with no download.
- ``cifar10``: CIFAR-10 (Krizhevsky, 2009, "Learning Multiple Layers of Features from Tiny
  Images"), the python batches of https://www.cs.toronto.edu/~kriz/cifar.html read by
  ``torchvision.datasets.CIFAR10`` after it checked the official MD5s. The DDGAN (Xiao, Kreis and
  Vahdat, 2022), WaveDiff (Phung, Dao and Tran, 2023) and LDDGAN (Trinh and Hamagami, 2024)
  papers all benchmark on its training set (NVlabs/denoising-diffusion-gan train_ddgan.py: Resize
  32, RandomHorizontalFlip, normalise to [-1, 1]).
- ``image_folder``: every image under a local folder, center-cropped, at the images' own size or
  resized as clean-fid does (PIL bicubic), for CelebA-HQ, LSUN or any user data.

All return an :class:`~genbench.data.base.ImageDataset` of uint8 images.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from genbench._io import json_hash
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
    "CIFAR10_FOLDER",
    "DEFAULT_CIFAR10_ROOT",
    "DIGITS_SPLIT_SEED",
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "ImageFolderDataset",
    "InMemoryImageDataset",
    "all_images",
    "cifar10",
    "digits",
    "folder_image_shape",
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
_CIFAR10_SPLITS: dict[str, tuple[bool, ...]] = {  # split -> torchvision's ``train`` flags, in order
    "train": (True,),
    "test": (False,),
    "all": (True, False),
}


def _cifar10_folder(root: Path) -> Path:
    """``root/cifar-10-batches-py`` when it exists or ``root`` holds no batches, else ``root``."""
    nested = root / CIFAR10_FOLDER
    if nested.is_dir() or not (root / "data_batch_1").is_file():
        return nested
    return root


@lru_cache(maxsize=1)
def _torchvision_cifar10() -> tuple[type, type]:
    """torchvision's CIFAR10, and a subclass reading the batches from ``root`` itself."""
    from torchvision.datasets import CIFAR10

    class FlatCIFAR10(CIFAR10):
        base_folder = ""  # the official files directly under root; the MD5 check is unchanged

    return CIFAR10, FlatCIFAR10


def _cifar10_expected() -> list[tuple[str, str]]:
    """(file, MD5) that torchvision checks: the official release's five batches, test, meta."""
    CIFAR10, _ = _torchvision_cifar10()
    files = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"],
                                                       CIFAR10.meta["md5"]]]
    return [(str(name), str(md5)) for name, md5 in files]


def _cifar10_problem(folder: Path) -> str | None:
    """The first expected file that is missing or fails its MD5, or None when all match."""
    for name, md5 in _cifar10_expected():
        if not (folder / name).is_file():
            return f"missing {name}"
        digest = hashlib.md5(usedforsecurity=False)
        with open(folder / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != md5:
            return f"{name} does not match the official MD5"
    return None


def _cifar10_refusal(base: Path, folder: Path, problem: str) -> UserError:
    return UserError(
        f"CIFAR-10 not found under {base} or corrupted ({problem}): expected "
        f"{folder} to hold the official data_batch_1..5, test_batch and batches.meta "
        f"(MD5-checked); put {CIFAR10_FOLDER} there or pass dataset.download=true on a "
        f"machine with network"
    )


def _download_cifar10(root: Path) -> None:
    """Let torchvision download and MD5-check the official archive into ``root`` (if needed)."""
    CIFAR10, _ = _torchvision_cifar10()
    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise UserError(
            f"CIFAR-10 download into {root} failed ({exc}); put {CIFAR10_FOLDER} there by hand"
        ) from exc


def _read_cifar10(base: Path, folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(uint8 [N, 3, 32, 32], int64 [N], class names) of one torchvision split of ``folder``.

    The batch files are pickles: every one of them (batches.meta included) was checked against
    the official release's MD5s by :func:`cifar10` before this is called, and torchvision checks
    them again before it unpickles any, so a crafted batch is refused before its code could run.
    """
    CIFAR10, FlatCIFAR10 = _torchvision_cifar10()
    nested = folder.name == CIFAR10_FOLDER
    reader, root = (CIFAR10, folder.parent) if nested else (FlatCIFAR10, folder)
    try:
        data = reader(str(root), train=train, download=False)
    except RuntimeError:  # torchvision: "Dataset (metadata file) not found or corrupted"
        raise _cifar10_refusal(base, folder, _cifar10_problem(folder) or "changed while read"
                               ) from None
    images = torch.from_numpy(np.ascontiguousarray(data.data)).permute(0, 3, 1, 2)  # from HWC
    return images.contiguous(), torch.tensor(data.targets, dtype=torch.int64), list(data.classes)


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

    ``split`` is "train", "test" or "all" (train then test). Files are read by torchvision's
    ``CIFAR10``, which refuses them unless all match the official MD5s. Nothing is fetched
    unless ``download`` is true; then torchvision downloads and MD5-checks the official archive.
    :meth:`identity` names the root and a fingerprint of the MD5s checked.
    """
    check_resolution(resolution)
    check_split(split, tuple(_CIFAR10_SPLITS), "cifar10")
    base = Path(os.path.expanduser(str(root))).resolve()
    if download:
        _download_cifar10(base)
    folder = _cifar10_folder(base)
    problem = _cifar10_problem(folder)  # every file, before anything is unpickled
    if problem is not None:
        raise _cifar10_refusal(base, folder, problem)
    parts = [_read_cifar10(base, folder, train) for train in _CIFAR10_SPLITS[split]]
    return InMemoryImageDataset(
        resize_images(torch.cat([p[0] for p in parts]), resolution),
        torch.cat([p[1] for p in parts]),
        name="cifar10",
        split=split,
        num_classes=10,
        source={"root": str(base), "md5": json_hash(_cifar10_expected())},
        class_names=parts[0][2],
    )


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


# Modes of single-channel images deeper than 8 bits (16-bit PNGs open as I;16 or I): PIL's
# convert("L") clips them at 255 instead of scaling, so they are scaled from their bit depth here.
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_8bit(image: Image.Image, path: Path) -> Image.Image:
    """``image`` with 8 bits per channel: 16-bit grey scaled from 0..65535 to 0..255."""
    if image.mode not in _WIDE_GREY_MODES:
        return image
    values = np.asarray(image).astype(np.float64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise UserError(f"image {path} has {image.mode} pixel values outside 0..65535; "
                        f"convert it to an 8- or 16-bit PNG")
    scaled = np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _open_image(path: Path) -> Image.Image:
    """``Image.open`` with PIL's decompression-bomb guard as an error, not a warning: a header
    that claims more than ``Image.MAX_IMAGE_PIXELS`` pixels is refused before it is decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UserError(f"image {path} claims too many pixels ({exc}); "
                            f"remove or downscale that file") from None


def _load_square(path: Path, resolution: int, mode: str) -> np.ndarray:
    """One image: converted to ``mode`` (16-bit grey scaled to 8 bits, not clipped),
    center-cropped to a square, PIL-bicubic resized."""
    try:
        with _open_image(path) as image:
            image = _to_8bit(image, path).convert(mode)
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            if side != resolution:
                image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"cannot read image {path} ({exc}); remove or replace that file") from exc


# PIL modes that image_folder reads as one grey channel (the others are converted to RGB).
GREY_MODES = ("1", "L", "LA", "F", *_WIDE_GREY_MODES)


def folder_image_shape(root: str | Path) -> tuple[int, int, int]:
    """``(number of images, side, channels)`` of a folder as :func:`image_folder` would list it:
    ``side`` is the shorter edge of its first image (sorted order; the center square's side),
    ``channels`` 1 when that image is grey (:data:`GREY_MODES`), else 3. Only the first image's
    header is read. A folder without images is a :class:`~genbench.errors.UserError`."""
    folder = Path(os.path.expanduser(str(root))).resolve()
    files = _image_files(folder)
    if not files:
        raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    try:
        with _open_image(files[0]) as image:
            side, mode = min(image.size), image.mode
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"cannot read image {files[0]} ({exc}); remove or replace that file"
                        ) from exc
    return len(files), int(side), 1 if mode in GREY_MODES else 3


def _square_side(path: Path) -> int:
    """The side of an image's center square (its shorter edge), from its header alone."""
    try:
        with _open_image(path) as image:
            return int(min(image.size))
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"cannot read image {path} ({exc}); remove or replace that file") from exc


def _native_resolution(root: Path, files: list[Path], sides: list[int]) -> int:
    """The side every image's center square shares, or a :class:`UserError` asking for one."""
    distinct = sorted(set(sides))
    if len(distinct) == 1:
        return distinct[0]
    smallest = files[sides.index(distinct[0])].relative_to(root).as_posix()
    largest = files[sides.index(distinct[-1])].relative_to(root).as_posix()
    raise UserError(
        f"images under {root} differ in size (center squares from {distinct[0]} px, {smallest}, "
        f"to {distinct[-1]} px, {largest}); pass dataset.resolution=N to resize them all to NxN"
    )


_RESIZES_SAID: set[tuple[str, str, int]] = set()  # (folder, split, resolution) already said


def _say_resize(root: Path, split: str, resolution: int, sides: list[int]) -> None:
    """One stderr line (once per folder, split and resolution) when images will be resized."""
    resized = [s for s in sides if s != resolution]
    key = (str(root), split, resolution)
    if not resized or key in _RESIZES_SAID:
        return
    _RESIZES_SAID.add(key)
    low, high = min(resized), max(resized)
    span = f"{low} px" if low == high else f"{low} to {high} px"
    print(f"genbench: image_folder: resizing {len(resized)} of {len(sides)} images under {root} "
          f"(center squares of {span}) to {resolution}x{resolution}, PIL bicubic",
          file=sys.stderr, flush=True)


class ImageFolderDataset(ImageDataset):
    """Images under a folder, read lazily; labels from class subfolders, else -1.

    Every image's header is read when the dataset is made (not its pixels): ``resolution`` None
    means the side that all images' center squares share (a :class:`UserError` when they differ),
    and when some images will be resized one line on stderr says so.
    """

    def __init__(self, root: Path, split: str, resolution: int | None, channels: int) -> None:
        self.root = root
        self.name = "image_folder"
        self.split = split
        self.channels = channels
        self.files = _image_files(root)
        if not self.files:
            raise UserError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}; "
                f"point dataset.root at a folder of images"
            )
        sides = [_square_side(path) for path in self.files]
        if resolution is None:
            resolution = _native_resolution(root, self.files, sides)
        _say_resize(root, split, resolution, sides)
        self.resolution = resolution
        self.native = sorted(set(sides))  # the center squares' sides as stored
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
        listing = [[p.relative_to(self.root).as_posix(), p.stat().st_size] for p in self.files]
        return {**super().identity(), "root": str(self.root), "fingerprint": json_hash(listing)}


@register(
    "dataset",
    "image_folder",
    description="every image (png/jpg/jpeg/webp/bmp) under a local folder, center-cropped",
    tags=("local",),
)
def image_folder(
    *, root: str, resolution: int | None = None, split: str = "all", channels: int = 3
) -> ImageFolderDataset:
    """Every image under ``root`` (recursive, sorted), read lazily with PIL.

    Each image is converted to RGB (``channels`` 3) or grey (1), center-cropped to a square and
    resized with PIL bicubic (antialiased when shrinking) to ``resolution``. ``resolution`` None
    (the preset's default) keeps the images' own size: the side all center squares share, nothing
    resized; images of different sizes are then a :class:`UserError` asking for
    ``dataset.resolution=N``. Whenever images are resized, one line on stderr says from which
    sizes to which. ``split`` "all" reads
    ``root``; any other split reads the subfolder ``root/<split>`` (e.g. "train", "val"). Labels
    are the sorted class-subfolder index when every image lies in one of two or more subfolders,
    otherwise -1.
    """
    if resolution is not None:
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
