"""Image files of an image folder dataset that are not plain 8-bit: 16-bit PNGs are scaled from
their real range (not clipped at 255), and a header claiming a huge image is refused before it
is decoded (PIL's decompression-bomb guard, ``PIL.Image.MAX_IMAGE_PIXELS``)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from PIL import Image

from genbench import cli
from genbench.data.datasets import image_folder
from genbench.errors import UserError


def _gradient16(size: int = 64) -> np.ndarray:
    """A horizontal 0..65535 ramp, size x size, uint16."""
    row = np.rint(np.linspace(0, 65535, size)).astype(np.uint16)
    return np.tile(row, (size, 1))


def test_16_bit_png_is_scaled_not_saturated(tmp_path: Path) -> None:
    ramp = _gradient16()
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    with Image.open(tmp_path / "ramp.png") as image:
        assert image.mode in ("I;16", "I")  # really read back as 16 bits
    expected = np.rint(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    for channels in (1, 3):
        got = image_folder(root=str(tmp_path), resolution=64, channels=channels)[0][0].numpy()
        assert got.shape == (channels, 64, 64)
        for plane in got:
            np.testing.assert_array_equal(plane, expected)
        assert (got == 255).mean() < 0.05  # PIL's convert("L") made 97% of such a ramp white
        assert got[0, 0, 0] == 0 and got[0, 0, -1] == 255
        assert np.all(np.diff(got[0, 0].astype(int)) >= 0)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose IHDR claims ``width`` x ``height`` 8-bit grey pixels (data: one empty row)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def test_huge_image_header_is_refused(tmp_path: Path) -> None:
    _png_header_only(tmp_path / "bomb.png", 40000, 40000)
    with pytest.raises(UserError, match="bomb.png.*too many pixels"):
        image_folder(root=str(tmp_path), resolution=8, channels=1)[0]


def test_huge_image_header_through_the_command_line(tmp_path: Path, monkeypatch, capsys) -> None:
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):  # class folders: labels for the feature classifier
        (images / label).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(
                images / label / f"{i}.png")
    _png_header_only(images / "b" / "zz_bomb.png", 40000, 40000)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["run", *TINY, "dataset=image_folder", f"dataset.root={images}",
                     "dataset.resolution=8", "dataset.channels=1", "train.batch_size=8"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("genbench: error")]
    assert len(errors) == 1 and "zz_bomb.png" in errors[0] and "too many pixels" in errors[0]
    assert not list(tmp_path.glob("results/*/*/result.json"))


def _own_images_script():
    """benchmarks/own_images.py (the README recipe "Benchmark your own images") as a module."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "own_images.py"
    spec = importlib.util.spec_from_file_location("own_images", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_images_recipe_runs_at_a_tiny_budget(tmp_path: Path, monkeypatch, capsys) -> None:
    """The recipe's first command, with train=tiny eval=tiny in place of its CPU presets, on the
    crops its script writes: 32x32 RGB crops, resized to 16x16 (and said so), one record; the
    second command is the same at the crops' own size."""
    script = _own_images_script()
    crops = tmp_path / "crops"
    assert script.main([str(crops)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(p.name for p in crops.iterdir()) == ["china", "flower"]
    assert len(list(crops.glob("*/*.png"))) == 2 * 13 * 20  # 427x640 -> 13 x 20 crops of 32
    words = out[0].split()
    assert words[:2] == ["genbench", "run"] and f"dataset.root={crops.resolve()}" in words
    tiny = {"train": "train=tiny", "eval": "eval=tiny"}
    args = [tiny.get(w.split("=")[0], w) for w in words[2:]]
    assert args != words[2:]  # the recipe names its train and eval presets
    assert out[1].split() == [w for w in words if w != "dataset.resolution=16"]
    monkeypatch.chdir(tmp_path)
    code = cli.main(["run", *args, "progress=false", "report=false"])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    said = [line for line in err.splitlines() if "resizing" in line]
    assert len(said) == 1 and "resizing 520 of 520 images" in said[0] and "to 16x16" in said[0]
    records = list(tmp_path.glob("results/own_images/*/result.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["status"] == "ok"
    assert record["config"]["dataset"]["resolution"] == 16
    assert record["shapes"]["image"] == [3, 16, 16]
    assert np.isfinite(record["metrics"]["fid"])
