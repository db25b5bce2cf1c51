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


def _holder_file(lock, *, host: str, pid: int, age_s: float = 0.0) -> None:
    import json
    import os
    import time

    lock.write_text(json.dumps({"host": host, "pid": pid, "token": "t", "since": 0}))
    os.utime(lock, (time.time() - age_s,) * 2)


def test_file_lock_is_a_file_naming_its_holder_removed_on_release(tmp_path):
    import json
    import os
    import socket

    lock = tmp_path / "sub" / "k.lock"
    with _io.file_lock(lock):
        holder = json.loads(lock.read_text())
        assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
        assert _io.lock_staleness(lock) is None
    assert not lock.exists()


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    lock = tmp_path / "k.lock"
    _holder_file(lock, host=socket.gethostname(), pid=int(dead.stdout))
    assert "is gone" in _io.lock_staleness(lock)
    with _io.file_lock(lock):  # at once, no heartbeat age needed
        assert _io.lock_staleness(lock) is None
    assert not lock.exists()


def test_a_lock_of_another_machine_holds_until_its_heartbeat_stops(tmp_path, monkeypatch):
    import threading

    lock = tmp_path / "k.lock"
    _holder_file(lock, host="node-7.cluster", pid=1, age_s=5)  # pid 1 lives here: not asked
    assert _io.lock_staleness(lock) is None
    got = threading.Event()
    waiter = threading.Thread(target=lambda: _take(lock, got), daemon=True)
    waiter.start()
    waiter.join(1.0)
    assert not got.is_set()  # a fresh heartbeat from another node: wait
    _holder_file(lock, host="node-7.cluster", pid=1, age_s=_io.LOCK_STALE_S + 5)
    waiter.join(10)
    assert got.is_set() and not lock.exists()  # its job was killed: taken over, then released
    # an unreadable lock file (an earlier genbench's empty flock file) after the grace period
    lock.write_text("")
    assert _io.lock_staleness(lock) is None  # a holder may be writing itself in
    import os
    import time

    os.utime(lock, (time.time() - _io.LOCK_GRACE_S - 1,) * 2)
    assert "no holder" in _io.lock_staleness(lock)
    with _io.file_lock(lock):
        pass


def _take(lock, got) -> None:
    with _io.file_lock(lock):
        got.set()


def test_a_holder_keeps_its_lock_fresh_and_never_removes_a_taker_s(tmp_path, monkeypatch):
    import json
    import os
    import time

    monkeypatch.setattr(_io, "LOCK_HEARTBEAT_S", 0.05)
    lock = tmp_path / "k.lock"
    with _io.file_lock(lock):
        os.utime(lock, (time.time() - 100,) * 2)
        time.sleep(0.5)
        assert time.time() - lock.stat().st_mtime < 5  # the heartbeat refreshed it
        # frozen past LOCK_STALE_S and taken over by another: its lock is left to it
        lock.write_text(json.dumps({"host": "other", "pid": 1, "token": "theirs"}))
    assert json.loads(lock.read_text())["token"] == "theirs"


def test_numpy_writer_through_atomic_write_with(tmp_path):
    path = tmp_path / "s.npz"
    _io.atomic_write_with(path, lambda tmp: np.savez(tmp, a=np.ones(3)))
    with np.load(path) as data:
        assert data["a"].sum() == 3


def test_without_flock_writes_work_and_cleaners_keep_every_temporary(tmp_path, monkeypatch):
    """A file system without flock (Lustre without -o flock): atomic writes still work, and a
    cleaner, which cannot tell a live writer's temporary, removes none."""
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    _io.atomic_write_text(tmp_path / "a.txt", "one")
    with _io.staging_dir(tmp_path / "cell") as staged:
        (staged / "f").write_text("x")
        assert _io.remove_stale_temporaries(tmp_path) == []  # the live staging folder is kept
        _io.swap_dir(staged, tmp_path / "cell")
    assert (tmp_path / "a.txt").read_text() == "one" and (tmp_path / "cell" / "f").exists()
