"""Grids of benchmark cells: Hydra multiruns (``genbench run --grid [NAME]``, ``genbench run -m``).

A grid is the Cartesian product of comma lists (``backbone=ncsnpp,uvit_tiny latent=pixel,wavelet``,
Hydra's basic-sweeper syntax, ``range()`` included), or a named grid ``registry/grid/NAME.yaml``:
a ``# @package _global_`` preset of config group ``grid`` whose ``hydra.sweeper.params`` hold its
sweeps, selected as ``+grid=NAME``. :func:`run_grid` starts it as Hydra's own ``--multirun``
(:func:`genbench.config.run_hydra`, i.e. ``hydra.main``); genbench's sweeper plugin
(``hydra_plugins/genbench_grid``, the default ``hydra/sweeper``) calls :func:`sweep`, which plans
the jobs and hands them to the configured launcher (``hydra/launcher=basic`` one after another,
``joblib`` in parallel, ``submitit_local``/``submitit_slurm``); every job runs the task function
:class:`~genbench.harness.task.CellTask`.

Planning, before anything is launched: every job is composed once; a cell that is already
recorded as ``ok`` is skipped, one that repeats an earlier cell is skipped, one that does not
compose is recorded as failed with its reason. Records are written atomically
(:mod:`genbench.harness.record`), so a grid killed at any moment and started again runs only what
is missing (a job that finds its cell recorded meanwhile returns at once); trained models live in
the shared cache (:mod:`genbench.harness.artifacts`, locked per model), so cells and grids that
need the same one train it once. The outcome of every cell is saved as ``grid.json`` in Hydra's
sweep folder, beside ``multirun.yaml``; :func:`cmd_grid` reads it, writes each experiment's
report and prints the summary.

Under ``torchrun`` or ``srun`` (``torchrun --nproc_per_node=N -m genbench run --grid ...``) every
process runs the grid: the cells run one after another, each on all N processes (data-parallel,
as one ``genbench run`` would), with the basic launcher only. The processes join their group
before the sweep, take rank 0's sweep folder, and rank 0 alone plans aloud, records cells that do
not compose, saves ``grid.json``, writes the reports and prints the summary; the others follow.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from genbench import _io
from genbench.errors import UserError
from genbench.harness import record as rec

GRID_GROUP = "grid"
DEFAULT_GRID = "default"
OUTCOME = "grid.json"  # in Hydra's sweep folder
SWEEP_DIR = "hydra.sweep.dir"  # registry/config.yaml: <results>/<experiment>/.hydra/<time>
STALE_TMP_SECONDS = 3600.0  # an age past which nothing is a live write (writers lock theirs)
NAME_SETTINGS = ("experiment", "cell")  # plain folder names (record.check_name)


@dataclass
class GridCell:
    """One job of the grid: its number (1-based), overrides and what became of it."""

    number: int
    overrides: list[str]
    cell_dir: Path | None = None
    status: str = "pending"  # pending | ran | skipped | failed
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "cell_dir": None if self.cell_dir is None else str(self.cell_dir)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GridCell:
        cell_dir = None if data.get("cell_dir") is None else Path(data["cell_dir"])
        return cls(int(data["number"]), list(data["overrides"]), cell_dir,
                   str(data["status"]), data.get("error"))


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
    if _is_main():  # under torchrun/srun: rank 0 speaks for the grid
        print(f"[grid] {line}", file=sys.stderr, flush=True)


def _rank_note() -> str:
    """`` (rank R of W)`` in a launcher's group of more than one process, else nothing."""
    from genbench.distributed import launch_rank

    rank, world = launch_rank()
    return f" (rank {rank} of {world})" if world > 1 else ""


def _is_main() -> bool:
    """Whether this process is rank 0 of its launcher's group (or in none): the one that writes
    the grid's files and speaks."""
    from genbench.distributed import launch_rank

    return launch_rank()[0] == 0


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _shown(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.startswith(f"+{GRID_GROUP}=")] or ["(no overrides)"]


def shared(cells: list[GridCell]) -> list[str]:
    """The overrides every cell of the grid has (in the first cell's order): said once."""
    if len(cells) < 2:
        return []
    common = set(cells[0].overrides).intersection(*(c.overrides for c in cells[1:]))
    return [o for o in cells[0].overrides if o in common]


def varying(cells: list[GridCell]) -> dict[int, str]:
    """What sets each cell apart, by cell number: its overrides that not every cell has
    (``latent=wavelet sampler.steps=4``); a grid of one cell shows its overrides."""
    common = set(shared(cells))
    return {c.number: " ".join(_shown([o for o in c.overrides if o not in common]))
            for c in cells}


# --------------------------------------------------------------------------- choosing the grid


def _parse(overrides: list[str], config_loader: Any = None) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create(config_loader=config_loader).parse_overrides(overrides)
    except Exception as exc:  # hydra's OverrideParseException and friends
        raise UserError(f"bad override: {_first_line(exc)}") from None


def sweeps(overrides: list[str]) -> list[str]:
    """The overrides among ``overrides`` that sweep (a comma list, ``range()``, ``choice()``)."""
    return [o.input_line for o in _parse(overrides) if o.is_sweep_override()]


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


# --------------------------------------------------------------------------- planning


def expand(params: Mapping[str, Any] | None, arguments: list[str],
           config_loader: Any = None) -> list[list[str]]:
    """The jobs, in Hydra's basic-sweeper order: the product of the config's sweeps
    (``hydra.sweeper.params``) and then the command line's, each job a list of overrides."""
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    choices = []
    for override in _parse(lines, config_loader):
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices.append([f"{key}={override.get_value_element_as_str()}"])
        elif override.is_discrete_sweep():
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            raise UserError(f"a grid sweeps lists and ranges, not intervals: {override.input_line}")
    return [list(job) for job in itertools.product(*choices)]


def _record_invalid(cell: GridCell, settings: Mapping[str, Any], error: str) -> None:
    """A cell whose configuration does not compose: a failed record named after its overrides."""
    results = Path(str(settings.get("results_dir") or "results")).expanduser()
    experiment = rec.check_name(settings.get("experiment") or "default", "experiment")
    name = "invalid-" + _io.json_hash({"overrides": cell.overrides}, 8)
    cell.cell_dir = results / experiment / name
    record = rec.failed_record(experiment, name, {"overrides": cell.overrides}, error,
                               "the cell's configuration did not compose")
    rec.write_cell(cell.cell_dir, record, {}, overwrite=False)


def plan(cells: list[GridCell], compose_cell: Callable[[list[str]], dict[str, Any]],
         settings: Mapping[str, Any], *, overwrite: bool = False,
         say: Callable[[str], None] = _say) -> list[GridCell]:
    """Compose every cell; mark recorded, repeated and invalid ones; return those to launch.

    ``compose_cell(overrides)`` is the cell's plain configuration; ``settings`` (the grid's
    ``results_dir`` and ``experiment``) place the record of a cell that does not compose.
    """
    from genbench.harness.cell import paths

    total, seen, todo, labels = len(cells), {}, [], varying(cells)
    for cell in cells:
        label = f"cell {cell.number}/{total}: {labels[cell.number]}"
        try:
            cell.cell_dir = paths(compose_cell(cell.overrides))[1]
        except Exception as exc:  # noqa: BLE001 - one bad cell does not stop the grid
            cell.status, cell.error = "failed", f"{type(exc).__name__}: {_first_line(exc)}"
            if _is_main():
                _record_invalid(cell, settings, cell.error)
            say(f"{label} - failed: {cell.error}")
            continue
        if cell.cell_dir in seen:
            cell.status, cell.error = "skipped", f"same cell as {seen[cell.cell_dir]}"
            say(f"{label} - the same cell as cell {seen[cell.cell_dir]}")
        elif rec.is_done(cell.cell_dir) and not overwrite:
            cell.status = "skipped"
            say(f"{label} - already recorded: {cell.cell_dir}")
        else:
            todo.append(cell)
        seen.setdefault(cell.cell_dir, cell.number)
    return todo


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class NumberedJob:
    """The launched task: says which cell of the grid it is, then runs ``task`` on it.

    ``numbers[hydra.job.num]`` is the cell's number in the whole grid (planned-out cells are
    not launched) and ``labels`` the same job's :func:`varying` overrides; ``cwd`` is where the
    grid was started (relative ``results_dir`` and ``cache_dir`` are relative to it, wherever
    the launcher runs the job). The cell's progress bars carry its name
    (:func:`genbench.progress.name_cell`), as whole lines when ``parallel`` (the launcher runs
    cells beside each other: joblib, submitit).
    """

    task: Callable[[DictConfig], Any]
    numbers: tuple[int, ...]
    total: int
    cwd: str
    labels: tuple[str, ...] = ()
    parallel: bool = False

    def __call__(self, cfg: DictConfig) -> Any:
        from hydra.core.hydra_config import HydraConfig

        from genbench.progress import cell_label, name_cell

        job = HydraConfig.get()
        index = int(job.job.num)
        number = self.numbers[index]
        label = (self.labels[index] if index < len(self.labels)
                 else " ".join(_shown(list(job.overrides.task))))
        # every process of a distributed cell says it (submitit keeps a log per task)
        print(f"[grid] cell {number}/{self.total}{_rank_note()}: {label}", file=sys.stderr,
              flush=True)
        if os.path.isdir(self.cwd) and os.getcwd() != self.cwd:
            os.chdir(self.cwd)
        name_cell(cell_label(number, self.total, label), lines=self.parallel)
        try:
            return self.task(cfg)
        finally:
            name_cell(None)


def _settle(cell: GridCell, returned: Any) -> None:
    """Final status of a launched cell, from its record on disk (the truth for any launcher)."""
    try:  # a JobReturn: the task's dict, or the exception it raised
        value = None if returned is None else returned.return_value
    except Exception as exc:  # noqa: BLE001 - the job's own error
        value = exc
    reported = value if isinstance(value, dict) else {}
    assert cell.cell_dir is not None
    if rec.is_done(cell.cell_dir):
        cell.status = "skipped" if reported.get("status") == "skipped" else "ran"
        return
    cell.status = "failed"
    if rec.is_recorded(cell.cell_dir):
        cell.error = rec.read_record(cell.cell_dir).get("error")
    else:
        cell.error = reported.get("error") or "no record: the job did not finish" + (
            f" ({value!r})" if value is not None else "")


def _launch(config: DictConfig, hydra_context: Any, task: Callable[[DictConfig], Any],
            cells: list[GridCell], total: int, labels: Mapping[int, str]) -> list[Any]:
    """Run ``cells`` through the configured launcher (the Sweeper plugin API, as Hydra's own
    sweepers use it); returns the launcher's JobReturns, [] when it broke down."""
    from hydra.core.plugins import Plugins

    launcher_name = str(config.hydra.runtime.choices.get("hydra/launcher") or "basic")
    job = NumberedJob(task, tuple(c.number for c in cells), total, os.getcwd(),
                      tuple(labels[c.number] for c in cells), parallel=launcher_name != "basic")
    launcher = Plugins.instance().instantiate_launcher(
        hydra_context=hydra_context, task_function=job, config=config)
    try:
        return list(launcher.launch([c.overrides for c in cells], initial_job_idx=0))
    except Exception as exc:  # noqa: BLE001 - e.g. a cluster job that died; records tell
        _say(f"the launcher stopped: {type(exc).__name__}: {exc}")
        return []


def sweep(config: DictConfig, hydra_context: Any, task: Callable[[DictConfig], Any],
          arguments: list[str], *, params: Mapping[str, Any] | None = None,
          overwrite: bool = False) -> GridResult:
    """The grid of a Hydra multirun: plan the jobs, launch those left, save the outcome.

    Called by genbench's sweeper plugin with what Hydra gives a sweeper: the multirun
    ``config``, its ``hydra_context`` (config loader, callbacks), the ``task`` function and the
    command line's overrides (``arguments``).
    """
    from genbench.config import choices, explain_compose_error

    loader = hydra_context.config_loader
    choice = config.hydra.runtime.choices
    name = choice.get(GRID_GROUP)
    cells = [GridCell(i + 1, job) for i, job in enumerate(expand(params, arguments, loader))]
    result = GridResult(name, cells, str(choice.get("hydra/launcher") or "?"))
    _say(f"{name or 'command-line'} grid: {len(cells)} cells, launcher {result.launcher}")
    common = [o for o in shared(cells) if not o.startswith(f"+{GRID_GROUP}=")]
    if common:
        _say(f"every cell: {' '.join(common)}")

    def compose_cell(overrides: list[str]) -> dict[str, Any]:
        from genbench.harness.task import cell_config

        try:
            job = loader.load_sweep_config(config, list(overrides))
        except Exception as exc:  # hydra raises several kinds; explained as for one run
            raise explain_compose_error(exc, overrides) from None
        return cell_config(OmegaConf.masked_copy(job, [k for k in job if k != "hydra"]),
                           presets=choices(job.hydra))

    settings = {k: OmegaConf.select(config, k, default=None) for k in ("results_dir",
                                                                       "experiment")}
    todo = plan(cells, compose_cell, settings, overwrite=overwrite)
    main = _is_main()
    sweep_dir = Path(str(config.hydra.sweep.dir))
    if main:
        for folder in {c.cell_dir.parent for c in cells if c.cell_dir is not None}:
            _io.remove_stale_temporaries(folder)  # a live worker's temporaries are locked: kept
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
    if todo:
        _say(f"running {len(todo)} of {len(cells)} cells")
        returns = _launch(config, hydra_context, task, todo, len(cells), varying(cells))
        for i, cell in enumerate(todo):
            _settle(cell, returns[i] if i < len(returns) else None)
    if main:
        _io.atomic_write_json(sweep_dir / OUTCOME, {
            "name": name, "launcher": result.launcher,
            "cells": [cell.to_json() for cell in cells]})
    return result


# --------------------------------------------------------------------------- command line


def _sweep_dir(fixed: DictConfig) -> str:
    """The grid's sweep folder, resolved once (its ``${now:}`` included) and made absolute."""
    return str(Path(str(OmegaConf.select(fixed, SWEEP_DIR))).expanduser().absolute())


def _quoted(value: str) -> str:
    """A Hydra override value that is taken literally (quotes and interpolations escaped)."""
    return "'" + value.replace("'", "\\'").replace("${", "\\${") + "'"


def run_grid(name: str | None, overrides: list[str], *,
             overwrite: bool = False) -> tuple[GridResult | None, DictConfig]:
    """Run the grid of ``overrides`` (``+grid=NAME`` for a named one) as a Hydra multirun.

    The part of the configuration that does not sweep is composed first: a bad one is a user
    error before anything runs, and it gives the sweep folder, pinned for every job.
    Returns the outcome (None on the ranks other than 0 under torchrun/srun, which neither
    read nor print it) and that fixed configuration.
    """
    from genbench.config import compose, run_hydra
    from genbench.harness.task import CellTask

    parsed = _parse(overrides)
    for override in parsed:  # every experiment/cell a job would write to: plain names
        if override.get_key_element().lstrip("+~") in NAME_SETTINGS:
            values = (list(override.sweep_string_iterator()) if override.is_discrete_sweep()
                      else [override.get_value_element_as_str()])
            for value in values:
                if value not in ("", "null"):
                    rec.check_name(value, override.get_key_element().lstrip("+~"))
    fixed_overrides = [o.input_line for o in parsed if not o.is_sweep_override()]
    try:
        fixed = compose(fixed_overrides, with_hydra=True)
    except UserError as exc:
        raise explain_fixed(overrides, fixed_overrides, exc) from None
    for key in NAME_SETTINGS:  # a named grid's own settings
        if fixed.get(key) not in (None, ""):
            rec.check_name(fixed.get(key), key)
    sweeper = fixed.hydra.runtime.choices.get("hydra/sweeper")
    if sweeper != "genbench":  # another sweeper neither plans (resume) nor saves grid.json
        raise UserError(f"a grid needs genbench's sweeper, not {sweeper}; drop the hydra/sweeper"
                        f" override")
    given = {o.get_key_element() for o in _parse(overrides)}
    where = Path(_sweep_dir(fixed))
    if _join_group(fixed):  # torchrun/srun: every rank uses rank 0's folder (its ${now:})
        from genbench.distributed import broadcast_json

        where = Path(broadcast_json(str(where)))
    extra = [] if SWEEP_DIR in given else [f"{SWEEP_DIR}={_quoted(str(where))}"]
    if overwrite:
        extra.append("hydra.sweeper.overwrite=true")
    run_hydra(CellTask(overwrite=overwrite), ["--multirun", *overrides, *extra])
    if not _is_main():
        return None, fixed
    outcome = json.loads((where / OUTCOME).read_text())
    cells = [GridCell.from_json(c) for c in outcome["cells"]]
    return GridResult(name or outcome["name"], cells, outcome["launcher"]), fixed


def _join_group(fixed: DictConfig) -> bool:
    """Under torchrun/srun (more than one process): check that the cells run in these processes
    (the basic launcher) and join the group now, before the sweep; False outside one."""
    from genbench.distributed import init, launch_env
    from genbench.harness.system import resolve_device

    env = launch_env()
    if env is None or env[1] == 1:
        return False
    launcher = str(fixed.hydra.runtime.choices.get("hydra/launcher") or "basic")
    if launcher != "basic":
        raise UserError(f"under torchrun/srun ({env[1]} processes) a grid runs its cells one "
                        f"after another, each on all the processes: drop hydra/launcher="
                        f"{launcher}, or start the grid without torchrun and give the launcher "
                        f"the processes (hydra.launcher.tasks_per_node)")
    init(resolve_device(str(fixed.get("device") or "auto")).type)
    return True


DIAGNOSED_CELLS = 32  # cells composed to say which reject a fixed override (bad input only)


def _rejected_key(error: str, fixed: list[str]) -> str | None:
    """The fixed override a composition error names (Hydra quotes the key: ``Could not
    override 'latent.image_channels'``)."""
    import re

    quoted = set(re.findall(r"'([^'\s]+)'", error))
    for override in fixed:
        if override.lstrip("+~").split("=", 1)[0] in quoted:
            return override
    return None


def explain_fixed(overrides: list[str], fixed: list[str], exc: UserError) -> UserError:
    """Say why the grid's fixed part does not compose when the reason is a fixed override that
    not every cell takes: Hydra composes the fixed overrides with the default presets before it
    sweeps (``latent=pixel,kl_tiny latent.image_channels=3`` fails on the default latent
    pixel, which has no such key, whatever the cells are). Each cell (the first
    :data:`DIAGNOSED_CELLS`) is composed to tell which take the key; the answer names them and
    how to write such a grid. Other errors are returned as they are."""
    from genbench.config import compose

    key = _rejected_key(str(exc), fixed)
    jobs = expand(None, overrides)
    if key is None or len(jobs) < 2:
        return exc
    cells = [GridCell(i + 1, job) for i, job in enumerate(jobs[:DIAGNOSED_CELLS])]
    labels = varying(cells)
    takes, rejects = [], []
    for cell in cells:
        try:
            compose(cell.overrides)
            takes.append(cell)
        except UserError as cell_exc:
            (rejects if _rejected_key(str(cell_exc), [key]) else takes).append(cell)

    def name(group: list[GridCell]) -> str:
        return "; ".join(f"cell {c.number} ({labels[c.number]})" for c in group)

    bare = key.lstrip("+~")
    path, value = bare.split("=", 1)
    if not takes:
        return exc  # no cell takes it: the key is wrong everywhere, as Hydra said
    if not rejects:
        return UserError(
            f"every cell takes {bare}, but Hydra first composes the fixed overrides with the "
            f"default presets, which do not: write it ++{bare} (set where the key is, added "
            f"where it is not)")
    group, _, leaf = path.rpartition(".")
    group = group or "GROUP"

    def chosen(group_cells: list[GridCell]) -> list[str]:
        return list(dict.fromkeys(o.split("=", 1)[1] for c in group_cells for o in c.overrides
                                  if o.split("=", 1)[0] == group))

    base = (chosen(takes) or ["PRESET"])[0]
    preset_sweep = f"{group}={','.join(chosen(rejects)) or '...'},NAME"
    example = (f"`# @package _global_`, `defaults: [{{override /{group}: {base}}}]`, "
               f"`{group}: {{{leaf or path}: {value}}}`")
    return UserError(
        f"{bare} does not apply to every cell: {name(rejects)} "
        f"{'rejects' if len(rejects) == 1 else 'reject'} it, {name(takes)} "
        f"{'takes' if len(takes) == 1 else 'take'} it. Give the cells their own settings: a "
        f"preset that holds it (registry/{group}/NAME.yaml: `defaults: [{base}, _self_]`, "
        f"`{leaf or path}: {value}`) swept as {preset_sweep}, or a named grid: a file per cell in "
        f"registry/grid/cell/ ({example}) "
        f"and registry/grid/GRID.yaml sweeping them (`hydra: {{sweeper: {{params: "
        f"{{+grid/cell: A,B}}}}}}`), as registry/grid/default.yaml does; then genbench run "
        f"--grid GRID")


def _write_reports(result: GridResult) -> list[Path]:
    from genbench.report.experiment import write_experiment_report

    written = []
    for folder in sorted({c.cell_dir.parent for c in result.cells if c.cell_dir is not None}):
        paths = write_experiment_report([folder], folder / "report.html")
        if paths is not None:
            written.append(paths["html"])
    return written


def print_outcome(result: GridResult) -> None:
    """The summary table of the recorded cells, the counts, the failures and the reports."""
    from genbench.report.experiment import summary_text

    records = [rec.read_record(c.cell_dir) for c in result.cells
               if c.cell_dir is not None and rec.is_recorded(c.cell_dir)]
    if records:
        print(summary_text(records))
    ran, skipped, failed = (result.count(s) for s in ("ran", "skipped", "failed"))
    print(f"\ngrid: {len(result.cells)} cells: {ran} ran, {skipped} skipped (already recorded),"
          f" {failed} failed")
    labels = varying(result.cells)
    for cell in result.cells:
        if cell.status == "failed":
            print(f"  failed: cell {cell.number} {labels[cell.number]}: {cell.error}")
    for path in result.reports:
        print(f"report:  {path}")


def cmd_grid(name: str | None, overrides: list[str], *, overwrite: bool = False) -> int:
    """``genbench run --grid`` / ``genbench run -m``: run, write each experiment's report, print.

    Exit status 0 when every cell is recorded as ok, 1 when any cell failed (the others still
    ran), 2 when the grid itself is bad (unknown grid, a fixed override that does not compose).
    """
    result, fixed = run_grid(name, overrides, overwrite=overwrite)
    if result is None:  # a rank other than 0 of torchrun/srun: rank 0 reports
        return 0
    if fixed.get("report", True):
        result.reports = _write_reports(result)
    print_outcome(result)
    return 1 if result.count("failed") else 0

