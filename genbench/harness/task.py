"""genbench's task function: one composed configuration in, one benchmark cell run and recorded.

As in lightning-hydra-template (ashleve/lightning-hydra-template ``src/train.py``), the run is a
plain function of the composed configuration, apart from the entry point that composes it:
``genbench run`` calls :func:`run_task` once with the configuration that
:func:`genbench.config.compose` built, and a grid's Hydra launcher calls
:class:`CellTask` once per job (in this process, a joblib worker or a SLURM node) with the
configuration Hydra composed for that job.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from genbench.config import choices, to_plain
from genbench.distributed import launch_rank
from genbench.harness.cell import paths, record_failure, run_cell


def cell_config(cfg: DictConfig | Mapping[str, Any],
                presets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The plain configuration of a cell, with ``presets`` (the component presets it selected).

    A config that carries no ``presets`` (a Hydra job's) takes them from ``presets`` or else
    from the running Hydra job.
    """
    plain = to_plain(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    if presets is not None:
        plain["presets"] = dict(presets)
    elif "presets" not in plain:
        from hydra.core.hydra_config import HydraConfig

        plain["presets"] = choices(HydraConfig.get()) if HydraConfig.initialized() else {}
    return plain


def _announce(line: str) -> None:
    print(f"genbench: {line}", file=sys.stderr, flush=True)


def run_task(cfg: DictConfig | Mapping[str, Any], *, overwrite: bool = False,
             announce: Callable[[str], None] | None = _announce) -> dict[str, Any]:
    """Run the cell ``cfg`` describes and return its record (an existing one is returned as it
    is, marked ``_skipped``). User errors raise :class:`~genbench.errors.UserError` before
    anything is written."""
    return run_cell(cell_config(cfg), overwrite=overwrite, announce=announce)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@dataclass(frozen=True)
class CellTask:
    """The task function of a grid job: runs the cell and records any failure instead of
    raising it, so that the other cells still run. Returns ``{status, cell_dir, error}``
    (status ``ran``, ``skipped`` or ``failed``). A plain picklable object, as launchers that
    run jobs in other processes (joblib, submitit) pickle the task function."""

    overwrite: bool = False

    def __call__(self, cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
        try:
            plain = cell_config(cfg)
            cell_dir = paths(plain)[1]
        except Exception as exc:  # noqa: BLE001 - e.g. an interpolation that does not resolve
            return {"status": "failed", "cell_dir": None, "error": _first_line(exc)}
        try:
            record = run_task(plain, overwrite=self.overwrite)
            status = "skipped" if record.get("_skipped") else "ran"
            return {"status": status, "cell_dir": str(cell_dir), "error": None}
        except Exception as exc:  # noqa: BLE001 - a failed cell must not stop the grid
            return {"status": "failed", "cell_dir": str(cell_dir), "error": _record(plain, exc)}


def _record(cfg: dict[str, Any], exc: Exception) -> str:
    """Record ``cfg`` as failed with ``exc`` (on rank 0 of a distributed cell; the other ranks
    only say it); returns the error as recorded."""
    error = f"{type(exc).__name__}: {_first_line(exc)}"
    print(f"genbench: cell failed: {error}", file=sys.stderr, flush=True)
    if launch_rank()[0] != 0:
        return error
    try:
        return record_failure(cfg, exc).get("error") or error
    except Exception as exc2:  # noqa: BLE001 - e.g. a results folder that cannot be written
        return f"{error} (and the failure could not be recorded: {exc2})"
