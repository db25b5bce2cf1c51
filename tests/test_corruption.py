"""Corrupted cache files never give wrong numbers silently (issue 10, items 8 and 11).

Each kind of cached file records its SHA-256 when written (model ``meta.json``, the feature
classifier's ``.json``, a checkpoint's ``state.json``, the reference statistics' own contents
hash) and is checked when read. One flipped byte, a truncated file or a garbled ``meta.json``
makes genbench train, refit or recompute it, with one line naming the file, and the rerun ends
with the same metrics as the clean run; nothing ends in a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import TINY, genbench_command
from untrusted_files import copy_tree, flip_byte

from genbench import registry
from genbench.errors import UserError
from genbench.metrics.quality import ReferenceKey, ReferenceStatsCache, Statistics
from genbench.training.checkpoint import (
    CorruptCheckpoint,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

QUALITY = ("fid", "precision", "recall")
AE_TINY = dict(image_channels=1, block_out_channels=[8, 16], layers_per_block=1, latent_channels=4,
               attn_levels=[], norm_num_groups=4, batch_size=8, lr=2e-3, disc_layers=1,
               disc_channels=8, hflip=False, ckpt_every=10)  # as tests/test_autoencoder.py


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([*genbench_command(), "run", *TINY, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def _quality(cwd: Path, experiment: str) -> dict:
    (record,) = (cwd / "results" / experiment).glob("*/result.json")
    data = json.loads(record.read_text())
    assert data["status"] == "ok"
    return {key: data["metrics"][key] for key in QUALITY}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny run's folder (results and cache) and its quality metrics."""
    cwd = tmp_path_factory.mktemp("clean")
    proc = _run(cwd, "experiment=clean")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, _quality(cwd, "clean")


def _one(cache: Path, pattern: str) -> Path:
    (found,) = cache.glob(pattern)
    return found


def test_flipped_bytes_in_cached_files_are_refit_with_the_same_metrics(clean_run, tmp_path):
    source, metrics = clean_run
    cwd = copy_tree(source, tmp_path / "run")
    cache = cwd / "results" / ".cache"
    corrupted = [_one(cache, "models/*/generator.safetensors"),
                 _one(cache, "extractors/*.safetensors"),
                 _one(cache, "reference/*.npz")]
    for path in corrupted:
        flip_byte(path)
    proc = _run(cwd, "experiment=again")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    notices = [line for line in proc.stderr.splitlines() if "not used" in line
               or "cannot be used" in line]
    assert len(notices) == 3, proc.stderr
    for path in corrupted:  # each named, on its own line
        assert sum(path.name in line for line in notices) == 1, (path, notices)
    assert _quality(cwd, "again") == metrics


def test_garbled_meta_truncated_stats_and_corrupt_checkpoint_are_refit(clean_run, tmp_path):
    source, metrics = clean_run
    cwd = copy_tree(source, tmp_path / "run")
    cache = cwd / "results" / ".cache"
    _one(cache, "models/*/meta.json").write_text('{"key": "4c16", "payl')  # truncated JSON
    _one(cache, "extractors/*.json").write_bytes(b"\xff\xfe not json")
    npz = _one(cache, "reference/*.npz")
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 3])
    # With the model's meta.json unreadable the model is trained again; its checkpoint is
    # corrupt too, so training starts from step 0 (and, being deterministic, ends the same).
    flip_byte(_one(cache, "models/*/checkpoint/weights.safetensors"))
    proc = _run(cwd, "experiment=again")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "meta.json cannot be read; training it again" in proc.stderr
    assert "checkpoint" in proc.stderr and "again from step 0" in proc.stderr
    assert "cached reference statistics" in proc.stderr
    assert "cached feature classifier not used" in proc.stderr
    assert _quality(cwd, "again") == metrics
    # everything was rewritten with its SHA-256: a third run uses the cache silently
    proc = _run(cwd, "experiment=third")
    assert proc.returncode == 0 and "not used" not in proc.stderr and "again" not in proc.stderr
    assert _quality(cwd, "third") == metrics


# ----------------------------------------------------------------------- library level, fast


def _tiny_modules() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"net": torch.nn.Linear(3, 2)}


def _checkpoint(folder: Path) -> Path:
    modules = _tiny_modules()
    opt = torch.optim.Adam(modules["net"].parameters(), betas=(0.5, 0.9))
    modules["net"](torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(folder, modules, {"step": 3, "opt": opt.state_dict()})
    return folder


@pytest.mark.parametrize("name", ["weights.safetensors", "state.safetensors", "state.json"])
def test_corrupt_checkpoint_is_refused_before_anything_is_loaded(tmp_path, name):
    folder = _checkpoint(tmp_path / "ckpt")
    flip_byte(folder / name)
    modules = _tiny_modules()
    before = {k: v.clone() for k, v in modules["net"].state_dict().items()}
    with pytest.raises(CorruptCheckpoint) as info:
        load_checkpoint(find_checkpoint(folder), modules)
    assert str(folder) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, UserError)
    after = modules["net"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # untouched


def test_edited_state_json_is_refused(tmp_path):
    """A state.json that still parses but says something else (step 3 -> 4) is caught too."""
    folder = _checkpoint(tmp_path / "ckpt")
    text = (folder / "state.json").read_text()
    assert '"step": 3' in text
    (folder / "state.json").write_text(text.replace('"step": 3', '"step": 4'))
    with pytest.raises(CorruptCheckpoint, match="state.json does not match"):
        load_checkpoint(folder, _tiny_modules())


def _stats_key() -> ReferenceKey:
    return ReferenceKey("toy", "train", 8, "toy-pixels", "t" * 64, 4)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_damaged_reference_statistics_are_recomputed(tmp_path, capsys, damage):
    cache = ReferenceStatsCache(tmp_path)
    features = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    first = cache.get_or_compute(_stats_key(), lambda: features, keep_features=True)
    path = first.path
    data = path.read_bytes()
    if damage == "flip":
        flip_byte(path)
    else:
        path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    calls = []
    again = cache.get_or_compute(_stats_key(), lambda: calls.append(1) or features,
                                 keep_features=True)
    assert calls == [1]
    assert (again.statistics.mu == first.statistics.mu).all()
    assert (again.statistics.sigma == first.statistics.sigma).all()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and path.name in err and "computing them again" in err
    assert cache.load(_stats_key()) is not None  # rewritten whole
    assert path.read_bytes() == data


def test_reference_statistics_changed_consistently_are_still_caught(tmp_path, capsys):
    """A valid .npz whose arrays were altered (not a CRC error) fails the contents hash."""
    import numpy as np

    cache = ReferenceStatsCache(tmp_path)
    stats = Statistics(np.zeros(3), np.eye(3), 4)
    path = cache.save(_stats_key(), stats)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["mu"] = np.ones(3)
    np.savez(path.with_suffix(""), **arrays)  # numpy appends .npz
    assert cache.load(_stats_key()) is None
    assert "do not match the SHA-256" in capsys.readouterr().err


def test_corrupt_autoencoder_cache_is_fitted_again(tmp_path, capsys):
    from genbench.data.base import all_images
    from genbench.training.autoencoder import fit_autoencoder

    dataset = registry.create("dataset", "digits", resolution=16, split="train", channels=1)
    images = all_images(dataset, limit=64)[0]

    def fit():
        space = registry.create("latent", "kl", **{**AE_TINY, "steps": 3})
        info = fit_autoencoder(space, images, cache_dir=tmp_path, progress=False)
        return space, info

    space, info = fit()
    assert info["source"] == "trained"
    (weights,) = tmp_path.glob("autoencoders/*/autoencoder.safetensors")
    reference = {k: v.clone() for k, v in space.autoencoder.state_dict().items()}
    flip_byte(weights)
    capsys.readouterr()
    space, info = fit()
    err = capsys.readouterr().err
    assert info["source"] == "trained" and "fitting it again" in err and weights.name in err
    assert all(torch.equal(reference[k], v) for k, v in space.autoencoder.state_dict().items())
    (meta,) = tmp_path.glob("autoencoders/*/meta.json")
    meta.write_text("{")
    space, info = fit()
    assert info["source"] == "trained" and "meta.json cannot be read" in capsys.readouterr().err
    space, info = fit()
    assert info["source"] == "cache" and capsys.readouterr().err == ""
    assert all(torch.equal(reference[k], v) for k, v in space.autoencoder.state_dict().items())
