"""Tests for genbench.data: the dataset contract, digits, CIFAR-10 (fake root) and image folders."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10

from genbench import registry
from genbench.config import compose, to_plain
from genbench.data import (
    ImageDataset,
    all_images,
    cifar10,
    digits,
    image_folder,
    random_hflip,
    resize_images,
    to_model_range,
    to_uint8,
)
from genbench.data.datasets import CIFAR10_FOLDER
from genbench.errors import UserError
from genbench.harness.build import build_components

# ------------------------------------------------------------------------------------- helpers


def test_model_range_round_trip_is_exact() -> None:
    x = torch.arange(256, dtype=torch.uint8)
    y = to_model_range(x)
    assert y.dtype == torch.float32
    assert y.min() == -1.0 and y.max() == 1.0
    assert torch.equal(to_uint8(y), x)


def test_to_uint8_rounds_and_clamps() -> None:
    x = torch.tensor([-3.0, -1.0, 0.0, 0.999, 1.0, 7.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255, 255]
    # (0.5 + 1) * 127.5 = 191.25 -> 191
    assert to_uint8(torch.tensor([0.5])).item() == 191


def test_to_uint8_rejects_non_finite() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        to_uint8(torch.tensor([0.0, float("nan")]))


def test_to_model_range_rejects_float() -> None:
    with pytest.raises(ValueError):
        to_model_range(torch.zeros(3))


def test_random_hflip_per_sample_and_deterministic() -> None:
    images = torch.arange(64 * 2 * 3 * 4, dtype=torch.float32).reshape(64, 2, 3, 4)
    a = random_hflip(images, torch.Generator().manual_seed(1))
    b = random_hflip(images, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    flipped = torch.tensor([torch.equal(a[i], images[i].flip(-1)) for i in range(64)])
    kept = torch.tensor([torch.equal(a[i], images[i]) for i in range(64)])
    assert torch.all(flipped ^ kept)
    assert 10 < int(flipped.sum()) < 54  # about half, and both kinds present
    c = random_hflip(images, torch.Generator().manual_seed(2))
    assert not torch.equal(a, c)


def test_random_hflip_single_image_and_probability_bounds() -> None:
    image = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(random_hflip(image, gen, p=1.0), image.flip(-1))
    assert torch.equal(random_hflip(image, gen, p=0.0), image)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_random_hflip_cuda_generator() -> None:
    images = torch.arange(32 * 4, dtype=torch.uint8).reshape(32, 1, 2, 2)
    a = random_hflip(images, torch.Generator("cuda").manual_seed(3))
    b = random_hflip(images.cuda(), torch.Generator("cuda").manual_seed(3))
    assert a.device.type == "cpu" and b.device.type == "cuda"
    assert torch.equal(a, b.cpu())
    assert torch.equal(to_uint8(to_model_range(images.cuda())).cpu(), images)


def test_resize_images_identity_and_constant() -> None:
    images = torch.full((2, 1, 8, 8), 200, dtype=torch.uint8)
    assert resize_images(images, 8) is images
    for size in (4, 5, 16):
        out = resize_images(images, size)
        assert out.shape == (2, 1, size, size) and out.dtype == torch.uint8
        assert torch.all(out == 200)  # bilinear of a constant is that constant
    with pytest.raises(UserError):
        resize_images(images, 0)


# -------------------------------------------------------------------------------------- digits


def test_digits_shapes_range_and_counts() -> None:
    train, test, everything = digits(split="train"), digits(split="test"), digits(split="all")
    assert (len(train), len(test), len(everything)) == (1437, 360, 1797)
    image, label = train[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.uint8
    assert isinstance(label, int) and 0 <= label <= 9
    images, labels = all_images(everything)
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.uint8
    assert int(images.min()) == 0 and int(images.max()) == 255
    # values are round(v * 255 / 16) for v in 0..16
    allowed = {round(v * 255 / 16) for v in range(17)} | {128}  # 127.5 rounds half to even
    assert set(images.unique().tolist()) <= allowed
    assert sorted(labels.unique().tolist()) == list(range(10))
    assert train.num_classes == 10 and train.name == "digits" and train.channels == 1
    assert isinstance(train, ImageDataset)


def test_dataset_contract_must_be_implemented() -> None:
    class NoItems(ImageDataset):
        def __len__(self) -> int:
            return 0

    with pytest.raises(TypeError, match="__getitem__"):
        NoItems()


def test_digits_split_is_deterministic_disjoint_and_stratified() -> None:
    a, b = all_images(digits(split="train"))[0], all_images(digits(split="train"))[0]
    assert torch.equal(a, b)
    everything = all_images(digits(split="all"))[0].flatten(1)
    train = all_images(digits(split="train"))[0].flatten(1)
    test_images, test_labels = all_images(digits(split="test"))
    rows = {tuple(r.tolist()): i for i, r in enumerate(everything)}
    train_idx = {rows[tuple(r.tolist())] for r in train}
    test_idx = {rows[tuple(r.tolist())] for r in test_images.flatten(1)}
    assert not train_idx & test_idx
    counts = torch.bincount(test_labels, minlength=10)
    assert int(counts.min()) >= 34 and int(counts.max()) <= 38  # about 20% of ~180 per class


def test_digits_resize_and_channels() -> None:
    native = all_images(digits(split="all"))[0].float()
    big = digits(resolution=16, split="all", channels=3)
    assert big.resolution == 16 and big.channels == 3
    images, _ = all_images(big)
    assert images.shape == (1797, 3, 16, 16)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    small = all_images(digits(resolution=4, split="all"))[0].float()
    assert small.shape == (1797, 1, 4, 4)
    # antialiased bilinear shrink matches PIL's (triangle filter widened by the scale factor)
    for i in range(0, 1797, 199):
        pil = Image.fromarray(native[i, 0].to(torch.uint8).numpy()).resize((4, 4), Image.BILINEAR)
        assert (small[i, 0] - torch.tensor(np.array(pil)).float()).abs().max() <= 1.0
    assert abs(images.float().mean() - native.mean()) < 2.0


def test_digits_identity_is_json_cache_key() -> None:
    ident = digits(split="test", resolution=16).identity()
    assert json.loads(json.dumps(ident)) == ident
    assert ident["name"] == "digits" and ident["split"] == "test"
    assert ident["resolution"] == 16 and ident["channels"] == 1 and ident["size"] == 360
    assert digits(split="train").identity() != digits(split="test").identity()


@pytest.mark.parametrize(
    "kwargs", [{"split": "validation"}, {"channels": 2}, {"resolution": 0}, {"resolution": 3.5}]
)
def test_digits_bad_arguments_are_user_errors(kwargs: dict) -> None:
    with pytest.raises(UserError):
        digits(**kwargs)


def test_registry_creates_digits() -> None:
    assert {"digits", "cifar10", "image_folder"} <= set(registry.names("dataset"))
    ds = registry.create("dataset", "digits", resolution=8, split="test")
    assert len(ds) == 360


# ------------------------------------------------------------------------------------ CIFAR-10


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _write_pickle(path: Path, entry: object) -> None:
    with path.open("wb") as handle:
        pickle.dump(entry, handle)


def make_fake_cifar(root: Path, monkeypatch: pytest.MonkeyPatch,
                    per_batch: int = 4) -> dict[str, np.ndarray]:
    """A tiny cifar-10-batches-py in the documented format (rows of R, G, B planes, str keys as
    the official Python 2 pickles load), with torchvision's expected MD5s set to its files'."""
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        _write_pickle(folder / name, {"batch_label": "fake", "labels": labels, "data": data})
        batches[name] = data
    _write_pickle(folder / "batches.meta", {"label_names": list("abcdefghij")})
    md5 = {p.name: _md5(p) for p in folder.iterdir()}
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]]
                                                for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    return batches


def test_cifar10_reads_fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = make_fake_cifar(tmp_path, monkeypatch)
    train = cifar10(root=str(tmp_path), split="train")
    test = cifar10(root=str(tmp_path), split="test")
    assert (len(train), len(test)) == (20, 4)
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and 0 <= label <= 9
    row = batches["data_batch_1"][0]
    assert torch.equal(image[0].flatten(), torch.from_numpy(row[:1024]))  # red plane first
    assert torch.equal(image[2].flatten(), torch.from_numpy(row[2048:]))
    assert torch.equal(test[3][0].flatten(), torch.from_numpy(batches["test_batch"][3]))
    assert train.class_names == list("abcdefghij") and train.num_classes == 10
    everything = cifar10(root=str(tmp_path), split="all")
    assert len(everything) == 24 and torch.equal(everything[20][0], test[0][0])  # train, test
    ident = train.identity()
    assert ident["root"] == str(tmp_path.resolve())
    assert json.loads(json.dumps(ident)) == ident
    # the batches folder itself is accepted as root too, and so is any folder holding them
    assert len(cifar10(root=str(tmp_path / CIFAR10_FOLDER), split="test")) == 4
    flat = tmp_path / "elsewhere"
    (tmp_path / CIFAR10_FOLDER).rename(flat)
    assert torch.equal(cifar10(root=str(flat), split="test")[3][0], test[3][0])


def test_cifar10_identity_follows_the_checked_md5s(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    make_fake_cifar(tmp_path / "a", monkeypatch, per_batch=2)
    first = cifar10(root=str(tmp_path / "a"), split="test").identity()
    make_fake_cifar(tmp_path / "b", monkeypatch, per_batch=3)  # other files, other MD5s
    second = cifar10(root=str(tmp_path / "b"), split="test").identity()
    assert first["md5"] != second["md5"]
    assert {k: v for k, v in first.items() if k not in ("md5", "root", "size")} == {
        k: v for k, v in second.items() if k not in ("md5", "root", "size")}


def test_cifar10_resize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fake_cifar(tmp_path, monkeypatch)
    ds = cifar10(root=str(tmp_path), split="test", resolution=16)
    assert ds[0][0].shape == (3, 16, 16) and ds.resolution == 16


def test_cifar10_missing_root_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="CIFAR-10 not found under .*dataset.download=true") as info:
        cifar10(root=str(tmp_path / "nowhere"))
    assert "missing data_batch_1" in str(info.value) and "\n" not in str(info.value)


def test_cifar10_corrupt_batch_is_user_error(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    make_fake_cifar(tmp_path, monkeypatch)
    (tmp_path / CIFAR10_FOLDER / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="test_batch does not match the official MD5"):
        cifar10(root=str(tmp_path), split="train")  # every file is checked, whatever the split


class _TouchOnUnpickle:
    """Unpickling this calls ``open(marker, "w")``: what a crafted data_batch_1 could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_cifar10_crafted_batch_is_refused_before_unpickling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = pickle.dumps({"data": _TouchOnUnpickle(tmp_path / "proof"), "labels": []})
    pickle.loads(payload).get("data").close()  # the payload does run code when unpickled
    assert (tmp_path / "proof").is_file()
    make_fake_cifar(tmp_path / "root", monkeypatch)
    marker = tmp_path / "marker"
    crafted = pickle.dumps({"data": _TouchOnUnpickle(marker), "labels": []})
    (tmp_path / "root" / CIFAR10_FOLDER / "data_batch_1").write_bytes(crafted)
    with pytest.raises(UserError, match="data_batch_1 does not match the official MD5"):
        cifar10(root=str(tmp_path / "root"))
    assert not marker.exists()


# -------------------------------------------------------------------------------- image folder


def _png(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_image_folder_flat(tmp_path: Path) -> None:
    _png(tmp_path / "b.png", (20, 10), (255, 0, 0))
    _png(tmp_path / "a.PNG", (12, 12), (0, 255, 0))
    _png(tmp_path / "sub" / "c.jpg", (9, 30), (0, 0, 255))
    (tmp_path / "notes.txt").write_text("not an image")
    ds = image_folder(root=str(tmp_path), resolution=8)
    assert len(ds) == 3 and ds.num_classes is None
    assert [p.name for p in ds.files] == ["a.PNG", "b.png", "c.jpg"]
    image, label = ds[1]
    assert image.shape == (3, 8, 8) and image.dtype == torch.uint8 and label == -1
    assert image[0].min() == 255 and image[1].max() == 0  # solid red survives crop and resize
    grey = image_folder(root=str(tmp_path), resolution=4, channels=1)
    assert grey[0][0].shape == (1, 4, 4)
    ident = ds.identity()
    assert json.loads(json.dumps(ident)) == ident and ident["size"] == 3
    assert ident["root"] == str(tmp_path.resolve())
    images, labels = all_images(ds, limit=2)
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [-1, -1]


def test_image_folder_center_crop(tmp_path: Path) -> None:
    image = Image.new("RGB", (30, 10), (0, 0, 0))
    image.paste((255, 255, 255), (10, 0, 20, 10))  # white center square, black sides
    image.save(tmp_path / "wide.png")
    out = image_folder(root=str(tmp_path), resolution=10)[0][0]
    assert torch.all(out == 255)


def test_image_folder_class_subfolders(tmp_path: Path) -> None:
    _png(tmp_path / "cat" / "1.png", (8, 8), (1, 1, 1))
    _png(tmp_path / "cat" / "2.png", (8, 8), (2, 2, 2))
    _png(tmp_path / "dog" / "1.png", (8, 8), (3, 3, 3))
    ds = image_folder(root=str(tmp_path), resolution=8)
    assert ds.num_classes == 2 and ds.class_names == ["cat", "dog"]
    assert [ds[i][1] for i in range(3)] == [0, 0, 1]
    train = image_folder(root=str(tmp_path), resolution=8, split="dog")
    assert len(train) == 1


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        image_folder(root=str(tmp_path / "missing"), resolution=8)
    with pytest.raises(UserError, match="no images"):
        image_folder(root=str(tmp_path), resolution=8)
    (tmp_path / "broken.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read image"):  # headers are read up front
        image_folder(root=str(tmp_path), resolution=8)
    (tmp_path / "broken.png").unlink()
    with pytest.raises(UserError, match="no subfolder"):
        image_folder(root=str(tmp_path), resolution=8, split="train")


def test_image_folder_native_size_by_default(tmp_path: Path, capsys) -> None:
    """The preset's resolution null keeps the images' own (uniform) size, resizing nothing."""
    for i in range(3):
        _png(tmp_path / f"{i}.png", (32, 32), (10 * i, 0, 0))
    _png(tmp_path / "wide.png", (40, 32), (0, 0, 255))  # a 32 px center square: cropped only
    capsys.readouterr()
    ds = image_folder(root=str(tmp_path))
    assert ds.resolution == 32 and ds.identity()["resolution"] == 32
    assert ds[0][0].shape == (3, 32, 32) and int(ds[1][0][0, 0, 0]) == 10
    assert capsys.readouterr().err == ""  # nothing resized, nothing said
    cfg = to_plain(compose(["dataset=image_folder", f"dataset.root={tmp_path}"]))
    assert cfg["dataset"]["resolution"] is None
    built = build_components(cfg, load_data=False)  # what `genbench profile` builds
    assert built.image_shape == (3, 32, 32) and built.latent_shape == (3, 32, 32)


def test_image_folder_of_mixed_sizes_asks_for_a_resolution(tmp_path: Path) -> None:
    _png(tmp_path / "small.png", (16, 16), (0, 0, 0))
    _png(tmp_path / "sub" / "large.png", (64, 48), (0, 0, 0))
    with pytest.raises(UserError) as err:
        image_folder(root=str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and "dataset.resolution=N" in message
    assert "16 px, small.png" in message and "48 px, sub/large.png" in message
    assert image_folder(root=str(tmp_path), resolution=16)[1][0].shape == (3, 16, 16)


def test_image_folder_says_once_when_it_resizes(tmp_path: Path, capsys) -> None:
    for i in range(3):
        _png(tmp_path / f"{i}.png", (32, 32), (0, 0, 0))
    _png(tmp_path / "big.png", (64, 64), (0, 0, 0))
    capsys.readouterr()
    image_folder(root=str(tmp_path), resolution=64)
    image_folder(root=str(tmp_path), resolution=64)  # the same folder again: said once
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert "resizing 3 of 4 images" in lines[0] and "32 px) to 64x64" in lines[0]
    image_folder(root=str(tmp_path), resolution=32)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "resizing 1 of 4 images" in lines[0]
    assert "64 px) to 32x32" in lines[0]
    image_folder(root=str(tmp_path / ".."), resolution=8, split=tmp_path.name)
    assert "to 8x8" in capsys.readouterr().err
