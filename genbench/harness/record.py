"""The record of one benchmark cell: ``<results>/<experiment>/<cell>/result.json`` and friends.

A cell folder is assembled in a hidden staging sibling and swapped into place
(:func:`genbench._io.staging_dir`, :func:`genbench._io.swap_dir`), so a reader (or a grid
restarted after a kill) sees either no record or a complete one; with ``overwrite`` the previous
record stays in place until the new one is there. ``result.json`` is written last inside the
staging folder; a folder without it is not a record.

Cell and experiment names become folder names, so they are plain names (:func:`check_name`), and
a record replaces only a folder genbench wrote (:func:`not_a_cell`): nothing else the user has
is ever renamed aside or deleted.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any

from genbench import _io
from genbench.errors import UserError

SCHEMA_VERSION = 1
RESULT = "result.json"
CONFIG = "config.yaml"
SAMPLES = "samples.png"
CELL_FILES = frozenset({RESULT, CONFIG, SAMPLES})
MAX_NAME = 128
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+@=,-]*$")

# Keys every record's "metrics" holds (None = missing, with the reason under "missing").
METRIC_KEYS = (
    "fid", "fid_ci", "fid_infinity", "fid_at_n", "precision", "recall", "nfe", "params",
    "params_denoiser", "params_decoder", "gmacs_denoiser", "gmacs_decoder", "gmacs_per_sample",
    "peak_memory_mb", "time_per_batch_s", "time_per_batch_iqr_s",
)


def new_record(experiment: str, cell: str, config: dict[str, Any], *, status: str = "ok",
               error: str | None = None, **parts: Any) -> dict[str, Any]:
    """The skeleton every record starts from (schema, identity, status, UTC time, config).

    ``parts`` are the record's further sections (``seeds``, ``metrics``, ...), in order.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment": experiment,
        "cell": cell,
        "status": status,
        "error": error,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": config,
        **parts,
    }


def failed_record(experiment: str, cell: str, config: dict[str, Any], error: str, why: str,
                  **parts: Any) -> dict[str, Any]:
    """A record of a cell that was not measured: ``error`` is what broke, ``why`` says so for
    every metric (``missing.all``)."""
    return new_record(experiment, cell, config, status="failed", error=error, **parts,
                      metrics=dict.fromkeys(METRIC_KEYS), missing={"all": why}, artifacts={})


def check_name(value: object, setting: str) -> str:
    """``value`` if it is a plain folder name for ``setting`` (``cell``, ``experiment``), else a
    :class:`~genbench.errors.UserError`.

    Plain: letters, digits and ``_ . + @ = , -``, not starting with ``.`` (hidden names are
    genbench's temporaries) or ``-``, at most 128 characters: no path separator, no ``.``/``..``,
    not absolute, not empty.
    """
    name = str(value)
    if not name:
        why = "is empty"
    elif "/" in name or "\\" in name or name in (".", ".."):
        why = "is a path, not a plain name"
    elif len(name) > MAX_NAME:
        why = f"is longer than {MAX_NAME} characters"
    elif name[0] in ".-":
        why = "starts with '.' or '-' (hidden names are genbench's temporary folders)"
    elif not _NAME.match(name):
        why = "has characters other than letters, digits and _ . + @ = , -"
    else:
        return name
    raise UserError(f"{setting}={name!r} {why}; {setting} names one folder under results_dir, "
                    f"e.g. {setting}=my_{setting}")


def not_a_cell(folder: Path) -> str | None:
    """None if ``folder`` may be replaced by a record (a cell folder genbench wrote, or an empty
    folder), else what it is instead."""
    if folder.is_symlink() or not folder.is_dir():
        return "is not a folder" if not folder.is_symlink() else "is a symbolic link"
    names = {p.name for p in folder.iterdir()}
    if names - CELL_FILES:
        return "holds files that are not a genbench record (" + ", ".join(
            sorted(names - CELL_FILES)[:3]) + ")"
    if RESULT in names:
        try:
            record = read_record(folder)
        except (OSError, ValueError):
            return f"has a {RESULT} genbench did not write"
        if not (isinstance(record, dict) and isinstance(record.get("cell"), str)
                and isinstance(record.get("status"), str)):
            return f"has a {RESULT} genbench did not write"
    return None


def _json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: a number that is not finite is missing (None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(_json_safe(record), indent=2, sort_keys=False, allow_nan=False) + "\n"


def is_recorded(cell_dir: Path) -> bool:
    """A complete record (ok or failed) is in ``cell_dir`` (restored if a kill left it aside)."""
    restore_interrupted(cell_dir)
    return (cell_dir / RESULT).is_file()


def restore_interrupted(cell_dir: Path) -> bool:
    """Put back the record an ``overwrite`` killed between its two renames left aside.

    :func:`genbench._io.swap_dir` moves the old folder to a hidden ``.old`` sibling before it
    renames the new one in; a kill between the two leaves no ``cell_dir``. Returns whether a
    record was restored.
    """
    if cell_dir.exists():
        return False
    for old in _io.previous_version(cell_dir):
        with _io.claimed(old) as ours:
            if not ours:  # a live writer is between its renames: its record is coming
                continue
            if (old / RESULT).is_file():
                try:
                    old.rename(cell_dir)
                except OSError:  # another process restored it (or wrote a new record) first
                    return False
                return True
    return False


def is_done(cell_dir: Path) -> bool:
    """A complete record of a cell that succeeded (failed cells are run again)."""
    if not is_recorded(cell_dir):
        return False
    try:
        record = read_record(cell_dir)
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("status") == "ok"


def read_record(cell_dir: Path) -> dict[str, Any]:
    with open(cell_dir / RESULT) as fh:
        return json.load(fh)


def write_cell(cell_dir: Path, record: dict[str, Any], files: dict[str, bytes],
               *, overwrite: bool = False) -> Path:
    """Write ``files`` and ``result.json`` into ``cell_dir`` as one atomic unit.

    If a successful record is already there and ``overwrite`` is False, nothing is written and
    the existing folder is returned (the first finisher wins; nothing is lost or duplicated); a
    failed or incomplete record is replaced. A kill at any point leaves the old record or the new
    one, never neither. A folder at ``cell_dir`` that is not a record (:func:`not_a_cell`) is
    never replaced: :class:`~genbench.errors.UserError` naming it.
    """
    with _io.staging_dir(cell_dir) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / RESULT).write_text(dumps(record))
        if is_done(cell_dir) and not overwrite:
            return cell_dir
        try:
            _io.swap_dir(tmp, cell_dir, kind="record", replaceable=not_a_cell)
        except OSError:
            # Another writer renamed its record in first: it wins, unless this one was asked to
            # overwrite (or left no record), which is then a real error.
            if overwrite or not is_recorded(cell_dir):
                raise
    return cell_dir
