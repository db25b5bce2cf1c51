"""Grids of benchmark cells: a Hydra multirun (``genbench run --grid [NAME] [overrides]``).

A grid is the Cartesian product of comma lists (``backbone=ncsnpp,uvit_tiny latent=pixel,wavelet``,
Hydra's basic-sweeper syntax, ``range()`` included), or a named grid ``registry/grid/NAME.yaml``:
a ``# @package _global_`` preset of config group ``grid`` whose ``hydra.sweeper.params`` hold its
sweeps, selected as ``+grid=NAME``. The cells run through the configured Hydra launcher
(``hydra/launcher=basic`` one after another, ``joblib`` in parallel, ``submitit_slurm`` on a
cluster), each in a task function that needs nothing from this process but what Hydra sends it.

Resuming and sharing: before launching, every cell is composed here; a cell that is already
recorded as ``ok`` is skipped, one that cannot be composed is recorded as failed, and the rest are
launched. Records are written atomically (:mod:`genbench.harness.record`), so a grid killed at any
moment and started again runs only what is missing; trained models and fitted autoencoders live
in the shared cache (:mod:`genbench.harness.artifacts`, locked per model), so cells and grids that
need the same one train it once.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from genbench.errors import UserError
from genbench.harness import record as rec

GRID_GROUP = "grid"
DEFAULT_GRID = "default"
# Hydra settings for a grid unless the command line sets them: no working-directory change (cells
# write under results_dir), no per-job .hydra/ folders or log files, and the sweep folder
# (multirun.yaml, submitit logs) inside the experiment.
HYDRA_SETTINGS = {
    "hydra/job_logging": "none",
    "hydra/hydra_logging": "none",
    "hydra.job.chdir": "false",
    "hydra.output_subdir": "null",
}
SWEEP_DIR = "hydra.sweep.dir"  # default: <results_dir>/<experiment>/.hydra/<time>
STALE_TMP_SECONDS = 3600.0  # a cell folder takes well under a second to write


@dataclass
class GridCell:
    """One job of the grid: its number (1-based), overrides and what became of it."""

    number: int
    overrides: list[str]
    cell_dir: Path | None = None
    config: dict[str, Any] | None = None
    status: str = "pending"  # pending | ran | skipped | failed
    error: str | None = None


@dataclass
class GridResult:
    """The cells of a grid after it ran, with the launcher that ran them and the reports."""

    name: str | None
    cells: list[GridCell]
    launcher: str = "basic"
    reports: list[Path] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(cell.status == status for cell in self.cells)


def _say(line: str) -> None:
    print(f"[grid] {line}", file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --------------------------------------------------------------------------- overrides


def _parse(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # hydra's OverrideParseException and friends
        raise UserError(f"bad override: {_first_line(exc)}") from None


def grid_names() -> list[str]:
    """Named grids: ``registry/grid/*.yaml``."""
    from genbench.config import group_options

    return group_options(GRID_GROUP)


def select_grid(name: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """Which named grid applies to ``genbench run --grid [NAME] [overrides]``.

    ``--grid`` and ``--grid default`` mean the default grid, unless the overrides sweep (hold a
    comma list, ``range()``...): then the grid is exactly their product. Any other NAME is
    combined with the overrides. argparse hands over ``--grid a=1,2`` as NAME ``a=1,2``; that
    is an override.
    """
    overrides = list(overrides)
    if name is not None and "=" in name:
        name, overrides = None, [name, *overrides]
    if any(o.lstrip("+~").split("=", 1)[0] == GRID_GROUP for o in overrides):
        return None, overrides  # `+grid=NAME` given as an override
    parsed = _parse(overrides)
    if name in (None, DEFAULT_GRID) and any(o.is_sweep_override() for o in parsed):
        return None, overrides
    name = name or DEFAULT_GRID
    names = grid_names()
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(f"unknown grid {name!r}; {hint}available: {', '.join(names)} "
                        f"(registry/grid/), or give comma lists: backbone=ncsnpp,uvit_tiny")
    return name, [f"+{GRID_GROUP}={name}", *overrides]


def _given(overrides: list[str]) -> set[str]:
    return {o.get_key_element().lstrip("+~") for o in _parse(overrides)}


def _with_hydra_settings(overrides: list[str]) -> list[str]:
    given = _given(overrides)
    return overrides + [f"{k}={v}" for k, v in HYDRA_SETTINGS.items() if k not in given]


def _quoted(value: str) -> str:
    """A Hydra override value that is taken literally (quotes and interpolations escaped)."""
    return "'" + value.replace("'", "\\'").replace("${", "\\${") + "'"


def sweep_dir(settings: dict[str, Any]) -> Path:
    """Hydra's sweep folder of a grid started now: ``<results>/<experiment>/.hydra/<time>``."""
    results = Path(str(settings.get("results_dir") or "results")).expanduser().absolute()
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return results / str(settings.get("experiment") or "default") / ".hydra" / stamp


# --------------------------------------------------------------------------- hydra


class _MasterConfig:
    """Hydra's multirun configuration of the grid and the loader that composes its jobs."""

    def __init__(self, overrides: list[str]) -> None:
        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from hydra.types import RunMode

        from genbench.config import _store_baselines, _store_registered_components, config_root

        _store_baselines()  # baseline=NAME and registered components work in grids too
        _store_registered_components()
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(config_root()), version_base=None,
                                       job_name="genbench"):
                self.hydra = GlobalHydra.instance().hydra
                assert self.hydra is not None
                self.cfg = self.hydra.compose_config("config", overrides=overrides,
                                                     run_mode=RunMode.MULTIRUN,
                                                     with_log_configuration=False)
        except UserError:
            raise
        except Exception as exc:  # composition errors of the fixed part: the whole grid is bad
            from genbench.config import _explain_compose_error

            raise _explain_compose_error(exc, overrides) from None
        finally:
            GlobalHydra.instance().clear()

    def job_overrides(self) -> list[list[str]]:
        """The jobs, in Hydra's basic-sweeper order: config sweeps first, command line last."""
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        sweeper = self.cfg.hydra.sweeper
        if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
            raise UserError(f"a grid needs Hydra's basic sweeper, not {sweeper._target_}; "
                            f"drop the hydra/sweeper override")
        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        task = list(OmegaConf.to_container(self.cfg.hydra.overrides.task, resolve=False))
        parser = OverridesParser.create(config_loader=self.hydra.config_loader)
        try:
            parsed = parser.parse_overrides(params + task)
            batches = BasicSweeper.split_arguments(parsed, None)
        except Exception as exc:
            raise UserError(f"bad grid: {_first_line(exc)}") from None
        return [list(job) for batch in batches for job in batch]

    def launcher_name(self) -> str:
        choice = self.cfg.hydra.runtime.choices.get("hydra/launcher")
        return str(choice or self.cfg.hydra.launcher.get("_target_", "?"))

    def task_settings(self) -> dict[str, Any]:
        """results_dir, experiment, cache_dir of the fixed part (for cells that do not compose)."""
        keys = ("results_dir", "experiment", "cache_dir")
        return {k: OmegaConf.select(self.cfg, k, default=None) for k in keys}

    def launch(self, task: Callable[[DictConfig], Any], jobs: list[list[str]]) -> list[Any]:
        from hydra._internal.callbacks import Callbacks
        from hydra.core.plugins import Plugins
        from hydra.types import HydraContext

        callbacks = Callbacks(self.cfg)
        callbacks.on_multirun_start(config=self.cfg, config_name="config")
        context = HydraContext(config_loader=self.hydra.config_loader, callbacks=callbacks)
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=context, task_function=task, config=self.cfg)
        sweep_dir = Path(str(self.cfg.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.cfg, sweep_dir / "multirun.yaml")
        returns = list(launcher.launch(jobs, initial_job_idx=0))
        callbacks.on_multirun_end(config=self.cfg, config_name="config")
        return returns


# --------------------------------------------------------------------------- the task


def _plain(cfg: DictConfig, choices: Any) -> dict[str, Any]:
    """The plain cell config, with ``presets`` as genbench.config.compose adds it."""
    from genbench.config import to_plain

    plain = to_plain(cfg)
    plain["presets"] = {k: v for k, v in dict(choices).items() if not k.startswith("hydra")}
    return plain


def run_one(cfg: dict[str, Any], *, overwrite: bool = False) -> dict[str, Any]:
    """Run a cell; any error but an interrupt is recorded as a failed cell, and returned."""
    from genbench.harness.cell import paths, record_failure, run_cell

    _, cell_dir, _ = paths(cfg)
    try:
        record = run_cell(cfg, overwrite=overwrite,
                          announce=lambda line: print(f"genbench: {line}", file=sys.stderr))
        status = "skipped" if record.get("_skipped") else "ran"
        return {"status": status, "cell_dir": str(cell_dir), "error": None}
    except Exception as exc:  # noqa: BLE001 - a failed cell must not stop the grid
        error = f"{type(exc).__name__}: {_first_line(exc)}"
        print(f"genbench: cell failed: {error}", file=sys.stderr, flush=True)
        try:
            record = record_failure(cfg, exc)
            error = record.get("error") or error
        except Exception as exc2:  # noqa: BLE001 - e.g. a results folder that cannot be written
            error += f" (and the failure could not be recorded: {exc2})"
        return {"status": "failed", "cell_dir": str(cell_dir), "error": error}


def grid_task(cfg: DictConfig, *, numbers: tuple[int, ...], total: int, cwd: str,
              overwrite: bool = False) -> dict[str, Any]:
    """Hydra's task function of a grid job; runs in the launcher's process or on a cluster node.

    ``numbers[hydra.job.num]`` is the cell's number in the whole grid (cells already recorded
    are not launched); ``cwd`` is where ``genbench run --grid`` was started (relative
    results_dir and cache_dir are relative to it).
    """
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    number = numbers[int(hydra_cfg.job.num)]
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith(f"+{GRID_GROUP}=")]
    print(f"[grid] cell {number}/{total}: {' '.join(overrides) or '(no overrides)'}",
          file=sys.stderr, flush=True)
    if os.path.isdir(cwd) and os.getcwd() != cwd:
        os.chdir(cwd)
    try:
        plain = _plain(cfg, hydra_cfg.runtime.choices)
    except UserError as exc:  # composed in the parent, so rare: an interpolation of the node
        return {"number": number, "status": "failed", "cell_dir": None, "error": str(exc)}
    return {"number": number, **run_one(plain, overwrite=overwrite)}


# --------------------------------------------------------------------------- planning


def _record_invalid(cell: GridCell, settings: dict[str, Any], error: str) -> None:
    """A cell whose configuration does not compose: a failed record named after its overrides."""
    from genbench.harness.artifacts import config_hash

    results = Path(str(settings.get("results_dir") or "results")).expanduser()
    experiment = str(settings.get("experiment") or "default")
    name = "invalid-" + config_hash({"overrides": cell.overrides}, 8)
    cell.cell_dir = results / experiment / name
    record = {
        "schema_version": rec.SCHEMA_VERSION, "experiment": experiment, "cell": name,
        "status": "failed", "error": error,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {"overrides": cell.overrides}, "metrics": dict.fromkeys(rec.METRIC_KEYS),
        "missing": {"all": "the cell's configuration did not compose"}, "artifacts": {},
    }
    rec.write_cell(cell.cell_dir, record, {}, overwrite=False)


def _compose_cell(cell: GridCell, settings: dict[str, Any]) -> None:
    from genbench.config import compose, to_plain
    from genbench.harness.cell import paths

    try:
        cell.config = to_plain(compose(cell.overrides))
        cell.cell_dir = paths(cell.config)[1]
    except Exception as exc:  # noqa: BLE001 - one bad cell does not stop the grid
        cell.status, cell.error = "failed", f"{type(exc).__name__}: {_first_line(exc)}"
        _record_invalid(cell, settings, cell.error)


def plan(cells: list[GridCell], settings: dict[str, Any], *, overwrite: bool = False,
         say: Callable[[str], None] = _say) -> list[GridCell]:
    """Compose every cell; mark recorded, duplicate and invalid ones; return those to launch."""
    total, seen, todo = len(cells), {}, []
    for cell in cells:
        _compose_cell(cell, settings)
        label = f"cell {cell.number}/{total}: {' '.join(_shown(cell.overrides))}"
        if cell.status == "failed":
            say(f"{label} - failed: {cell.error}")
        elif cell.cell_dir in seen:
            cell.status, cell.error = "skipped", f"same cell as {seen[cell.cell_dir]}"
            say(f"{label} - the same cell as cell {seen[cell.cell_dir]}")
        elif rec.is_done(cell.cell_dir) and not overwrite:
            cell.status = "skipped"
            say(f"{label} - already recorded: {cell.cell_dir}")
        else:
            todo.append(cell)
        if cell.cell_dir is not None:
            seen.setdefault(cell.cell_dir, cell.number)
    return todo


def _shown(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.startswith(f"+{GRID_GROUP}=")] or ["(no overrides)"]


def remove_stale_tmp(folder: Path, older_than_s: float = STALE_TMP_SECONDS) -> list[Path]:
    """Delete half-written cell folders (``.<cell>.<id>.tmp``/``.old``) a killed writer left."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in folder.iterdir():
        hidden = path.name.startswith(".") and path.suffix in (".tmp", ".old")
        if hidden and path.is_dir() and now - path.stat().st_mtime > older_than_s:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# --------------------------------------------------------------------------- running


def _settle(cell: GridCell, returned: Any) -> None:
    """Final status of a launched cell, from its record on disk (the truth for any launcher)."""
    value = getattr(returned, "_return_value", None)  # JobReturn: the dict, or the exception
    reported = value if isinstance(value, dict) else {}
    assert cell.cell_dir is not None
    if rec.is_done(cell.cell_dir):
        cell.status = "skipped" if reported.get("status") == "skipped" else "ran"
    else:
        cell.status = "failed"
        if rec.is_recorded(cell.cell_dir):
            cell.error = rec.read_record(cell.cell_dir).get("error")
        else:
            cell.error = reported.get("error") or (
                f"no record: the job did not finish ({value!r})" if value is not None
                else "no record: the job did not finish")


def run_grid(name: str | None, overrides: list[str], *, overwrite: bool = False,
             say: Callable[[str], None] = _say) -> GridResult:
    """Run the grid ``--grid NAME`` with ``overrides`` (see :func:`select_grid`)."""
    name, overrides = select_grid(name, overrides)
    overrides = _with_hydra_settings(overrides)
    master = _MasterConfig(overrides)
    if SWEEP_DIR not in _given(overrides):
        # composed again with the folder as an override (not set on master.cfg): launchers
        # recompose every job from the hydra overrides, and a job must see the same folder
        where = sweep_dir(master.task_settings())
        master = _MasterConfig([*overrides, f"{SWEEP_DIR}={_quoted(str(where))}"])
    jobs = master.job_overrides()
    cells = [GridCell(i + 1, job) for i, job in enumerate(jobs)]
    result = GridResult(name, cells, master.launcher_name())
    settings = master.task_settings()
    say(f"{name or 'command-line'} grid: {len(cells)} cells, launcher {result.launcher}")
    todo = plan(cells, settings, overwrite=overwrite, say=say)
    for folder in {c.cell_dir.parent for c in cells if c.cell_dir is not None}:
        remove_stale_tmp(folder)
    if todo:
        say(f"running {len(todo)} of {len(cells)} cells")
        task = functools.partial(grid_task, numbers=tuple(c.number for c in todo),
                                 total=len(cells), cwd=os.getcwd(), overwrite=overwrite)
        try:
            returns = master.launch(task, [c.overrides for c in todo])
        except Exception as exc:  # noqa: BLE001 - e.g. a cluster job that died; records tell
            say(f"the launcher stopped: {type(exc).__name__}: {exc}")
            returns = []
        for i, cell in enumerate(todo):
            _settle(cell, returns[i] if i < len(returns) else None)
    return result


# --------------------------------------------------------------------------- command line


def _reports(result: GridResult) -> list[Path]:
    from genbench.report import load_records, write_report

    written = []
    folders = {c.cell_dir.parent: c.config for c in result.cells if c.cell_dir is not None}
    for folder, cfg in sorted(folders.items(), key=lambda kv: str(kv[0])):
        if cfg is not None and not cfg.get("report", True):
            continue
        df = load_records([folder])
        if not df.empty:
            written.append(write_report(df, folder / "report.html")["html"])
    return written


def cmd_grid(name: str | None, overrides: list[str], *, overwrite: bool = False) -> int:
    """``genbench run --grid``: run, write each experiment's report, print a summary.

    Exit status 0 when every cell is recorded as ok, 1 when any cell failed (the others still
    ran), 2 when the grid itself is bad (unknown grid, a fixed override that does not compose).
    """
    from genbench.cli import _summary

    result = run_grid(name, overrides, overwrite=overwrite)
    result.reports = _reports(result)
    records = []
    for cell in result.cells:
        if cell.cell_dir is not None and rec.is_recorded(cell.cell_dir):
            records.append(rec.read_record(cell.cell_dir))
    if records:
        print(_summary(records))
    ran, skipped, failed = (result.count(s) for s in ("ran", "skipped", "failed"))
    print(f"\ngrid: {len(result.cells)} cells: {ran} ran, {skipped} skipped (already recorded),"
          f" {failed} failed")
    for cell in result.cells:
        if cell.status == "failed":
            print(f"  failed: cell {cell.number} {' '.join(_shown(cell.overrides))}: {cell.error}")
    for path in result.reports:
        print(f"report:  {path}")
    return 1 if failed else 0
