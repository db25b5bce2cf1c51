"""genbench._io: atomic writes leave the old or the new file, never half; hashes are stable."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from genbench import _io


def test_json_hash_ignores_key_order_and_tuples():
    assert _io.json_hash({"a": 1, "b": (1, 2)}) == _io.json_hash({"b": [1, 2], "a": 1})
    assert _io.json_hash({"a": 1}) != _io.json_hash({"a": 2})
    assert len(_io.json_hash({"a": 1}, 8)) == 8


def test_sha256_file_matches_bytes(tmp_path):
    data = os.urandom(3 << 20)  # several chunks
    (tmp_path / "f").write_bytes(data)
    assert _io.sha256_file(tmp_path / "f") == _io.sha256_bytes(data)


def test_tensor_fingerprint_torch_and_numpy_agree_on_bytes():
    t = torch.arange(12, dtype=torch.uint8).view(3, 4)
    a, b = _io.tensor_fingerprint(t), _io.tensor_fingerprint(t.numpy())
    assert a["sha256"] == b["sha256"] and a["shape"] == [3, 4]
    assert _io.tensor_fingerprint(t.t())["sha256"] != a["sha256"]  # layout as seen, not storage


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "x.json"
    _io.atomic_write_json(target, {"v": 1})

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        _io.atomic_write_with(target, broken)
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary left


def test_atomic_write_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        _io.atomic_write_json(tmp_path / "x.json", {"v": float("nan")})
    assert not (tmp_path / "x.json").exists()


def test_swap_dir_replaces_and_keeps_old_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "cell"
    with _io.staging_dir(target) as tmp:
        (tmp / "a").write_text("1")
        _io.swap_dir(tmp, target)
    assert (target / "a").read_text() == "1"
    with _io.staging_dir(target) as tmp:
        (tmp / "a").write_text("2")
        real_rename = os.rename

        def failing_rename(src, dst):
            if str(dst) == str(target):
                raise OSError("disk gone")
            return real_rename(src, dst)

        monkeypatch.setattr(os, "rename", failing_rename)
        with pytest.raises(OSError):
            _io.swap_dir(tmp, target)
        monkeypatch.setattr(os, "rename", real_rename)
    assert (target / "a").read_text() == "1"  # the old folder is back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell"]


def test_temporaries_are_recognised_and_removed(tmp_path):
    uid = "0123456789abcdef0123456789abcdef"
    (tmp_path / f".cell.{uid}.tmp").mkdir()
    (tmp_path / f".cell.{uid}.old").mkdir()
    (tmp_path / f".stats.npz.{uid}.tmp.npz").write_bytes(b"")
    (tmp_path / ".cell.abc.tmp").mkdir()  # not a name genbench writes: left alone
    (tmp_path / "cell").mkdir()
    (tmp_path / ".hidden").mkdir()
    assert _io.is_temporary(tmp_path / f".cell.{uid}.tmp")
    assert not _io.is_temporary(tmp_path / "cell") and not _io.is_temporary(tmp_path / ".hidden")
    assert _io.remove_stale_temporaries(tmp_path, older_than_s=3600) == []
    removed = _io.remove_stale_temporaries(tmp_path)
    assert len(removed) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cell.abc.tmp", ".hidden", "cell"]


def test_file_lock_is_exclusive_between_processes(tmp_path):
    import multiprocessing as mp

    lock = tmp_path / "l.lock"
    ctx = mp.get_context("spawn")
    with _io.file_lock(lock):
        proc = ctx.Process(target=_try_lock, args=(str(lock), str(tmp_path / "got")))
        proc.start()
        proc.join(1.0)
        assert proc.is_alive() and not (tmp_path / "got").exists()  # blocked while we hold it
    proc.join(20)
    assert (tmp_path / "got").exists()


def _try_lock(lock: str, marker: str) -> None:
    with _io.file_lock(lock):
        open(marker, "w").close()


def test_numpy_writer_through_atomic_write_with(tmp_path):
    path = tmp_path / "s.npz"
    _io.atomic_write_with(path, lambda tmp: np.savez(tmp, a=np.ones(3)))
    with np.load(path) as data:
        assert data["a"].sum() == 3
