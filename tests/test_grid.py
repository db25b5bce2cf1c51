"""Grids (`genbench run --grid`): every cell recorded once, resumable after a kill, failures
recorded, any Hydra launcher (basic, joblib, submitit's local executor).

The cells are tiny DDIM cells on the 360 test digits: they all share one eps model (only the
sampling steps differ), which the module-wide cache trains once.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, genbench_command

from genbench.errors import UserError
from genbench.harness import grid
from genbench.harness import record as rec

TINY_GRID = [*TINY, "dataset.split=test", "sampler=ddim"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for the module: the eps model, classifier and reference statistics, once."""
    return tmp_path_factory.mktemp("grid-cache")


def _grid_args(results: Path, cache: Path, *sweeps: str) -> list[str]:
    return ["run", "--grid", *TINY_GRID, *sweeps, f"results_dir={results}", f"cache_dir={cache}"]


def _records(experiment: Path) -> dict[str, dict]:
    """The complete records (pathlib's glob also sees a writer's hidden temporary folder)."""
    paths = [p for p in experiment.glob("*/result.json") if not p.parent.name.startswith(".")]
    return {p.parent.name: json.loads(p.read_text()) for p in paths}


def _leftovers(experiment: Path) -> list[str]:
    """Half-written cell folders (the hidden .hydra sweep folder is Hydra's, not a cell)."""
    return [p.name for p in experiment.iterdir() if p.suffix in (".tmp", ".old")]


# --------------------------------------------------------------------------- choosing the grid


def test_grid_alone_is_the_default_grid_and_comma_lists_are_their_own_grid():
    assert grid.select_grid("default", []) == ("default", ["+grid=default"])
    assert grid.select_grid("default", ["seed=1"]) == ("default", ["+grid=default", "seed=1"])
    # argparse hands `--grid a=1,2` over as the name
    assert grid.select_grid("sampler.steps=1,2", ["seed=3"]) == (None, ["sampler.steps=1,2",
                                                                        "seed=3"])
    assert grid.select_grid("default", ["latent=pixel,wavelet"]) == (None, ["latent=pixel,wavelet"])
    assert grid.select_grid(None, ["+grid=default", "seed=0,1"]) == (None, ["+grid=default",
                                                                           "seed=0,1"])
    with pytest.raises(UserError, match="unknown grid 'defualt'; did you mean default"):
        grid.select_grid("defualt", [])


def _compose_cell(overrides: list[str]) -> dict:
    from genbench.config import compose
    from genbench.harness.task import cell_config

    return cell_config(compose(overrides))


def test_default_grid_shows_the_trade_off_on_the_digits():
    from genbench.config import compose

    _, overrides = grid.select_grid("default", [])
    fixed = compose(overrides, with_hydra=True)
    assert fixed.hydra.runtime.choices["hydra/sweeper"] == "genbench"
    assert fixed.hydra.runtime.choices["hydra/launcher"] == "basic"
    jobs = grid.expand(fixed.hydra.sweeper.params, overrides)
    cells = [grid.GridCell(i + 1, job) for i, job in enumerate(jobs)]
    assert grid.plan(cells, _compose_cell, fixed, say=lambda line: None) == cells
    configs = [_compose_cell(c.overrides) for c in cells]
    assert len(cells) >= 4 and all(c.status == "pending" for c in cells)
    assert len({c.cell_dir for c in cells}) == len(cells)
    assert {cfg["dataset"]["name"] for cfg in configs} == {"digits"}
    assert len({cfg["latent"]["name"] for cfg in configs}) >= 2
    assert len({cfg["sampler"]["name"] for cfg in configs}) >= 2
    assert len({cfg["sampler"]["steps"] for cfg in configs}) >= 3


def test_jobs_are_the_basic_sweeper_product_config_sweeps_first():
    jobs = grid.expand({"seed": "0,1"}, ["sampler.steps=2,3", "+grid=x", "device=cpu"])
    assert jobs == [["seed=0", "sampler.steps=2", "+grid=x", "device=cpu"],
                    ["seed=0", "sampler.steps=3", "+grid=x", "device=cpu"],
                    ["seed=1", "sampler.steps=2", "+grid=x", "device=cpu"],
                    ["seed=1", "sampler.steps=3", "+grid=x", "device=cpu"]]
    assert grid.expand(None, ["seed=range(2)"]) == [["seed=0"], ["seed=1"]]
    with pytest.raises(UserError, match="not intervals"):
        grid.expand(None, ["seed=interval(0,1)"])


def test_planning_skips_recorded_and_repeated_cells_and_records_invalid_ones(tmp_path):
    settings = {"results_dir": str(tmp_path), "experiment": "exp"}
    recorded = tmp_path / "exp" / "cell-b"
    rec.write_cell(recorded, {"cell": "cell-b", "status": "ok"}, {})

    def compose_cell(overrides: list[str]) -> dict:
        (override,) = overrides
        if override == "x=bad":
            raise UserError("unknown x 'bad'")
        return {"results_dir": str(tmp_path), "experiment": "exp", "cell": override[2:]}

    cells = [grid.GridCell(i + 1, [o]) for i, o in
             enumerate(["x=cell-a", "x=cell-b", "x=cell-a", "x=bad", "x=cell-c"])]
    said = []
    todo = grid.plan(cells, compose_cell, settings, say=said.append)
    assert [c.number for c in todo] == [1, 5]
    assert [c.status for c in cells] == ["pending", "skipped", "skipped", "failed", "pending"]
    assert cells[2].error == "same cell as 1" and "the same cell as cell 1" in said[1]
    assert "already recorded" in said[0] and said[2].startswith("cell 4/5: x=bad - failed")
    invalid = rec.read_record(cells[3].cell_dir)
    assert invalid["status"] == "failed" and invalid["error"] == "UserError: unknown x 'bad'"
    assert invalid["config"] == {"overrides": ["x=bad"]} and invalid["metrics"]["fid"] is None
    assert cells[3].cell_dir.name.startswith("invalid-")
    # --overwrite launches recorded cells again, never a repeated one
    again = [grid.GridCell(i + 1, [o]) for i, o in enumerate(["x=cell-b", "x=cell-b"])]
    assert grid.plan(again, compose_cell, settings, overwrite=True, say=said.append) == again[:1]


@pytest.mark.slow
def test_default_grid_runs_in_tiny_form(run_cli, tmp_path, cache_dir):
    results = tmp_path / "results"
    # the grid's own budget (macs:3.65e12) is sized for ncsnpp_digits; a tiny one here
    result = run_cli("run", "--grid", *TINY, "dataset.split=test", f"results_dir={results}",
                     f"cache_dir={cache_dir}", "train.budget=macs:5e9")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[grid] cell 6/6" in result.stderr and "6 cells: 6 ran" in result.stdout
    records = _records(results / "grid")
    assert len(records) == 6 and all(r["status"] == "ok" for r in records.values())
    # three models: DDGAN in pixel and in wavelet space, one eps model for DDIM and DDPM
    keys = {r["training"]["key"] for r in records.values()}
    assert len(keys) == 3
    # equal training compute: each model stopped on the first step at or past the budget
    for record in records.values():
        training = record["training"]
        macs, cost = training["consumed"]["macs"], training["step_macs"]
        assert training["budget"] == "macs:5e+09"
        assert 5e9 <= macs < 5e9 + cost["base"] + cost["extra"]
    assert (results / "grid" / "report.html").is_file()


def test_named_grids_are_listed(run_cli):
    listed = run_cli("list", "grid")
    assert listed.returncode == 0, listed.stderr
    header, line = listed.stdout.splitlines()
    assert header.split() == ["kind", "name", "component", "from", "description"]
    assert line.split()[:4] == ["grid", "default", "-", "registry/grid/"]
    assert "trade-off" in line and "@package" not in line


def test_unknown_grid_is_a_user_error(run_cli):
    result = run_cli("run", "--grid", "no_such_grid")
    assert result.returncode == 2, result.stderr
    assert "unknown grid 'no_such_grid'" in result.stderr
    other = run_cli("run", "-m", "seed=1,2", "hydra/sweeper=basic")
    assert other.returncode == 2 and "a grid needs genbench's sweeper" in other.stderr


def test_cells_are_labelled_by_what_varies():
    cells = [grid.GridCell(i + 1, job) for i, job in enumerate(grid.expand(
        None, ["train=tiny", "latent=pixel,wavelet", "+grid=x", "sampler.steps=2,4"]))]
    assert grid.shared(cells) == ["train=tiny", "+grid=x"]
    assert grid.varying(cells) == {1: "latent=pixel sampler.steps=2",
                                   2: "latent=pixel sampler.steps=4",
                                   3: "latent=wavelet sampler.steps=2",
                                   4: "latent=wavelet sampler.steps=4"}
    one = [grid.GridCell(1, ["train=tiny", "seed=3"])]
    assert grid.varying(one) == {1: "train=tiny seed=3"}


def test_a_named_cell_prefixes_every_bar_and_parallel_bars_write_lines():
    import io

    from genbench.progress import bar, cell_label, name_cell

    assert cell_label(2, 4, "sampler=lddgan") == "cell 2/4 sampler=lddgan"
    assert cell_label(2, 4, "x" * 41) == "cell 2/4"  # a long label: the number alone
    out = io.StringIO()
    name_cell("cell 2/4 sampler=lddgan", lines=True)
    try:
        with bar(total=3, desc="sample", file=out) as progress:
            for _ in range(3):
                progress.update()
    finally:
        name_cell(None)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and lines
    assert all(line.startswith("cell 2/4 sampler=lddgan | sample") for line in lines)
    assert "3/3" in lines[-1]
    plain = io.StringIO()
    with bar(total=1, desc="sample", file=plain) as progress:  # outside a grid: tqdm's own
        progress.update()
    assert plain.getvalue().lstrip("\r").startswith("sample:") and "\r" in plain.getvalue()


def _without_launcher_plugins(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """genbench as if hydra-joblib-launcher and hydra-submitit-launcher were not installed:
    Hydra finds plugins in the ``hydra_plugins`` namespace package, here cut to genbench's."""
    script = ("import os, sys\n"
              "import hydra_plugins\n"
              "hydra_plugins.__path__ = [p for p in hydra_plugins.__path__ if not any(\n"
              "    os.path.isdir(os.path.join(p, n)) for n in\n"
              "    ('hydra_joblib_launcher', 'hydra_submitit_launcher'))]\n"
              "from genbench.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", script, *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("launcher, extra, sweep", [
    ("joblib", "joblib", ["sampler=ddgan,lddgan"]),  # issue 14: "unknown sampler 'ddgan,lddgan'"
    ("submitit_slurm", "slurm", ["train.seed=1,2"]),  # "Could not find ..." and an empty list
], ids=["joblib-component-sweep", "slurm-value-sweep"])
def test_a_launcher_that_is_not_installed_says_what_to_install(tmp_path, launcher, extra, sweep):
    proc = _without_launcher_plugins(["run", "--grid", f"hydra/launcher={launcher}", *TINY_GRID,
                                      *sweep], tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.splitlines()
    assert f'pip install -e ".[{extra}]"' in line, line
    assert "unknown sampler" not in line and "Could not find" not in line
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written


def test_a_fixed_override_that_not_every_cell_takes_says_which_and_how(tmp_path, monkeypatch,
                                                                       capsys):
    from genbench.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--grid", *TINY, "latent=pixel,kl_tiny", "latent.image_channels=3"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert ("latent.image_channels=3 does not apply to every cell: cell 1 (latent=pixel) rejects "
            "it, cell 2 (latent=kl_tiny) takes it") in line
    assert "registry/grid/cell/" in line and "genbench run --grid GRID" in line
    assert "`defaults: [kl_tiny, _self_]`" in line and "latent=pixel,NAME" in line
    assert "unknown latent" not in line and "+latent.image_channels" not in line
    # every cell takes the key, the default preset does not: Hydra's ++ is the way
    assert main(["run", "--grid", *TINY, "sampler=ddim,ddpm", "sampler.spacing=linspace"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "every cell takes sampler.spacing=linspace" in line
    assert "++sampler.spacing=linspace" in line
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- running


def test_grid_records_every_cell_and_a_rerun_records_nothing(run_cli, tmp_path, cache_dir):
    results = tmp_path / "results"
    first = run_cli(*_grid_args(results, cache_dir, "sampler.steps=2,3"))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "[grid] cell 1/2" in first.stderr and "[grid] cell 2/2" in first.stderr
    # each cell line shows what varies; what every cell shares is said once
    assert "[grid] cell 1/2: sampler.steps=2\n" in first.stderr
    assert "[grid] cell 2/2: sampler.steps=3\n" in first.stderr
    assert first.stderr.count("[grid] every cell: backbone=ncsnpp_tiny train=tiny") == 1
    assert "2 cells: 2 ran, 0 skipped" in first.stdout
    experiment = results / "default"
    records = _records(experiment)
    assert sorted(r["sampler"]["steps"] for r in records.values()) == [2, 3]
    assert all(r["status"] == "ok" for r in records.values())
    assert (experiment / "report.html").is_file()
    stamps = {name: (experiment / name / "result.json").stat().st_mtime_ns for name in records}
    models = sorted((cache_dir / "models").iterdir())

    # Hydra's own multirun flag runs the same grid: both cells are found recorded
    again = run_cli("run", "-m", *TINY_GRID, "sampler.steps=2,3", f"results_dir={results}",
                    f"cache_dir={cache_dir}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 cells: 0 ran, 2 skipped" in again.stdout
    assert again.stderr.count("already recorded") == 2
    assert {name: (experiment / name / "result.json").stat().st_mtime_ns
            for name in _records(experiment)} == stamps
    assert sorted((cache_dir / "models").iterdir()) == models  # nothing trained again
    # Hydra's sweep folders: the multirun config and the outcome of every cell
    (first_sweep, second_sweep) = sorted((experiment / ".hydra").iterdir())
    assert (first_sweep / "multirun.yaml").is_file()
    outcome = json.loads((second_sweep / "grid.json").read_text())
    assert [c["status"] for c in outcome["cells"]] == ["skipped", "skipped"]


def test_killed_grid_finishes_only_what_is_missing(tmp_path, cache_dir, run_cli):
    results = tmp_path / "results"
    experiment = results / "default"
    args = _grid_args(results, cache_dir, "sampler.steps=2,3,4,5")
    proc = subprocess.Popen([*genbench_command(), *args], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not _records(experiment) and proc.poll() is None:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    recorded = len(_records(experiment))
    assert 1 <= recorded < 4, "the grid was not killed midway"

    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"4 cells: {4 - recorded} ran, {recorded} skipped" in rerun.stdout
    records = _records(experiment)
    assert sorted(r["sampler"]["steps"] for r in records.values()) == [2, 3, 4, 5]
    assert all(r["status"] == "ok" for r in records.values())
    assert _leftovers(experiment) == []


def test_failed_cells_are_recorded_and_the_grid_goes_on(run_cli, tmp_path, cache_dir):
    results = tmp_path / "results"
    result = run_cli(*_grid_args(results, cache_dir, "sampler.steps=0,2",
                                 "backbone=ncsnpp_tiny,no_such_net"))
    assert result.returncode == 1, result.stderr[-3000:]  # 1: some cells failed
    assert "4 cells: 1 ran, 0 skipped (already recorded), 3 failed" in result.stdout
    records = list(_records(results / "default").values())
    assert sorted(r["status"] for r in records) == ["failed", "failed", "failed", "ok"]
    errors = " ".join(r["error"] for r in records if r["status"] == "failed")
    assert "sampler.steps=0" in errors and "unknown backbone 'no_such_net'" in errors
    assert (results / "default" / "report.html").is_file()


def test_joblib_launcher_runs_the_cells_in_worker_processes(run_cli, tmp_path, cache_dir):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    results = tmp_path / "results"
    result = run_cli(*_grid_args(results, cache_dir, "sampler.steps=6,7"),
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "progress=true",
                     env={"OMP_NUM_THREADS": "1"})  # two workers on two cores
    assert result.returncode == 0, result.stderr[-3000:]
    assert "launcher joblib" in result.stderr
    # the workers' progress bars: whole lines (no carriage-return redraws), each naming its cell
    assert "\r" not in result.stderr
    bars = [line for line in result.stderr.splitlines() if "it/s]" in line or "img/s]" in line
            or "batch/s]" in line or "step/s]" in line or "img]" in line or "batch]" in line]
    assert bars, result.stderr[-3000:]
    assert all(line.startswith(("cell 1/2 sampler.steps=6 | ", "cell 2/2 sampler.steps=7 | "))
               for line in bars), bars
    assert any(line.startswith("cell 1/2") for line in bars)
    assert any(line.startswith("cell 2/2") for line in bars)
    records = _records(results / "default")
    assert sorted(r["sampler"]["steps"] for r in records.values()) == [6, 7]
    assert all(r["status"] == "ok" for r in records.values())
    # both cells need the same eps model: trained at most once (the cache lock serialises the
    # two workers), here or by an earlier grid of this module, which shares the cache
    assert len({r["training"]["key"] for r in records.values()}) == 1
    assert [r["training"]["source"] for r in records.values()].count("trained") <= 1


def test_submitit_launcher_with_its_local_executor(run_cli, tmp_path, cache_dir):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="pip install 'genbench[slurm]' (hydra-submitit-launcher)")
    results = tmp_path / "results"
    result = run_cli(*_grid_args(results, cache_dir, "sampler.steps=8,9"),
                     "hydra/launcher=submitit_local")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "launcher submitit_local" in result.stderr
    records = _records(results / "default")
    assert sorted(r["sampler"]["steps"] for r in records.values()) == [8, 9]
    logs = list((results / "default" / ".hydra").glob("*/.submitit/*/*_log.err"))
    assert logs and any("[grid] cell" in p.read_text() for p in logs)


# --------------------------------------------------------------------------- records


def _write_many(cell_dir: str, writer: int, times: int, start) -> list[str]:
    start.wait()
    errors = []
    for k in range(times):
        record = {"cell": Path(cell_dir).name, "status": "ok", "writer": writer, "k": k}
        try:
            rec.write_cell(Path(cell_dir), record, {"samples.png": os.urandom(4096)})
        except Exception as exc:  # noqa: BLE001 - collected and asserted on
            errors.append(repr(exc))
    return errors


@pytest.mark.parametrize("same_cell", [True, False], ids=["same-cell", "different-cells"])
def test_cells_finishing_at_once_lose_nothing(tmp_path, same_cell):
    writers, times = 6, 25
    experiment = tmp_path / "exp"
    cells = [experiment / ("cell" if same_cell else f"cell{i}") for i in range(writers)]
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(writers)
        with ctx.Pool(writers) as pool:
            errors = pool.starmap(_write_many,
                                  [(str(cells[i]), i, times, start) for i in range(writers)])
    assert errors == [[]] * writers
    assert _leftovers(experiment) == []
    assert sorted(p.name for p in experiment.iterdir()) == sorted({c.name for c in cells})
    for cell in set(cells):
        record = rec.read_record(cell)  # complete JSON
        assert record["status"] == "ok" and record["cell"] == cell.name
        assert sorted(p.name for p in cell.iterdir()) == ["result.json", "samples.png"]
        if same_cell:
            assert record["k"] == 0  # the first finisher won; later writes changed nothing


def test_stale_half_written_folders_are_removed(tmp_path):
    """What a killed writer leaves is removed by the next grid, a live writer's is not."""
    from genbench import _io

    stale, fresh = (tmp_path / f".cell.{'a' * 32}.tmp", tmp_path / f".cell.{'b' * 32}.tmp")
    for folder in (stale, fresh, tmp_path / "cell"):
        folder.mkdir()
    old = time.time() - 2 * grid.STALE_TMP_SECONDS
    os.utime(stale, (old, old))
    removed = _io.remove_stale_temporaries(tmp_path, older_than_s=grid.STALE_TMP_SECONDS)
    assert removed == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name, "cell"]


def test_a_cell_is_named_by_what_it_measures_not_where_it_is_written():
    from genbench.harness.cell import cell_name

    def name(*overrides: str) -> str:
        return cell_name(_compose_cell(["sampler=ddim", *overrides]))

    base = name()
    assert base.startswith("digits-pixel-ncsnpp_digits-ddim-s")
    # where and how it is written: the same cell, so a grid finds it recorded
    assert name("results_dir=/elsewhere", "cache_dir=/cache", "experiment=other",
                "progress=false", "report=false") == base
    # what it measures: another cell
    assert len({base, name("sampler.steps=7"), name("seed=1"), name("eval.num_samples=10"),
                name("device=cpu")}) == 5


def test_submitit_local_cells_of_two_tasks_run_distributed(run_cli, tmp_path, cache_dir):
    """``hydra.launcher.tasks_per_node=2``: each cell is a submitit job of two tasks that join
    one gloo group (genbench.distributed reads submitit's SUBMITIT_LOCAL_* variables), split the
    sampling and record what the one-process grid records."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="pip install 'genbench[slurm]' (hydra-submitit-launcher)")
    from genbench.config import compose_plain
    from genbench.harness.build import build_components
    from genbench.harness.train import _new_backbone
    from genbench.training.checkpoint import save_weights

    small = ["eval.num_samples=40", "eval.batch_size=20", "device=cpu"]
    cfg = compose_plain([*TINY_GRID, *small])
    weights = tmp_path / "eps.safetensors"  # evaluated, not trained: no training in this test
    save_weights(weights, {"G_ema": _new_backbone(cfg, build_components(cfg), "eps")})
    records = {}
    for name, launcher in [("one", []), ("two", ["hydra/launcher=submitit_local",
                                                 "hydra.launcher.tasks_per_node=2"])]:
        results = tmp_path / name
        result = run_cli(*_grid_args(results, cache_dir, "sampler.steps=3,4"), *small,
                         f"checkpoint={weights}", "report=false", *launcher)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "2 cells: 2 ran" in result.stdout
        records[name] = _records(results / "default")
    assert records["one"].keys() == records["two"].keys() and len(records["two"]) == 2
    for cell, two in records["two"].items():
        one = records["one"][cell]
        assert two["status"] == "ok" and two["distributed"]["world_size"] == 2
        assert two["distributed"]["backend"] == "gloo" and "distributed" not in one
        assert two["timing"]["scope"] == "one device (rank 0 of 2)"
        for key in ("fid", "precision", "recall"):
            assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-6), key
    # both tasks of each job ran the cell (submitit's per-task logs)
    logs = list((tmp_path / "two" / "default" / ".hydra").glob("*/.submitit/*/*_1_log.err"))
    assert len(logs) == 2 and all("[grid] cell" in p.read_text() for p in logs)


def test_the_example_slurm_launcher_composes_with_task_and_gpu_counts():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="pip install 'genbench[slurm]' (hydra-submitit-launcher)")
    from genbench.config import compose

    cfg = compose(["hydra/launcher=slurm_example", "hydra.launcher.tasks_per_node=2",
                   "hydra.launcher.gpus_per_node=2"], with_hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (2, 2, 1)
    assert launcher.max_num_timeout == 3 and launcher.partition is None
