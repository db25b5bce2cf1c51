"""genbench's one home for atomic writes, hashing and locks (imported by every layer).

Everything that writes into a results or cache folder goes through here, so that a process killed
at any point leaves either the previous file (or folder) or the new one, never half of either:

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json` write a
  temporary sibling, ``fsync`` it and ``os.replace`` it over the target;
* :func:`atomic_write_with` does the same for writers that want a path (``safetensors``,
  ``numpy.savez``);
* :func:`staging_dir` / :func:`swap_dir` assemble a folder next to its target and rename it into
  place, keeping the old folder aside until the new one is there;
* :func:`json_hash`, :func:`sha256_file`, :func:`sha256_bytes` and :func:`tensor_fingerprint`
  are the only hashes of configurations, files and tensors;
* :func:`file_lock` is the only inter-process lock (``fcntl.flock`` on a lock file).

Temporary names are hidden (``.<name>.<uuid>.tmp[.suffix]``, ``.<name>.<uuid>.old``); readers that
list folders skip them with :func:`is_temporary`; :func:`remove_stale_temporaries` deletes what a
killed writer left.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

TMP_SUFFIX = ".tmp"
OLD_SUFFIX = ".old"
_CHUNK = 1 << 20
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.(tmp|old)(\.[A-Za-z0-9]+)?$")


# --------------------------------------------------------------------------- hashing


def json_hash(payload: Any, length: int = 16) -> str:
    """A stable SHA-256 (hex, first ``length`` digits) of a JSON-able payload.

    Keys are sorted and tuples become lists, so equal configurations hash equally whatever order
    they were written in; values JSON cannot hold are hashed by ``str``.
    """
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def sha256_bytes(data: bytes) -> str:
    """Full SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Full SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_fingerprint(data: Any) -> dict[str, Any]:
    """SHA-256 of a tensor's (or array's) bytes with its shape and dtype (identifies data exactly).

    torch is not imported here, so that light commands (``genbench list``) stay light.
    """
    if hasattr(data, "detach"):  # a torch.Tensor
        array = data.detach().cpu().contiguous().numpy()
        dtype = str(data.dtype)
    else:
        array = np.ascontiguousarray(data)
        dtype = str(array.dtype)
    return {"sha256": sha256_bytes(array.tobytes()), "shape": list(array.shape), "dtype": dtype}


# --------------------------------------------------------------------------- atomic files


def _hidden_sibling(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}{suffix}")


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_with(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a hidden temporary sibling of ``path``, then rename it into place.

    If ``write`` raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden_sibling(path, TMP_SUFFIX + path.suffix)  # writers that add a suffix see it
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, payload: Any, *, indent: int | None = 2) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically (NaN/inf are refused, not written)."""
    text = json.dumps(payload, indent=indent, allow_nan=False, default=str)
    return atomic_write_text(path, text + "\n")


# --------------------------------------------------------------------------- atomic folders


@contextlib.contextmanager
def staging_dir(target: str | Path) -> Iterator[Path]:
    """A hidden empty sibling folder of ``target`` to assemble it in; removed if not swapped in.

    Use with :func:`swap_dir` inside the block::

        with staging_dir(cell_dir) as tmp:
            (tmp / "a.json").write_text(...)
            swap_dir(tmp, cell_dir)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden_sibling(target, TMP_SUFFIX)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def swap_dir(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target``; an existing ``target`` survives until ``new`` is there.

    The old folder is first renamed to a hidden ``.old`` sibling, then ``new`` is renamed into
    place, then the old one is deleted: a kill at any point leaves the old or the new folder
    complete (an ``.old`` sibling left by a kill is found by :func:`previous_version`).
    """
    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = _hidden_sibling(target, OLD_SUFFIX)
        os.replace(target, old)
    try:
        os.rename(new, target)
    except OSError:
        if old is not None and not target.exists():
            os.replace(old, target)  # put the old one back: nothing is lost
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def previous_version(target: str | Path) -> list[Path]:
    """``.old`` siblings of ``target`` a swap cut short left, newest first."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    found = [p for p in target.parent.glob(f".{target.name}.*{OLD_SUFFIX}") if p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def is_temporary(path: str | Path) -> bool:
    """A hidden ``.tmp``/``.old`` file or folder of an atomic write (never a result)."""
    return _TEMPORARY.match(Path(path).name) is not None


def remove_stale_temporaries(folder: str | Path, *, older_than_s: float = 0.0) -> list[Path]:
    """Delete the temporaries of atomic writes directly in ``folder`` older than ``older_than_s``.

    Returns what was removed. A writer that is still running keeps its temporary for well under a
    second between creating and renaming it, so callers that may run beside other writers pass a
    margin.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    for path in folder.iterdir():
        if not is_temporary(path):
            continue
        try:
            if now - path.lstat().st_mtime < older_than_s:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except FileNotFoundError:  # another process cleaned it first
            continue
    return removed


# --------------------------------------------------------------------------- locks


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive inter-process lock held on ``path`` (created if needed) for the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


__all__ = [
    "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "atomic_write_with",
    "file_lock", "is_temporary", "json_hash", "previous_version", "remove_stale_temporaries",
    "sha256_bytes", "sha256_file", "staging_dir", "swap_dir", "tensor_fingerprint",
]
