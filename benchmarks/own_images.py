"""Benchmark your own images on a CPU: an image folder of 32x32 crops of scikit-learn's photos.

Writes every non-overlapping ``--size`` x ``--size`` crop of the two photographs scikit-learn
ships (``sklearn.datasets.load_sample_images()``: ``china.jpg`` and ``flower.jpg``, 427x640 RGB;
no download) as PNGs under ``OUT/china/`` and ``OUT/flower/`` (class subfolders: labels for the
feature classifier), then prints the ``genbench run`` commands of the README's recipe "Benchmark
your own images" for that folder.

    python benchmarks/own_images.py /tmp/crops            # 2 x 260 crops of 32x32
    python benchmarks/own_images.py /tmp/crops --size 16  # 2 x 1,040 crops of 16x16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def write_crops(out: Path, size: int = 32, stride: int | None = None) -> int:
    """Every ``size`` x ``size`` crop (step ``stride``, default ``size``) of each sample photo,
    as ``out/<photo>/<row>_<col>.png``; returns how many were written."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    step = stride or size
    count = 0
    for filename, photo in zip(bunch.filenames, bunch.images):
        folder = out / Path(filename).stem
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.asarray(photo, dtype=np.uint8)
        height, width = pixels.shape[:2]
        for top in range(0, height - size + 1, step):
            for left in range(0, width - size + 1, step):
                crop = pixels[top:top + size, left:left + size]
                Image.fromarray(crop).save(folder / f"{top:04d}_{left:04d}.png")
                count += 1
    return count


def recipe(root: Path) -> list[str]:
    """The README recipe's commands for an image folder ``root`` of 32x32 RGB crops: DDGAN at 16
    px (the crops resized: minutes on one CPU thread), then at their own 32 px (4x the cost)."""
    return [
        f"genbench run dataset=image_folder dataset.root={root} dataset.resolution=16 "
        f"backbone=ncsnpp_rgb_cpu sampler.steps=2 train=rgb_cpu eval=rgb_cpu experiment=own_images",
        f"genbench run dataset=image_folder dataset.root={root} "
        f"backbone=ncsnpp_rgb_cpu sampler.steps=2 train=rgb_cpu eval=rgb_cpu experiment=own_images",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the crops into")
    parser.add_argument("--size", type=int, default=32, help="side of each crop (px)")
    parser.add_argument("--stride", type=int, default=None, help="step between crops (px)")
    args = parser.parse_args(argv)
    count = write_crops(args.out, args.size, args.stride)
    print(f"wrote {count} crops of {args.size}x{args.size} under {args.out}", file=sys.stderr)
    for line in recipe(args.out.resolve()):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
