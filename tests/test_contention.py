"""CPU contention: genbench's OpenMP setup before torch loads, the conditions recorded with every
timing (threads, load, CV, wait policy), the contention benchmark, and ``genbench time``
(re-timing an experiment's cells together, round-robin)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO, TINY

from genbench.metrics.cost import time_interleaved, time_per_batch
from genbench.process import DEFAULTS, setup_threads, thread_conditions
from genbench.report.paper_tables import table3
from genbench.report.tables import load_records, summary_table, timing_flags

_OMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _OMP}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env | {"OMP_DISPLAY_ENV": "VERBOSE"} | extra  # libgomp prints what it read


def _spin_count(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "GOMP_SPINCOUNT =" in line]
    assert lines, stderr[-2000:]
    return lines[0].split("=", 1)[1].strip().strip("'")


# --------------------------------------------------------------------------- the process setup
def test_setup_sets_only_what_the_user_left_unset():
    env: dict[str, str] = {}
    # torch is imported in this process: libgomp has read its environment, nothing is set
    assert setup_threads(env) == {"set": [], "before_torch": False} and env == {}


def test_setup_before_torch_sets_passive_and_a_users_value_wins(tmp_path):
    code = ("from genbench.process import setup_threads; r = setup_threads(); import os, torch, "
            "json; print(json.dumps([r, os.environ.get('OMP_WAIT_POLICY')]))")
    out = subprocess.run([sys.executable, "-c", code], env=_clean_env(), capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == [{"set": ["OMP_WAIT_POLICY"], "before_torch": True},
                                      DEFAULTS["OMP_WAIT_POLICY"]]
    assert _spin_count(out.stderr) == "0"  # libgomp's passive wait: no spinning
    out = subprocess.run([sys.executable, "-c", code], env=_clean_env(OMP_WAIT_POLICY="ACTIVE"),
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [{"set": [], "before_torch": True}, "ACTIVE"]
    assert _spin_count(out.stderr) not in ("0", "300000")  # ACTIVE: spins (almost) forever


def test_the_genbench_command_sets_up_threads_before_torch_loads(run_cli):
    # without the setup torch's libgomp spins 300,000 times before a worker sleeps ...
    plain = subprocess.run([sys.executable, "-c", "import torch"], env=_clean_env(),
                           capture_output=True, text=True, check=True)
    assert _spin_count(plain.stderr) == "300000"
    # ... the genbench command (which loads torch to compose the configuration) does not spin
    result = run_cli("run", "--cfg", "job", env=_clean_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert _spin_count(result.stderr) == "0"


def test_timings_record_their_thread_conditions_and_cv():
    result = time_per_batch(lambda: sum(range(2000)), "cpu", warmup=1, trials=5)
    assert result["cv"] == pytest.approx(result["std_s"] / result["mean_s"])
    assert result["threads"] == torch.get_num_threads()
    assert result["affinity_cpus"] == len(os.sched_getaffinity(0))
    # pytest imported torch itself: genbench's setup never ran before it (an in-process
    # `genbench` call of another test ran it too late)
    assert result["threads_setup"] == thread_conditions()["threads_setup"] in ("none", "too late")
    assert result["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "unset")


def test_interleaved_timing_is_round_robin():
    calls: list[str] = []
    fns = [lambda name=name: calls.append(name) for name in "abc"]
    out = time_interleaved(fns, "cpu", warmup=2, trials=3)
    assert calls == ["a", "a", "b", "b", "c", "c"] + ["a", "b", "c"] * 3
    assert [r["trials"] for r in out] == [3, 3, 3]
    assert all(r["interleaved_with"] == 3 and "cv" in r and "load_1m_after" in r for r in out)


def test_report_shows_cv_and_flags_another_wait_policy():
    df = pd.DataFrame({
        "time_per_batch_s": [0.1, 0.1, 0.1], "kind": ["trained"] * 3,
        "timing_omp_wait_policy": ["PASSIVE", "PASSIVE", "unset"],
        "timing_threads": [2, 2, 2], "timing_cpu_count": [2, 2, 2]})
    flags = timing_flags(df)
    assert list(flags[:2]) == [None, None]
    assert flags[2] == "OMP_WAIT_POLICY unset (most: PASSIVE)"


# --------------------------------------------------------------------------- the benchmark
def test_contention_benchmark_runs_quick(tmp_path):
    out = tmp_path / "contention.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "contention.py"), "--quick", "--settings",
         "genbench", "--out", str(out)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["setting"] == "genbench" and row["alone"]["omp_wait_policy"] == "PASSIVE"
    assert row["alone"]["steps"] >= 1 and row["contended"]["steps"] >= 1
    assert row["slowdown"] == pytest.approx(row["alone"]["steps_per_s"]
                                            / row["contended"]["steps_per_s"])
    assert "slowdown" in proc.stdout


# --------------------------------------------------------------------------- genbench time
def test_genbench_time_retimes_an_experiments_cells_together(run_cli, tmp_path):
    results, cache = tmp_path / "results", tmp_path / "cache"
    grid = run_cli("run", "--grid", *TINY, "dataset.split=test", "sampler=ddim",
                   "sampler.steps=2,3", f"results_dir={results}", f"cache_dir={cache}")
    assert grid.returncode == 0, grid.stderr[-3000:]
    paths = sorted((results / "default").glob("*/result.json"))
    before = {p.parent.name: json.loads(p.read_text()) for p in paths}
    assert len(before) == 2
    models = sorted((cache / "models").iterdir())

    timed = run_cli("time", "default", str(results), "--trials", "3", "--warmup", "1")
    assert timed.returncode == 0, timed.stderr[-3000:]
    after = {p.parent.name: json.loads(p.read_text()) for p in paths}
    for name, record in after.items():
        assert name in timed.stdout
        assert record["timing_previous"] == before[name]["timing"]
        timing = record["timing"]
        assert timing["trials"] == 3 and timing["warmup"] == 1 and timing["interleaved_with"] == 2
        assert timing["retimed"]["by"] == "genbench time" and timing["retimed"]["cells"] == 2
        assert timing["threads_setup"] == "genbench" and timing["omp_wait_policy"] != "unset"
        assert record["metrics"]["time_per_batch_s"] == timing["median_s"]
        assert timing["batch_size"] == before[name]["timing"]["batch_size"]
        assert {k: v for k, v in record.items() if k not in ("timing", "timing_previous",
                                                             "metrics")} == \
            {k: v for k, v in before[name].items() if k not in ("timing", "metrics")}
    assert "2 cells timed together, round-robin: 3 trials" in timed.stdout
    assert sorted((cache / "models").iterdir()) == models  # nothing was trained

    # the report shows the trials' CV
    df = load_records([results])
    assert list(summary_table(df)["time CV"]) == pytest.approx(
        [r["timing"]["cv"] for r in after.values()])
    assert "time CV" in table3(df).columns

    # one-line errors: an unknown experiment, a model that is no longer in the cache
    unknown = run_cli("time", "nope", str(results))
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        f"genbench: error: no experiment 'nope' in {results}; there: default"]
    for model in models:
        if model.is_dir():
            (model / "generator.safetensors").unlink()
    missing = run_cli("time", "default", str(results), "--trials", "1")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "the trained model is not in the cache" in missing.stderr
    assert {p.parent.name: json.loads(p.read_text()) for p in paths} == after  # untouched


def test_genbench_time_without_records_is_a_user_error(run_cli, tmp_path):
    (tmp_path / "results" / "empty").mkdir(parents=True)
    result = run_cli("time", "empty", str(tmp_path / "results"))
    assert result.returncode == 2
    assert "has no ok record with a timing" in result.stderr
    assert Path(tmp_path / "results" / "empty").is_dir()
