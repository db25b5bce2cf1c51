"""The record of one benchmark cell: ``<results>/<experiment>/<cell>/result.json`` and friends.

A cell folder is assembled in a temporary sibling and renamed into place, so a reader (or a grid
restarted after a kill) sees either no record or a complete one. ``result.json`` is written last
inside the temporary folder; a folder without it is not a record.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RESULT = "result.json"
CONFIG = "config.yaml"
SAMPLES = "samples.png"

# Keys every record's "metrics" holds (None = missing, with the reason under "missing").
METRIC_KEYS = (
    "fid", "precision", "recall", "nfe", "params", "params_denoiser", "params_decoder",
    "gmacs_denoiser", "gmacs_decoder", "gmacs_per_sample", "peak_memory_mb",
    "time_per_batch_s", "time_per_batch_iqr_s",
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
    """A complete record (ok or failed) is in ``cell_dir``."""
    return (cell_dir / RESULT).is_file()


def is_done(cell_dir: Path) -> bool:
    """A complete record of a cell that succeeded (failed cells are run again)."""
    if not is_recorded(cell_dir):
        return False
    try:
        return read_record(cell_dir).get("status") == "ok"
    except (OSError, ValueError):
        return False


def read_record(cell_dir: Path) -> dict[str, Any]:
    with open(cell_dir / RESULT) as fh:
        return json.load(fh)


def write_cell(cell_dir: Path, record: dict[str, Any], files: dict[str, bytes],
               *, overwrite: bool = False) -> Path:
    """Write ``files`` and ``result.json`` into ``cell_dir`` as one atomic unit.

    If a successful record is already there and ``overwrite`` is False, nothing is written and
    the existing folder is returned (the first finisher wins; nothing is lost or duplicated); a
    failed record is replaced.
    """
    parent = cell_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{cell_dir.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / RESULT).write_text(dumps(record))
        _swap_in(tmp, cell_dir, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return cell_dir


def _swap_in(tmp: Path, cell_dir: Path, overwrite: bool) -> None:
    if cell_dir.exists():
        if is_done(cell_dir) and not overwrite:
            return
        trash = cell_dir.parent / f".{cell_dir.name}.{uuid.uuid4().hex}.old"
        os.replace(cell_dir, trash)  # an incomplete or overwritten folder moves aside
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(tmp, cell_dir)
    except OSError:
        if not is_recorded(cell_dir):  # a racing writer left no record: that is a real error
            raise
