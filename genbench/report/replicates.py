"""Training seeds as a dimension: replicates of one configuration and their aggregate.

One training run of a GAN is one draw from a wide distribution (its FID moves with the seed more
than with many settings), so genbench trains a configuration under several seeds and reports
the spread. Two ways give replicates:

* ``train.seeds=N`` on one cell trains N independent models with the run seeds ``seed``,
  ``seed+1``, ..., ``seed+N-1`` (:func:`replicate_seeds`). Each replicate is the cell's
  configuration with ``seed`` replaced, so its model has the cache key a single-seed cell with
  that seed has (``train.seeds`` is not a training setting): every seed's model is cached
  apart, an interrupted cell trains only the seeds not finished, and ``seed=0,1,2`` in a grid
  reuses the same models. Every random stream of a replicate is derived from its own run seed
  by :func:`genbench.training.seeding.stream_seed` (SHA-256 of seed and stream name), so
  consecutive run seeds give unrelated streams.
* Cells of a grid (``seed=0,1,2``) whose configurations differ only in ``seed`` are replicates
  of one configuration (:func:`configuration_key`).

The aggregate of a metric over replicates (:func:`summarize`) is its mean, the sample standard
deviation (``ddof=1``; None for one replicate), the minimum and the maximum, and n. The
*interval* drawn as error bars and compared for ranking is the observed range [min, max] over
seeds (with n = 2 or 3 a 95% t-interval would be 12.7 or 4.3 standard errors wide: the range is
what was seen, not an inference). One replicate has no interval: no error bar, n = 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genbench._io import json_hash

SEED_RULE = "seed + i for i in 0..train.seeds-1"
SPREAD = ("mean over training seeds; std is the sample standard deviation (ddof=1); the "
          "interval (error bars, overlap warnings) is [min, max] over seeds")
# Record metrics that depend on the trained weights (aggregated over seeds); the cost metrics
# (NFE, parameters, MACs, memory, time) follow from the architecture and are measured once.
# precision[inception]/recall[inception]: precision/recall on Inception pool features (no VGG16
# weights), aggregated apart from the VGG16 numbers.
SEED_METRICS = ("fid", "precision", "recall", "precision[inception]", "recall[inception]",
                "kid_mean", "kid_std", "is_mean", "is_std", "fid_infinity")
# Settings that do not make another configuration (where it is written; the seed itself).
NOT_IN_CONFIGURATION = ("progress", "report", "presets", "results_dir", "cache_dir", "experiment",
                        "cell", "seed")


def seeds_of(cfg: Mapping[str, Any]) -> int:
    """``train.seeds`` (1 when not set, or not a valid count: :func:`genbench.schema.validate`
    refuses those before a cell runs; a failed cell's record still names its one seed)."""
    train = cfg.get("train")
    value = train.get("seeds", 1) if isinstance(train, Mapping) else 1
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def replicate_seeds(cfg: Mapping[str, Any]) -> list[int]:
    """The run seeds of a cell's replicates: ``seed``, ``seed+1``, ... (``train.seeds`` of them)."""
    first = int(cfg.get("seed", 0))
    return [first + i for i in range(seeds_of(cfg))]


def replicate_config(cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The configuration of one replicate: ``seed`` replaced, ``train.seeds`` 1."""
    train = {**cfg["train"], "seeds": 1} if isinstance(cfg.get("train"), Mapping) else cfg["train"]
    return {**cfg, "seed": int(seed), "train": train}


def configuration_key(config: Mapping[str, Any]) -> str:
    """What replicates share: the configuration without where it is written and without ``seed``
    (``train.seeds`` of 1 counts as unset, as in the cell name)."""
    kept = {k: v for k, v in config.items() if k not in NOT_IN_CONFIGURATION}
    train = kept.get("train")
    if isinstance(train, Mapping) and train.get("seeds", 1) in (1, None):
        kept["train"] = {k: v for k, v in train.items() if k != "seeds"}
    return json_hash(kept, 12)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def summarize(values: Iterable[Any]) -> dict[str, Any] | None:
    """``{"mean", "std", "min", "max", "n"}`` of the finite numbers in ``values`` (None when
    there is none); ``std`` is the sample standard deviation, None for n = 1."""
    numbers = [v for v in (_number(x) for x in values) if v is not None]
    if not numbers:
        return None
    n = len(numbers)
    mean = math.fsum(numbers) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in numbers) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "min": min(numbers), "max": max(numbers), "n": n}


def aggregate_metrics(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """:func:`summarize` of every metric any replicate has a number for (``per_seed``: each
    replicate's metrics)."""
    keys = dict.fromkeys(k for metrics in per_seed for k in metrics)
    out = {}
    for key in keys:
        summary = summarize(metrics.get(key) for metrics in per_seed)
        if summary is not None:
            out[key] = summary
    return out


# --------------------------------------------------------------------------- ranking


@dataclass(frozen=True)
class Point:
    """One configuration on a plot: its centre and interval on each axis (None: no interval)."""

    label: str
    x: float
    y: float
    x_interval: tuple[float, float] | None = None
    y_interval: tuple[float, float] | None = None
    n: int = 1


def _overlap(a: tuple[float, float] | None, b: tuple[float, float] | None,
             a_value: float, b_value: float) -> bool:
    """Whether two intervals (a point without one is its value) share a value, when at least
    one of them is an interval."""
    if a is None and b is None:
        return False
    lo_a, hi_a = a if a is not None else (a_value, a_value)
    lo_b, hi_b = b if b is not None else (b_value, b_value)
    return lo_a <= hi_b and lo_b <= hi_a


def overlap_warnings(points: Sequence[Point], x_name: str = "time per batch",
                     y_name: str = "FID") -> list[str]:
    """One line per pair of configurations whose intervals overlap on an axis: their ranking on
    that axis is not supported by the measurements (a point with no interval overlaps an
    interval that contains its value; two points without intervals never do)."""
    lines = []
    for i, a in enumerate(points):
        for b in points[i + 1:]:
            axes = [name for name, ia, ib, va, vb in (
                (y_name, a.y_interval, b.y_interval, a.y, b.y),
                (x_name, a.x_interval, b.x_interval, a.x, b.x)) if _overlap(ia, ib, va, vb)]
            for name in axes:
                lines.append(f"{a.label} (n={a.n}) and {b.label} (n={b.n}): their {name} "
                             f"intervals overlap, so their {name} ranking is not supported")
    return lines
