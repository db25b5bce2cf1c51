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
* :func:`file_lock` is the only inter-process lock: a lock file created with ``O_EXCL`` that
  says who holds it (host, pid), kept fresh by a heartbeat, and taken over when its holder is
  gone (see its notes): it holds between machines that share a file system, where ``flock`` is
  not to be relied on (NFS mounted with ``local_lock``, Lustre without ``-o flock``).

Temporary names are hidden (``.<name>.<uuid>.tmp[.suffix]``, ``.<name>.<uuid>.old``); readers that
list folders skip them with :func:`is_temporary`; :func:`remove_stale_temporaries` deletes what a
killed writer left. A live writer holds a shared ``flock`` on each of its temporaries (the lock
dies with the process), so a cleaner tells a killed writer's leftovers from a concurrent writer's
work in progress without any age margin, and puts back a set-aside ``.old`` folder whose swap was
cut short instead of deleting it.

:func:`fault_point` is a test-only hook (``GENBENCH_FAULT``) that kills the process at named
points of these writes (tests/test_faults.py).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import threading
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


def read_json_object(path: str | Path) -> dict[str, Any] | None:
    """A JSON file holding an object (a cache folder's ``meta.json``), or None when it is
    missing, truncated, garbled, not UTF-8 or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recorded_hash_problem(path: Path, meta_path: Path) -> str | None:
    """None when ``meta_path`` reads and records ``path``'s current SHA-256 under
    ``sha256[<name>]`` (written when ``path`` was); else a short reason that names the file."""
    meta = read_json_object(meta_path)
    if meta is None:
        return f"{meta_path} cannot be read"
    recorded = meta.get("sha256")
    expected = recorded.get(path.name) if isinstance(recorded, dict) else None
    if not isinstance(expected, str):
        return f"{meta_path} records no SHA-256 for {path.name}"
    try:
        actual = sha256_file(path)
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc})"
    if actual != expected:
        return f"{path} does not match the SHA-256 recorded when it was written"
    return None


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


# --------------------------------------------------------------------------- fault injection

FAULT_ENV = "GENBENCH_FAULT"
_fault_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Test-only: stop the process here if ``GENBENCH_FAULT`` names this point.

    ``GENBENCH_FAULT=POINT[@N][:ACTION]`` (comma-separated for several): at the ``N``-th time
    (default 1) this process reaches ``POINT``, ``kill`` (default) ends it at once with
    ``os._exit(137)``, as SIGKILL would (no cleanup, no ``finally``); ``interrupt`` raises
    KeyboardInterrupt, as Ctrl-C would. Points: ``<kind>.staged`` (a folder is complete in its
    staging sibling, nothing renamed yet), ``<kind>.aside`` (the old folder is set aside, the new
    one not yet in place), ``<kind>.swapped`` (the new folder is in place, the old one not yet
    deleted), where kind is ``record`` (a cell's record) or ``swap`` (other folders: training
    checkpoints); ``sample.batch`` (after each batch of samples). Unset (always, outside tests)
    it costs one environment lookup.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    for item in spec.split(","):
        where, _, action = item.strip().partition(":")
        point, _, nth = where.partition("@")
        if point != name:
            continue
        _fault_hits[name] = _fault_hits.get(name, 0) + 1
        if _fault_hits[name] != int(nth or 1):
            continue
        if action == "interrupt":
            raise KeyboardInterrupt
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(137)


# --------------------------------------------------------------------------- temporaries in use


_NO_FLOCK = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK)


def _in_use(fd: int) -> None:
    """Mark the temporary open as ``fd`` in use (a shared ``flock``). On a file system without
    ``flock`` (Lustre mounted without ``-o flock``) nothing is marked: there cleaners cannot
    claim any temporary either (:func:`claimed`), so they keep them all, never a live one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError as exc:
        if exc.errno not in _NO_FLOCK:
            raise


def _new_locked(make_path: Callable[[], Path], create: Callable[[Path], int]) -> tuple[Path, int]:
    """A new temporary ``create(path)`` (returns an fd) with a shared ``flock`` held on it, so
    that cleaners see it in use; made again under a new name if a cleaner removed it between
    its creation and the lock."""
    while True:
        path = make_path()
        fd = create(path)
        _in_use(fd)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return path, fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _mkdir_open(path: Path) -> int:
    path.mkdir()
    return os.open(path, os.O_RDONLY)


def _create_open(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


@contextlib.contextmanager
def claimed(path: str | Path) -> Iterator[bool]:
    """Try to take ``path`` (a temporary) for cleaning: yields True while no live writer holds
    it (and none can take it), False if one does (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


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
    # writers that add a suffix see it; the lock marks it as in use for cleaners
    tmp, fd = _new_locked(lambda: _hidden_sibling(path, TMP_SUFFIX + path.suffix), _create_open)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        os.close(fd)
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
    tmp, fd = _new_locked(lambda: _hidden_sibling(target, TMP_SUFFIX), _mkdir_open)
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def swap_dir(new: Path, target: Path, *, kind: str = "swap",
             replaceable: Callable[[Path], str | None] | None = None) -> None:
    """Put folder ``new`` at ``target``; an existing ``target`` survives until ``new`` is there.

    The old folder is first renamed to a hidden ``.old`` sibling, then ``new`` is renamed into
    place, then the old one is deleted: a kill at any point leaves the old or the new folder
    complete (an ``.old`` sibling left by a kill is found by :func:`previous_version` and put
    back by :func:`remove_stale_temporaries`). The old folder stays locked while it is aside,
    so that no cleaner or reader takes it for a killed writer's.

    ``replaceable(target)``: None if an existing ``target`` may be replaced, else why not (then
    :class:`~genbench.errors.UserError` and nothing changes). ``kind`` names the
    :func:`fault_point` s of this swap.
    """
    new, target = Path(new), Path(target)
    fault_point(f"{kind}.staged")
    old, fd = None, None
    try:
        if target.exists() or target.is_symlink():
            why = None if replaceable is None else replaceable(target)
            if why is not None:
                from genbench.errors import UserError

                raise UserError(f"{target} {why}; genbench replaces only its own folders: move it"
                                f" away or choose another name")
            if not target.is_symlink():  # locked while aside: see remove_stale_temporaries
                fd = os.open(target, os.O_RDONLY)
                _in_use(fd)
            old = _hidden_sibling(target, OLD_SUFFIX)
            os.replace(target, old)
            fault_point(f"{kind}.aside")
        try:
            os.rename(new, target)
        except OSError:
            if old is not None and not target.exists():
                os.replace(old, target)  # put the old one back: nothing is lost
            raise
        _fsync_dir(target.parent)
        fault_point(f"{kind}.swapped")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if fd is not None:
            os.close(fd)


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


def set_aside_target(path: Path) -> Path | None:
    """The folder an ``.old`` temporary was set aside from (``.<name>.<uuid>.old`` -> name)."""
    match = re.match(r"^\.(.+)\.[0-9a-f]{32}\.old$", path.name)
    return path.with_name(match.group(1)) if match else None


def remove_stale_temporaries(folder: str | Path, *, older_than_s: float = 0.0,
                             set_aside: bool = True) -> list[Path]:
    """Clean what killed writers left directly in ``folder``; returns what was removed.

    A temporary that a live writer holds (its lock, see the module's notes) is left alone, so
    this is safe beside concurrent writers; so is one younger than ``older_than_s``. A set-aside
    ``.old`` folder whose target is missing (a swap killed between its two renames) is renamed
    back into place, not removed: it is the only copy. ``set_aside=False`` leaves ``.old``
    folders alone (for folders whose writers hold a lock of their own that the caller does not
    hold: they are cleaned under that lock).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    # newest first, so that of several set-aside versions the newest is the one put back
    found = []
    for path in folder.iterdir():
        if is_temporary(path):
            with contextlib.suppress(FileNotFoundError):
                found.append((path.lstat().st_mtime, path))
    for mtime, path in sorted(found, key=lambda item: -item[0]):
        if now - mtime < older_than_s or (not set_aside and path.name.endswith(OLD_SUFFIX)):
            continue
        with claimed(path) as ours:
            if not ours:
                continue  # a live writer's (or already gone)
            try:
                target = set_aside_target(path) if path.is_dir() else None
                if target is not None and not (target.exists() or target.is_symlink()):
                    os.rename(path, target)  # the only copy: put it back
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
            except FileNotFoundError:  # another process cleaned it first
                continue
    return removed


def remove_stale_temporaries_below(root: str | Path, *, depth: int = 3) -> list[Path]:
    """:func:`remove_stale_temporaries` in ``root`` and its sub-folders down to ``depth`` levels
    (temporaries themselves are not entered), leaving ``.old`` folders to the writers' locks."""
    root = Path(root)
    removed = remove_stale_temporaries(root, set_aside=False)
    if depth > 0 and root.is_dir():
        for sub in sorted(root.iterdir()):
            with contextlib.suppress(OSError):
                if sub.is_dir() and not sub.is_symlink() and not is_temporary(sub):
                    removed += remove_stale_temporaries_below(sub, depth=depth - 1)
    return removed


# --------------------------------------------------------------------------- locks


LOCK_HEARTBEAT_S = 15.0  # a holder refreshes its lock file's mtime this often
LOCK_STALE_S = 120.0  # a lock whose heartbeat is older is its dead (or frozen) holder's
LOCK_GRACE_S = 10.0  # a lock file with no holder written in it yet is this old at most
_LOCK_POLL_S = 0.2


def _lock_holder(path: Path) -> dict[str, Any] | None:
    """Who holds lock ``path`` (its JSON: host, pid, token, since), None if it cannot be read."""
    holder = read_json_object(path)
    if holder is None or not isinstance(holder.get("pid"), int) or "host" not in holder:
        return None
    return holder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def lock_staleness(path: str | Path, now: float | None = None) -> str | None:
    """Why lock file ``path`` no longer protects anything, or None while its holder may live:
    a holder on this host whose process is gone; a heartbeat older than ``LOCK_STALE_S`` (a
    holder on another machine, which cannot be asked); a file nobody wrote a holder into for
    ``LOCK_GRACE_S`` (e.g. an empty lock file of an earlier genbench, which used ``flock``)."""
    path = Path(path)
    try:
        age = (time.time() if now is None else now) - os.stat(path).st_mtime
    except FileNotFoundError:
        return None  # released meanwhile: simply try again
    holder = _lock_holder(path)
    if holder is None:
        return f"no holder written in it for {age:.0f} s" if age > LOCK_GRACE_S else None
    if holder["host"] == socket.gethostname() and not _pid_alive(holder["pid"]):
        return f"its holder, process {holder['pid']} on this host, is gone"
    if age > LOCK_STALE_S:
        return f"its holder on {holder['host']} (pid {holder['pid']}) sent no heartbeat for " \
               f"{age:.0f} s"
    return None


def _break_stale_lock(path: Path) -> None:
    """Remove ``path`` if it is still stale, under a short ``O_EXCL`` guard so that of several
    waiters only one removes it (and none removes the lock another has just taken)."""
    guard = path.with_name(path.name + ".break")
    try:
        fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:  # another waiter breaks it; or one that died while doing so
        with contextlib.suppress(FileNotFoundError):
            if time.time() - os.stat(guard).st_mtime > LOCK_GRACE_S:
                os.unlink(guard)
        return
    os.close(fd)
    try:
        if lock_staleness(path) is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(guard)


def _heartbeat(path: Path, token: str, stop: threading.Event) -> None:
    while not stop.wait(LOCK_HEARTBEAT_S):
        holder = _lock_holder(path)
        if holder is None or holder.get("token") != token:
            return  # taken over (we were frozen past LOCK_STALE_S): nothing of ours to refresh
        with contextlib.suppress(OSError):
            os.utime(path)


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive inter-process lock on ``path`` for the block, between processes of this
    machine and of machines that share the file system.

    The lock is the file itself, created with ``O_CREAT | O_EXCL`` (atomic on local file
    systems and on NFS v3 and later), holding JSON that names its holder (host, pid, a token);
    a thread refreshes its mtime every ``LOCK_HEARTBEAT_S`` while the block runs, and the file
    is removed when the block ends. A waiter polls; it takes over a lock that
    :func:`lock_staleness` finds stale (holder's process gone on this host, or no heartbeat for
    ``LOCK_STALE_S``: a killed job on another node), so a killed holder never blocks a grid
    for good. Lock files of killed holders are therefore removed by the next waiter, not left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    holder = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": token,
                         "since": time.time()}).encode()
    said = False
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            why = lock_staleness(path)
            if why is not None:
                print(f"genbench: taking over the lock {path}: {why}", file=sys.stderr,
                      flush=True)
                _break_stale_lock(path)
                continue
            if not said:
                said = True  # one line, then wait quietly
                print(f"genbench: waiting for the lock {path} (held by "
                      f"{_lock_holder(path) or 'another process'})", file=sys.stderr, flush=True)
            time.sleep(_LOCK_POLL_S)
            continue
        try:
            os.write(fd, holder)
            os.fsync(fd)
        finally:
            os.close(fd)
        break
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, token, stop), daemon=True,
                            name=f"genbench-lock-{path.name}")
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        current = _lock_holder(path)
        if current is not None and current.get("token") == token:  # ours: not a taker's
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


__all__ = [
    "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "atomic_write_with",
    "claimed", "fault_point", "file_lock", "is_temporary", "json_hash", "lock_staleness",
    "previous_version",
    "remove_stale_temporaries", "remove_stale_temporaries_below", "set_aside_target",
    "sha256_bytes", "sha256_file", "staging_dir", "swap_dir", "tensor_fingerprint",
]
