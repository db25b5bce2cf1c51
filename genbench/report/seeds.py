"""Replicates over training seeds in the report: one point per configuration, with its spread.

Records of one configuration trained under different seeds (grid cells that differ only in
``seed``, :func:`genbench.report.replicates.configuration_key`) and the seeds of a
``train.seeds=N`` record are the replicates of that configuration. :func:`configurations`
collapses a records frame to one row per configuration: each seed-dependent metric
(:data:`~genbench.report.replicates.SEED_METRICS`) is the mean over seeds with its ``_std``,
``_min``, ``_max`` and ``n``; the time per batch is the mean of the replicates' medians with the
interval from the lowest first quartile to the highest third quartile of their timing trials.
The interval on a quality axis is [min, max] over seeds (none for n = 1). FID has a second kind
of interval, its 95% sampling interval (``fid_ci``: the uncertainty of one generated set given
the reference set, :func:`genbench.metrics.quality.fid_interval`): the FID interval of a
configuration (:func:`fid_interval`) is the seed range when n > 1, else ``fid_ci``.

:func:`ranking_warnings` names the pairs of configurations on one FID-vs-time panel whose
intervals overlap on an axis: the measurements do not support ranking them on that axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from genbench.report.replicates import SEED_METRICS, Point, overlap_warnings, summarize
from genbench.report.tables import CI_NAME, interval_text, is_scored, measured_rows, short_names

__all__ = ["configurations", "fid_interval", "ranking_warnings", "seeds_table"]


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _replicates(row: pd.Series) -> list[Mapping[str, Any]]:
    reps = row.get("replicates")
    return [r for r in reps if isinstance(r, Mapping)] if isinstance(reps, list) else []


def _time_span(row: pd.Series) -> tuple[float, float, float] | None:
    """(median, low, high) of a record's timing: quartiles, else median -+ IQR/2."""
    median = _float(row.get("time_per_batch_s"))
    if median is None:
        return None
    q25, q75 = _float(row.get("timing_q25_s")), _float(row.get("timing_q75_s"))
    if q25 is None or q75 is None:
        half = _float(row.get("time_per_batch_iqr_s"))
        q25, q75 = (median, median) if half is None else (median - half / 2, median + half / 2)
    return median, q25, q75


def _collapse(rows: pd.DataFrame) -> dict[str, Any]:
    if "seed" in rows.columns:  # replicates in the order of their seeds
        order = pd.to_numeric(rows["seed"], errors="coerce").sort_values(kind="stable",
                                                                         na_position="last")
        rows = rows.loc[order.index]
    first = rows.iloc[0].to_dict()
    seen: dict[Any, Mapping[str, Any]] = {}
    for _, row in rows.iterrows():
        for rep in _replicates(row):
            seen.setdefault(rep.get("seed"), rep)  # one seed counted once
    reps = list(seen.values()) or [{}]
    out = dict(first)
    out["cells"] = ", ".join(str(c) for c in rows["cell"])
    out["n"] = len(reps) if seen else 1
    out["seeds"] = ", ".join(str(s) for s in sorted(s for s in seen if isinstance(s, int)))
    for key in SEED_METRICS:
        summary = summarize(rep.get(key) for rep in reps)
        if summary is None:
            continue
        out[key] = summary["mean"]
        out[f"{key}_std"] = summary["std"]
        out[f"{key}_min"], out[f"{key}_max"] = summary["min"], summary["max"]
    if len(rows) > 1:  # each record's sampling interval is around its own FID, not the mean
        out["fid_ci_low"] = out["fid_ci_high"] = None
    spans = [s for s in (_time_span(row) for _, row in rows.iterrows()) if s is not None]
    if len(spans) > 1:
        out["time_per_batch_s"] = math.fsum(s[0] for s in spans) / len(spans)
        out["timing_q25_s"] = min(s[1] for s in spans)
        out["timing_q75_s"] = max(s[2] for s in spans)
        out["time_per_batch_iqr_s"] = out["timing_q75_s"] - out["timing_q25_s"]
    return out


def configurations(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of the ok records (per experiment and FID extractor), in
    first-seen order, with the means over its seeds in the metric columns and
    ``<metric>_std``/``_min``/``_max``, ``n``, ``seeds`` and ``cells``. Records that are not
    ok, records without a ``seed`` in their configuration, and records of one configuration
    that share a seed (the same run measured twice) stay one row each."""
    if df.empty:
        return df.assign(n=pd.Series(dtype="Int64"))
    rows = []
    ok = df["status"] == "ok"
    keys = df["config_key"] if "config_key" in df.columns else df["cell"]
    extractors = df["fid_extractor"] if "fid_extractor" in df.columns else [None] * len(df)
    order: dict[Any, list[Any]] = {}
    for i, extractor in zip(df.index, extractors):
        seed = _float(df.at[i, "seed"]) if "seed" in df.columns else None
        if ok[i] and seed is not None and seed.is_integer():
            # replicates: same experiment, configuration and FID extractor, another seed
            order.setdefault((df.at[i, "experiment"], keys[i], str(extractor)), []).append(i)
        else:  # not ok, or no seed to tell replicates by: a row of its own
            order[("", f"own {i}", "")] = [i]
    for indices in order.values():
        seeds = [rep.get("seed") for i in indices for rep in _replicates(df.loc[i])]
        if len(seeds) != len(set(seeds)):  # one seed measured twice: not replicates, kept apart
            rows.extend(_collapse(df.loc[[i]]) for i in indices)
        else:
            rows.append(_collapse(df.loc[indices]))
    out = pd.DataFrame(rows)
    out.attrs = dict(df.attrs)
    return out


def _interval(row: pd.Series, key: str) -> tuple[float, float] | None:
    low, high = _float(row.get(f"{key}_min")), _float(row.get(f"{key}_max"))
    n = _float(row.get("n")) or 1
    return (low, high) if n > 1 and low is not None and high is not None else None


def fid_interval(row: pd.Series) -> tuple[tuple[float, float], str] | None:
    """A configuration's FID interval and what it is: ``((min, max), "seeds")`` over its
    training seeds when n > 1, else ``((low, high), "sampling")``, its 95% sampling interval
    (``fid_ci``), else None. The seed range is preferred: training seeds move FID more than
    the sampling of one generated set does, and it is what a reader can reproduce by
    retraining."""
    seeds = _interval(row, "fid")
    if seeds is not None:
        return seeds, "seeds"
    low, high = _float(row.get("fid_ci_low")), _float(row.get("fid_ci_high"))
    if low is not None and high is not None:
        return (low, high), "sampling"
    return None


def ranking_warnings(df: pd.DataFrame) -> list[str]:
    """Overlap warnings of the configurations (:func:`configurations`) of ``df`` that share an
    FID extractor and dataset: FID intervals from :func:`fid_interval` ([min, max] over seeds
    when n > 1, else the 95% sampling interval), time intervals from the timing quartiles
    (:func:`genbench.report.replicates.overlap_warnings`)."""
    measured = measured_rows(configurations(df))
    lines = []
    keys = ["_extractor", "_dataset", "_resolution"]
    if measured.empty:
        return lines
    for _, group in measured.groupby(keys, sort=True, dropna=False):
        points = []
        for _, row in group.iterrows():
            span = _time_span(row)
            fid = _float(row.get("fid"))
            if span is None or fid is None:
                continue
            label = (str(row["cells"]) if int(row.get("n") or 1) == 1 or "," not in
                     str(row["cells"]) else f"[{row['cells']}]")
            interval = fid_interval(row)
            points.append(Point(label, span[0], fid,
                                (span[1], span[2]) if span[2] > span[1] else None,
                                interval[0] if interval else None, int(row.get("n") or 1)))
        lines += overlap_warnings(points)
    return lines


def _mean_pm(row: pd.Series, key: str, spec: str) -> str:
    mean = _float(row.get(key))
    if mean is None:
        return "-"
    std = _float(row.get(f"{key}_std"))
    low, high = _float(row.get(f"{key}_min")), _float(row.get(f"{key}_max"))
    if std is None or low is None or high is None:
        return format(mean, spec)
    return f"{mean:{spec}} ± {std:{spec}} [{low:{spec}}, {high:{spec}}]"


def seeds_table(df: pd.DataFrame, *, text: bool = False) -> pd.DataFrame:
    """The configurations of the ok records over their training seeds: name (what sets the
    configuration apart, :func:`~genbench.report.tables.short_names`), cells, n, seeds, and per
    seed-dependent metric its mean, std, min and max (``text``: one ``mean ± std [min, max]``
    column per metric, as the HTML page shows it); FID's 95% sampling interval where a
    configuration is one record (``FID 95% CI``: ``[low, high]``, for a ``train.seeds=N``
    record the interval of its mean); FID-infinity; time per batch (mean of the medians).
    Scored images (``genbench eval``) were not trained: they are not in it."""
    if not df.empty:
        df = df[~is_scored(df)]
    configs = configurations(df[df["status"] == "ok"]) if not df.empty else df
    table = pd.DataFrame(index=range(len(configs)))
    if configs.empty:
        return table
    if df["experiment"].nunique(dropna=True) > 1:
        table["experiment"] = list(configs["experiment"])
    table["name"] = short_names(configs.assign(seed=None))  # what sets it apart, seeds aside
    table["cells"] = list(configs["cells"])
    for column in ("sampler", "steps"):
        table[column] = list(configs[column])
    table["n"] = list(configs["n"])
    table["seeds"] = list(configs["seeds"])
    for key in ("fid", "fid_ci", "fid_infinity", "precision", "recall",
                "precision[inception]", "recall[inception]"):
        if key == "fid_ci":
            texts = [interval_text(row.get("fid_ci_low"), row.get("fid_ci_high"))
                     for _, row in configs.iterrows()]
            if any(texts):
                table[CI_NAME] = texts
            continue
        if key not in configs.columns:
            continue
        extractor = configs.get(f"{key}_extractor")
        name = {"fid": "FID", "fid_infinity": "FID-infinity"}.get(key, key)
        if extractor is not None and extractor.notna().any():
            name += f" [{', '.join(sorted(set(extractor.dropna().astype(str))))}]"
        if text:
            table[name] = [_mean_pm(row, key, ".3f") for _, row in configs.iterrows()]
            continue
        for stat in ("", "_std", "_min", "_max"):
            column = f"{key}{stat}"
            values = configs[column] if column in configs.columns else [None] * len(configs)
            table[f"{name} {stat.lstrip('_') or 'mean'}"] = [_float(v) for v in values]
    table["time/batch [s] mean"] = [_float(v) for v in configs["time_per_batch_s"]] \
        if "time_per_batch_s" in configs.columns else None
    return table
