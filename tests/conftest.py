"""Shared fixtures: run the `genbench` command line as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Under pytest-xdist (pyproject.toml: two workers) every worker, and every `genbench` process a
# test starts, uses one torch thread: two processes that each use both cores of a 2-core machine
# slow each other down far more than two-fold (spinning OpenMP thread pools).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


# Test files whose module-scoped fixtures are expensive (a trained model, a fitted autoencoder, a
# two-process group): each runs on one xdist worker (`--dist loadgroup`, pyproject.toml), so the
# fixture is built once; every other test is handed to whichever worker is free.
ONE_WORKER_FILES = {
    "test_autoencoder", "test_corruption", "test_default_run", "test_distributed_eval",
    "test_distributed_harness", "test_distributed_training", "test_eval", "test_fastpath",
    "test_faults", "test_grid", "test_inception", "test_matrix", "test_metrics_quality",
    "test_packaging",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.path.stem
        if module in ONE_WORKER_FILES:
            item.add_marker(pytest.mark.xdist_group(module))


def genbench_command() -> list[str]:
    """The installed console script, or the module when running from a bare checkout."""
    script = shutil.which("genbench")
    return [script] if script else [sys.executable, "-m", "genbench.cli"]


@pytest.fixture
def run_cli(tmp_path):
    """Run ``genbench ARGS`` in an empty folder; returns CompletedProcess (text)."""

    def run(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900):
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        return subprocess.run([*genbench_command(), *args], cwd=cwd or tmp_path, env=full_env,
                              capture_output=True, text=True, timeout=timeout)

    return run


def write_ok_record(root: Path, cell: str, steps: int, seed: int, fid: float, *,
                    time_s: float = 0.01, resolution: int = 8,
                    per_seed: list[tuple[int, float]] | None = None,
                    metrics: dict | None = None, missing: dict | None = None) -> None:
    """A constructed ok record of experiment ``e`` with the fields the report reads.

    ``metrics`` adds to (or replaces) the base metrics; each added metric gets the same recipe.
    ``per_seed`` makes it a ``train.seeds`` record with one FID per (seed, fid)."""
    import json

    base = {"fid": fid, "recall": 0.5, "nfe": steps, "time_per_batch_s": time_s,
            "time_per_batch_iqr_s": 0.0002}
    base.update(metrics or {})
    record = {
        "schema_version": 1, "experiment": "e", "cell": cell, "status": "ok", "error": None,
        "config": {"seed": seed, "experiment": "e",
                   "dataset": {"name": "digits", "resolution": resolution},
                   "sampler": {"name": "ddgan", "steps": steps}, "backbone": {"name": "b"},
                   "latent": {"name": "pixel"}, "train": {"seeds": len(per_seed or [1])}},
        "metrics": base,
        "metric_recipes": {name: {"extractor": "clf"}
                           for name in ["fid", "recall", *(metrics or {})]},
        "missing": missing or {},
        "timing": {"median_s": time_s, "q25_s": time_s - 0.0001, "q75_s": time_s + 0.0001,
                   "device": "cpu", "batch_size": 100},
        "artifacts": {},
    }
    if per_seed:
        record["replicates"] = {"n": len(per_seed), "seeds": [s for s, _ in per_seed],
                                "per_seed": [{"seed": s, "metrics": {"fid": f}}
                                             for s, f in per_seed]}
    (root / "e" / cell).mkdir(parents=True)
    (root / "e" / cell / "result.json").write_text(json.dumps(record))


TINY = ["backbone=ncsnpp_tiny", "train=tiny", "eval=tiny", "progress=false"]


def write_distribution(root: Path, module: str, source: str) -> None:
    """A minimal installed distribution: ``module`` plus a dist-info with its entry point."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[genbench.plugins]\n{module} = {module}\n")
    (info / "RECORD").write_text("")
