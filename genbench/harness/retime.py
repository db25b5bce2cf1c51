"""``genbench time EXPERIMENT``: time all of an experiment's cells again, together.

Cells of a grid are timed one after the other, each when its own turn comes, possibly hours
apart, with other processes coming and going: their times are then hard to compare (the report
flags timings taken under load or with another thread count, :func:`genbench.report.tables.
timing_flags`). This re-times every ok cell of one experiment in one process, with one thread
count, round-robin (trial ``i`` of every cell before trial ``i + 1``,
:func:`genbench.metrics.cost.time_interleaved`), so a change of the machine's state falls on all
cells alike. Each cell's model is loaded as ``genbench run`` loads it (the model cache, or the
cell's ``checkpoint=``); nothing is trained. Each record gets the new ``timing`` (and its
``time_per_batch_s``), the one it had is kept under ``timing_previous``; the record is replaced
atomically.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from genbench._io import atomic_write_text
from genbench.errors import UserError
from genbench.harness import record as rec
from genbench.harness.artifacts import ModelCache
from genbench.harness.build import build_components
from genbench.harness.evaluate import timed_batch
from genbench.harness.fastpath import FastPath
from genbench.harness.latent import fit_latent
from genbench.harness.system import resolve_device
from genbench.harness.train import train_or_load
from genbench.report.replicates import replicate_config, replicate_seeds

PREVIOUS = "timing_previous"


def experiment_cells(experiment: str, results_dir: str | Path) -> list[tuple[Path, dict]]:
    """(cell folder, record) of every ok record of ``experiment`` under ``results_dir``, by name;
    an unknown experiment, or one without an ok record, is a UserError."""
    results = Path(results_dir).expanduser()
    folder = results / rec.check_name(experiment, "experiment")
    if not folder.is_dir():
        known = sorted(p.name for p in results.iterdir() if p.is_dir()
                       and not p.name.startswith(".")) if results.is_dir() else []
        raise UserError(f"no experiment {experiment!r} in {results}"
                        + (f"; there: {', '.join(known)}" if known else ""))
    cells = []
    for cell_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not rec.is_done(cell_dir):
            continue
        record = rec.read_record(cell_dir)
        if isinstance(record.get("timing"), dict) and record["timing"].get("median_s"):
            cells.append((cell_dir, record))
    if not cells:
        raise UserError(f"experiment {experiment!r} ({folder}) has no ok record with a timing")
    return cells


def _cell_call(cfg: dict[str, Any], results_dir: Path, device: torch.device):
    """(timed call, batch size) of a recorded cell's configuration, its model loaded."""
    cfg = {**cfg, "results_dir": str(results_dir)}
    cache_dir = Path(str(cfg["cache_dir"])).expanduser() if cfg.get("cache_dir") else (
        results_dir / ".cache")
    comps = build_components(cfg)
    fit_latent(comps, cache_dir, device, progress=False, fit=False)
    seed = replicate_seeds(cfg)[0]  # the record's timing is of its first seed's model
    net, _ = train_or_load(replicate_config(cfg, seed), comps, ModelCache(cache_dir), device,
                           progress=False, train=False)
    return timed_batch(net, comps, cfg["eval"], device)


def _most(values: list[int]) -> int:
    return Counter(values).most_common(1)[0][0]


def retime(experiment: str, results_dir: str | Path = "results", *, device: str | None = None,
           warmup: int | None = None, trials: int | None = None) -> list[dict[str, Any]]:
    """Time the ok cells of ``experiment`` again, round-robin, and write the new timings.

    ``device`` (default: the first cell's ``device`` setting, ``auto`` -> cuda if available),
    ``warmup`` and ``trials`` (default: the value most cells were configured with,
    ``eval.time_warmup`` / ``eval.time_trials``) are the same for every cell; each keeps its own
    batch size (``eval.time_batch_size``). Returns one row per cell: ``cell``, ``before_s`` and
    ``after_s`` (medians), ``cv``, ``threads``, ``batch_size`` and ``timing`` (the new one).
    """
    results = Path(results_dir).expanduser()
    cells = experiment_cells(experiment, results)
    configs = [record["config"] for _, record in cells]
    where = resolve_device(device or str(configs[0].get("device", "auto")))
    warmup = _most([int(c["eval"].get("time_warmup", 10)) for c in configs]) if warmup is None \
        else warmup
    trials = _most([int(c["eval"].get("time_trials", 300)) for c in configs]) if trials is None \
        else trials
    calls = [_cell_call(cfg, results, where) for cfg in configs]
    from genbench.metrics.cost import time_interleaved

    with torch.no_grad():
        timings = time_interleaved([fn for fn, _ in calls], where, warmup=warmup, trials=trials)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = []
    for (cell_dir, record), (_, batch), timing in zip(cells, calls, timings):
        old = record["timing"]
        new = {**timing, "batch_size": batch,  # timed_batch ran the cell's fast path
               "fast_path": FastPath.from_eval(record["config"]["eval"]).settings(where),
               "retimed": {"by": "genbench time", "at": when, "cells": len(cells)}}
        record[PREVIOUS] = old
        record["timing"] = new
        metrics = record.setdefault("metrics", {})
        metrics["time_per_batch_s"] = new["median_s"]
        metrics["time_per_batch_iqr_s"] = new["iqr_s"]
        atomic_write_text(cell_dir / rec.RESULT, rec.dumps(record))
        rows.append({"cell": cell_dir.name, "before_s": old.get("median_s"),
                     "after_s": new["median_s"], "cv": new["cv"], "threads": new["threads"],
                     "batch_size": batch, "timing": new})
    return rows


def retime_text(rows: list[dict[str, Any]]) -> str:
    """The table ``genbench time`` prints: one line per cell, then the conditions."""
    timing = rows[0]["timing"]
    width = max(len("cell"), *(len(r["cell"]) for r in rows))
    lines = [f"{'cell':{width}s}  batch  before [s]   after [s]     CV"]
    for r in rows:
        before = f"{r['before_s']:.4g}" if isinstance(r["before_s"], int | float) else "-"
        cv = f"{r['cv']:.3f}" if isinstance(r["cv"], int | float) else "-"
        lines.append(f"{r['cell']:{width}s}  {r['batch_size']:5d}  {before:>10s}  "
                     f"{r['after_s']:10.4g}  {cv:>5s}")
    lines.append(f"{len(rows)} cells timed together, round-robin: {timing['trials']} trials after "
                 f"{timing['warmup']} warm-ups each, {timing['threads']} threads on "
                 f"{timing['device']}, 1-min load {timing['load_1m_before']} -> "
                 f"{timing['load_1m_after']} ({timing['cpu_count']} CPUs), OMP_WAIT_POLICY "
                 f"{timing['omp_wait_policy']}")
    return "\n".join(lines)
