"""Test support: files whose unpickling would run code, and helpers shared by the tests of
untrusted and corrupted files (tests/test_untrusted.py, tests/test_corruption.py).

``Payload`` stands for arbitrary code: unpickling it calls ``pathlib.Path.touch(marker)``
(pickle's ``__reduce__`` protocol, Python docs "Pickling Class Instances"), so a test sees that
code ran exactly when the marker file exists.
"""

from __future__ import annotations

import pathlib
import pickle
import shutil
from pathlib import Path

import torch


class Payload:
    """Unpickling an instance creates ``marker`` (a stand-in for any code a file could run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def crafted_pickle(path: Path, marker: Path, wrap=None) -> Path:
    """A plain pickle (the CIFAR-10 batch format) that touches ``marker`` when unpickled."""
    payload = Payload(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(wrap(payload) if wrap else {"data": payload, "labels": [0]}, handle)
    return path


def crafted_torch_file(path: Path, marker: Path) -> Path:
    """A ``torch.save`` file (the .pth/.pt format) that touches ``marker`` when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": torch.zeros(2), "evil": Payload(marker)}, path)
    return path


def one_line_error(proc) -> str:
    """The error line of a CLI run that ended in a user error: exit 2, no traceback, one
    ``genbench: error:`` line and it is the last (a ``genbench: cell ... ->`` line announcing
    the cell may come before it)."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("genbench: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]
    assert all(line.startswith("genbench: cell ") for line in lines[:-1]), proc.stderr[-3000:]
    assert "\x1b" not in errors[0]
    return errors[0]


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Invert one byte of ``path`` (default: the middle one), as a bad disk or copy would."""
    data = bytearray(path.read_bytes())
    index = len(data) // 2 if offset is None else offset
    data[index] ^= 0xFF
    path.write_bytes(bytes(data))


def copy_tree(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, symlinks=True)
    return destination
