"""Datasets: the embedded digits, CIFAR-10 from a local root, and image folders."""

from genbench.data import datasets  # noqa: F401  (registers the datasets)
from genbench.data.base import (
    ImageDataset,
    InMemoryImageDataset,
    all_images,
    random_hflip,
    resize_images,
    to_model_range,
    to_uint8,
)
from genbench.data.datasets import ImageFolderDataset, cifar10, digits, image_folder

__all__ = [
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
