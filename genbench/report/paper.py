"""Published ("reported") numbers that the report draws next to genbench's measurements.

Every preset in ``baselines/`` carries a ``paper:`` block with the numbers its paper reports
(Trinh and Hamagami 2024, LDDGAN, Table 2: params / FLOPs / memory; Table 3: FID / recall /
NFE / time for a batch of 100). A record run from a baseline carries the same block in its
resolved config. This module reads both into one DataFrame of *paper points*; a baseline's
dataset is the one its preset composes to (Hydra, through :mod:`genbench.config`).

A paper point is never measured by genbench, and its FID belongs to one feature extractor (the
published FIDs are TF-Inception FIDs, ``inception-v3-compat``). The report therefore draws paper
points only on figures whose FID extractor and dataset are the paper's own. Published recall
uses the improved precision/recall of Kynkaanniemi et al. (2019) on VGG16 features, k = 3
(NVlabs/stylegan2-ada-pytorch ``metrics/precision_recall.py``, which WaveDiff and LDDGAN use),
hence the default ``recall_extractor`` ``vgg16``.

The paper's "FLOPs" follow fvcore (one multiply-add counted once; LDDGAN Table 2) and are per
network evaluation: DDGAN's 7.05 G is one forward of its generator. genbench therefore treats
``gflops`` as GMACs per forward; the per-sample figure derives ``NFE x gflops`` unless the block
gives ``gmacs_per_sample`` itself, and says so in the hover text.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from genbench.errors import UserError

__all__ = [
    "PAPER_COLUMNS",
    "PAPER_RECALL_EXTRACTOR",
    "PaperWarning",
    "dataset_key",
    "paper_points",
    "same_dataset",
    "short_source",
]

PAPER_RECALL_EXTRACTOR = "vgg16"
NUMERIC_FIELDS = (
    "fid", "recall", "nfe", "time_per_batch_s", "params_m", "gflops", "memory_gb",
    "gmacs_per_sample", "time_batch_size",
)  # fmt: skip
PAPER_COLUMNS: tuple[str, ...] = (
    "method", "source", "source_short", "dataset", "resolution", "dataset_label", "extractor",
    "recall_extractor", *NUMERIC_FIELDS, "gmacs_derived", "device", "notes", "origin",
)  # fmt: skip


class PaperWarning(UserWarning):
    """A ``paper:`` block that could not be used and was skipped (or a field that was ignored)."""


def dataset_key(name: object) -> str:
    """Comparable dataset name: lower case, letters and digits (``CIFAR-10`` -> ``cifar10``)."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower()) if name is not None else ""


def short_source(source: str) -> str:
    """The source up to its first parenthesis or comma, for legends (the hover has all of it)."""
    head = re.split(r"\s*[(,;]", source.strip(), maxsplit=1)[0].strip()
    return head or source.strip()


def _number(value: Any, field: str, origin: str) -> float:
    if value is None or value == "-":
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        warnings.warn(f"{origin}: paper.{field}={value!r} is not a number; ignored",
                      PaperWarning, stacklevel=3)
        return math.nan
    return number if math.isfinite(number) else math.nan


def _point(block: Mapping[str, Any], dataset: str | None, resolution: Any, origin: str
           ) -> dict[str, Any] | None:
    """One paper point from a ``paper:`` block, or None (with a warning) when it is unusable.

    ``dataset`` and ``resolution`` are genbench's (from the baseline preset or the record); the
    block's own ``dataset`` text is the label, and the fallback when genbench's is unknown.
    """
    method, extractor = block.get("method"), block.get("extractor")
    if not isinstance(method, str) or not isinstance(extractor, str) or not extractor:
        warnings.warn(f"{origin}: paper block needs 'method' and 'extractor'; skipped",
                      PaperWarning, stacklevel=3)
        return None
    label = block.get("dataset")
    dataset = dataset or (str(label) if label is not None else None)
    if not dataset:
        warnings.warn(f"{origin}: paper block names no dataset; skipped", PaperWarning,
                      stacklevel=3)
        return None
    source = str(block.get("source") or "reported")
    point: dict[str, Any] = {
        "method": method,
        "source": source,
        "source_short": short_source(source),
        "dataset": dataset,
        "resolution": _number(block.get("resolution", resolution), "resolution", origin),
        "dataset_label": str(label) if label is not None else dataset,
        "extractor": extractor,
        "recall_extractor": str(block.get("recall_extractor") or PAPER_RECALL_EXTRACTOR),
        "device": str(block.get("device") or "as reported"),
        "notes": str(block["notes"]).strip() if block.get("notes") else None,
        "origin": origin,
    }
    for field in NUMERIC_FIELDS:
        point[field] = _number(block.get(field), field, origin)
    point["gmacs_derived"] = math.isnan(point["gmacs_per_sample"])
    if point["gmacs_derived"]:
        point["gmacs_per_sample"] = point["nfe"] * point["gflops"]  # NaN when either is missing
    return point


def _baseline_points(baselines_dir: Path) -> list[dict[str, Any]]:
    """Paper points of the presets in ``baselines_dir``, each placed on the dataset that the
    preset composes to (its dataset preset and resolution; see
    :func:`genbench.config.compose_baselines`)."""
    from genbench.config import compose_baselines

    points = []
    for name, cfg in compose_baselines(baselines_dir).items():
        origin = f"baselines/{name}.yaml"
        if isinstance(cfg, Exception):
            warnings.warn(f"{origin}: {cfg}; skipped", PaperWarning, stacklevel=3)
            continue
        block = cfg.get("paper")
        if isinstance(block, Mapping):
            dataset = cfg.get("presets", {}).get("dataset")  # its preset
            resolution = (cfg.get("dataset") or {}).get("resolution")
            point = _point(block, dataset, resolution, origin)
            if point is not None:
                points.append(point)
    return points


def _record_points(df: pd.DataFrame) -> list[dict[str, Any]]:
    points = []
    for _, row in df.iterrows():
        config = row.get("config")
        block = config.get("paper") if isinstance(config, Mapping) else None
        if isinstance(block, Mapping):
            dataset = row.get("dataset") if isinstance(row.get("dataset"), str) else None
            origin = str(row.get("path") or row.get("cell"))
            point = _point(block, dataset, row.get("resolution"), origin)
            if point is not None:
                points.append(point)
    return points


def _identity(point: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two points the same published number (a baseline and its own record)."""
    numbers = tuple(
        None if math.isnan(point[f]) else round(point[f], 9) for f in NUMERIC_FIELDS
    )
    return (point["method"], dataset_key(point["dataset"]), point["extractor"], *numbers)


def same_dataset(paper_dataset: str, paper_resolution: float | None, dataset: str,
                 resolution: float | None) -> bool:
    """A paper point belongs to ``dataset`` at ``resolution`` (an unknown resolution matches)."""
    if dataset_key(paper_dataset) != dataset_key(dataset):
        return False
    known = [r for r in (paper_resolution, resolution) if r is not None and not math.isnan(r)]
    return len(known) < 2 or known[0] == known[1]


def paper_points(
    df: pd.DataFrame | None = None, baselines_dir: Path | None = None, *, baselines: bool = True
) -> pd.DataFrame:
    """Published numbers from ``baselines/*.yaml`` and from records' ``config.paper`` blocks.

    ``df`` is :func:`~genbench.report.tables.load_records`' frame (or None). ``baselines_dir``
    defaults to :func:`genbench.config.baselines_root`; ``baselines=False`` reads only records.
    The same published number found twice (a baseline and a record run from it) is one point.
    Columns: :data:`PAPER_COLUMNS`; ``dataset`` is genbench's dataset name where known (the
    baseline's ``override /dataset`` or the record's dataset), else the block's ``dataset`` text.
    Blocks without ``method``, ``extractor`` or a dataset are skipped with a :class:`PaperWarning`.
    """
    found: list[dict[str, Any]] = []
    if baselines:
        if baselines_dir is None:
            from genbench.config import baselines_root

            try:
                baselines_dir = baselines_root()
            except UserError:  # a broken install: the report still works without paper points
                baselines_dir = None
        if baselines_dir is not None:
            found.extend(_baseline_points(Path(baselines_dir)))
    if df is not None and not df.empty and "config" in df.columns:
        found.extend(_record_points(df))
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    for point in found:
        unique.setdefault(_identity(point), point)
    frame = pd.DataFrame(list(unique.values()), columns=list(PAPER_COLUMNS))
    frame = frame.sort_values(["dataset", "method", "origin"], kind="stable")
    return frame.reset_index(drop=True)
