"""Cell records: written as one atomic unit; a kill during ``--overwrite`` loses nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from genbench import _io
from genbench.harness import record as rec


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (no ``except Exception`` catches it)."""


def _write(cell: Path, value: int, status: str = "ok", **kwargs) -> Path:
    return rec.write_cell(cell, {"cell": cell.name, "status": status, "value": value},
                          {"samples.png": bytes([value])}, **kwargs)


def test_first_ok_record_wins_unless_overwrite(tmp_path: Path) -> None:
    cell = tmp_path / "exp" / "cell"
    _write(cell, 1)
    _write(cell, 2)
    assert rec.read_record(cell)["value"] == 1
    _write(cell, 3, overwrite=True)
    assert rec.read_record(cell)["value"] == 3 and (cell / "samples.png").read_bytes() == b"\x03"
    assert sorted(p.name for p in cell.parent.iterdir()) == ["cell"]  # no temporaries left


def test_failed_or_incomplete_record_is_replaced(tmp_path: Path) -> None:
    cell = tmp_path / "cell"
    _write(cell, 1, status="failed")
    assert rec.is_recorded(cell) and not rec.is_done(cell)
    _write(cell, 2)
    assert rec.read_record(cell)["value"] == 2
    (cell / rec.RESULT).unlink()  # a folder without result.json is not a record
    assert not rec.is_recorded(cell)
    _write(cell, 4)
    assert rec.is_done(cell) and rec.read_record(cell)["value"] == 4


def test_kill_between_the_renames_of_an_overwrite_keeps_the_old_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cell = tmp_path / "cell"
    _write(cell, 1)

    def killed_rename(src, dst):
        raise Killed  # the old folder is already aside, the new one not yet in place

    monkeypatch.setattr(_io.os, "rename", killed_rename)
    with pytest.raises(Killed):
        _write(cell, 2, overwrite=True)
    monkeypatch.undo()
    assert not cell.exists()
    assert [p for p in tmp_path.iterdir() if _io.is_temporary(p)]  # the old one, hidden
    assert rec.is_done(cell)  # a reader puts it back
    assert rec.read_record(cell)["value"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["cell"]


def test_kill_after_the_swap_leaves_the_new_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cell = tmp_path / "cell"
    _write(cell, 1)

    def killed_rmtree(path, ignore_errors=False):
        raise Killed  # the new folder is in place, the old one not yet deleted

    monkeypatch.setattr(_io.shutil, "rmtree", killed_rmtree)
    with pytest.raises(Killed):
        _write(cell, 2, overwrite=True)
    monkeypatch.undo()
    assert rec.read_record(cell)["value"] == 2
    leftovers = [p for p in tmp_path.iterdir() if p.name != "cell"]
    assert leftovers and all(_io.is_temporary(p) for p in leftovers)
    assert not rec.restore_interrupted(cell)  # the new record stays


def test_racing_writer_that_finished_first_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cell = tmp_path / "cell"
    real_rename = os.rename

    def other_writer_first(src, dst):
        if Path(dst) == cell and not cell.exists():
            # another grid worker renames its complete record in just before us
            other = tmp_path / "other"
            (other).mkdir()
            (other / rec.RESULT).write_text(rec.dumps({"cell": "cell", "status": "ok",
                                                       "value": 7}))
            real_rename(other, cell)
        return real_rename(src, dst)

    monkeypatch.setattr(_io.os, "rename", other_writer_first)
    _write(cell, 8)
    monkeypatch.undo()
    assert rec.read_record(cell)["value"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["cell"]
