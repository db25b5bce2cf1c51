"""The LDDGAN paper's tables, built from genbench records and from published numbers.

Table 2 of the LDDGAN paper (Trinh and Hamagami 2024) reports cost per sample (parameters, FLOPs,
memory for one sample on one GPU) and Table 3 reports quality and speed on CIFAR-10 (FID, recall,
NFE, time for a batch of 100). genbench builds both for its measured cells and, in rows marked
``reported: ...``, for the published numbers of :func:`~genbench.report.paper.paper_points`.
Reported rows are never merged into measured ones: the ``source`` column says which is which.

The paper's "FLOPs" are multiply-adds (fvcore's convention: its Table 2 numbers equal the conv and
linear multiply-adds of the official generators), so genbench reports GMACs. The generator (per
forward) and the decoder are separate columns, because LDDGAN's 1.72 GFLOPs "including the
decoder" cannot be reproduced: the decoder of the official CIFAR-10 autoencoder
(thanhluantrinh/LDDGAN) alone costs 3.61 GMACs. Quality columns carry their feature extractor
(``FID [inception-v3-compat]``), so a published FID shares a column only with measurements from
the same extractor.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from genbench.report.tables import (
    QUALITY_METRICS,
    ci_column,
    extractor_of,
    interval_text,
    is_scored,
    quality_column,
    short_names,
    timing_flags,
)

__all__ = [
    "MEASURED",
    "TABLE2_NOTE",
    "TABLE3_NOTE",
    "reported_label",
    "table2",
    "table3",
]

MEASURED = "measured"
# Table 3's quality columns: FID and recall as papers report them, and recall on Inception
# features (measured only, without VGG16 weights: papers report VGG16 recall).
PAPER_QUALITY = ("fid", "recall")
MEASURED_QUALITY = (*PAPER_QUALITY, "recall[inception]")
TABLE2_NOTE = (
    "GMACs count one multiply-add once (the fvcore convention the paper's 'FLOPs' use). genbench "
    "reports the generator per forward and the decoder separately; GMACs/sample = NFE x "
    "generator + decoder. LDDGAN's paper reports 1.72 GFLOPs 'including the decoder', but the "
    "official LDDGAN CIFAR-10 decoder (thanhluantrinh/LDDGAN) alone costs 3.61 GMACs per image "
    "(torch's FlopCounterMode, batch 1), so that reported number cannot include it. Measured "
    "memory [MB] is the peak at batch 1 on the timing device (method in its column); reported "
    "memory [GB] is the paper's, one sample on one GPU. Measured rows are named by what sets "
    "their cells apart; the cell column is the record's folder."
)
TABLE3_NOTE = (
    "FID and recall are only comparable within one feature extractor (the column name says "
    "which). FID 95% CI is genbench's sampling interval of the generated set given the "
    "reference set (half-samples; for a train.seeds=N cell, of the mean over seeds), not a "
    "spread over training seeds; FID-infinity is FID extrapolated to infinitely many samples "
    "(Chong and Forsyth 2020), rough from a few thousand samples. Reported times are the "
    "paper's, for a batch of 100 on the authors' GPU; measured times are medians over timing "
    "trials on the device named, with their interquartile range; a timing taken on another "
    "device, with another thread count or batch size than most, or under load, says so in "
    "'timing note' and cannot be compared with the others."
)


def reported_label(source_short: str) -> str:
    """The ``source`` cell of a published row: ``reported: <source>``."""
    return f"reported: {source_short}"


def _num(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if not df.empty else df


def _sum(*values: float) -> float:
    """Sum of the known values; NaN when none is known."""
    known = [v for v in values if not math.isnan(v)]
    return sum(known) if known else math.nan


def _identity(row: pd.Series, name: str, multi_experiment: bool) -> dict[str, Any]:
    identity: dict[str, Any] = {"source": MEASURED}
    if multi_experiment:
        identity["experiment"] = row["experiment"]
    identity |= {"name": name, "dataset": row["dataset"], "cell": row["cell"]}
    return identity


def _measured_cost(row: pd.Series, name: str, multi_experiment: bool) -> dict[str, Any]:
    denoiser, decoder = _num(row.get("params_denoiser")), _num(row.get("params_decoder"))
    total = _num(row.get("params"))
    method = row.get("memory_method")
    batch = row.get("memory_batch_size")
    return _identity(row, name, multi_experiment) | {
        "backbone": row.get("backbone"),
        "latent": row.get("latent"),
        "sampler": row.get("sampler"),
        "NFE": _num(row.get("nfe")),
        "params [M]": (total if not math.isnan(total) else _sum(denoiser, decoder)) / 1e6,
        "params denoiser [M]": denoiser / 1e6,
        "params decoder [M]": decoder / 1e6,
        "GMACs/forward": _num(row.get("gmacs_denoiser")),
        "GMACs decoder": _num(row.get("gmacs_decoder")),
        "GMACs/sample": _num(row.get("gmacs_per_sample")),
        "memory [MB]": _num(row.get("peak_memory_mb")),
        "memory method": (f"{method}, batch {batch}" if isinstance(method, str) and batch
                          else method),
        "note": None,
    }


def _reported_cost(point: pd.Series, multi_experiment: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"source": reported_label(point["source_short"])}
    if multi_experiment:
        row["experiment"] = None
    return row | {
        "name": point["method"],
        "dataset": point["dataset"],
        "NFE": point["nfe"],
        "params [M]": point["params_m"],
        "GMACs/forward": point["gflops"],  # the paper's FLOPs are multiply-adds
        "memory [GB]": point["memory_gb"],
        "memory method": "reported (one sample, one GPU)",
        "note": point["notes"],
    }


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    if "NFE" in frame.columns:
        frame["NFE"] = pd.to_numeric(frame["NFE"], errors="coerce").round().astype("Int64")
    for column in ("batch", "threads"):
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    return frame


def _leading_columns(df: pd.DataFrame) -> tuple[bool, list[str]]:
    multi = not df.empty and df["experiment"].nunique(dropna=True) > 1
    return multi, ["source", *(["experiment"] if multi else []), "name", "dataset", "cell"]


def _paper_rows(paper: pd.DataFrame | None) -> list[pd.Series]:
    if paper is None or paper.empty:
        return []
    return [point for _, point in paper.iterrows()]


def table2(df: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Cost, LDDGAN paper Table 2 style: measured ok cells, then the reported rows (scored
    images, ``genbench eval`` records, have no generator and so no row here).

    Columns: source, [experiment], name (measured rows: what sets the cell apart,
    :func:`~genbench.report.tables.short_names`; reported rows: the method), dataset, cell (the
    record's folder), backbone, latent, sampler, NFE, params [M] (denoiser + decoder), params
    denoiser [M], params decoder [M], GMACs/forward (the denoiser; for reported rows the paper's
    FLOPs), GMACs decoder, GMACs/sample, memory [MB] (measured peak), memory [GB] (reported),
    memory method, note.
    """
    multi, lead = _leading_columns(df)
    columns = [*lead, "backbone", "latent", "sampler", "NFE", "params [M]", "params denoiser [M]",
               "params decoder [M]", "GMACs/forward", "GMACs decoder", "GMACs/sample",
               "memory [MB]", "memory [GB]", "memory method", "note"]
    measured = _ok(df[~is_scored(df)]).sort_values(["dataset", "cell"], kind="stable",
                                                   na_position="last")
    names = short_names(measured)
    rows = [_measured_cost(row, name, multi)
            for (_, row), name in zip(measured.iterrows(), names)]
    rows += [_reported_cost(point, multi) for point in _paper_rows(paper)]
    return _frame(rows, columns)


def _quality_names(measured: pd.DataFrame, paper: pd.DataFrame | None) -> list[tuple[str, str]]:
    """(metric, extractor) pairs with at least one value, FID first, then recall (then
    recall[inception], measured only)."""
    pairs: set[tuple[str, str]] = set()
    for metric in MEASURED_QUALITY:
        if metric in measured.columns:
            values = pd.to_numeric(measured[metric], errors="coerce")
            pairs |= {(metric, e) for e in extractor_of(measured, metric)[values.notna()]}
        if metric not in PAPER_QUALITY:
            continue
        for point in _paper_rows(paper):
            if not math.isnan(point[metric]):
                extractor = point["extractor" if metric == "fid" else "recall_extractor"]
                pairs.add((metric, extractor))
    order = list(QUALITY_METRICS)
    return sorted(pairs, key=lambda pair: (order.index(pair[0]), pair[1]))


def _uncertainty_columns(measured: pd.DataFrame, extractor: str) -> list[str]:
    """FID's sampling interval and FID-infinity columns of ``extractor``, where some measured
    row has them."""
    columns = []
    fid_from = extractor_of(measured, "fid") == extractor
    if {"fid_ci_low", "fid_ci_high"} <= set(measured.columns) and (
            fid_from & pd.to_numeric(measured["fid_ci_low"], errors="coerce").notna()).any():
        columns.append(ci_column(extractor))
    if "fid_infinity" in measured.columns and (
            (extractor_of(measured, "fid_infinity") == extractor)
            & pd.to_numeric(measured["fid_infinity"], errors="coerce").notna()).any():
        columns.append(quality_column("fid_infinity", extractor))
    return columns


def _measured_quality(row: pd.Series, name: str, extractors: dict[str, str],
                      quality: list[tuple[str, str]], multi: bool, flag: Any) -> dict[str, Any]:
    out = _identity(row, name, multi) | {"NFE": _num(row.get("nfe"))}
    for metric, extractor in quality:
        same = extractors.get(metric) == extractor
        out[quality_column(metric, extractor)] = _num(row.get(metric)) if same else math.nan
        if metric == "fid" and same:
            out[ci_column(extractor)] = interval_text(row.get("fid_ci_low"),
                                                      row.get("fid_ci_high"))
            if extractors.get("fid_infinity") == extractor:
                out[quality_column("fid_infinity", extractor)] = _num(row.get("fid_infinity"))
    batch = row.get("timing_batch_size")
    return out | {
        "time/batch [s]": _num(row.get("time_per_batch_s")),
        "time IQR [s]": _num(row.get("time_per_batch_iqr_s")),
        "time CV": _num(row.get("timing_cv")),
        "batch": batch,
        "device": row.get("timing_device"),
        "threads": _num(row.get("timing_threads")),
        "timing note": flag if isinstance(flag, str) else None,
        "note": None,
    }


def _reported_quality(point: pd.Series, quality: list[tuple[str, str]], multi: bool
                      ) -> dict[str, Any]:
    out: dict[str, Any] = {"source": reported_label(point["source_short"])}
    if multi:
        out["experiment"] = None
    out |= {"name": point["method"], "dataset": point["dataset"], "NFE": point["nfe"]}
    own = {"fid": point["extractor"], "recall": point["recall_extractor"]}
    for metric, extractor in quality:
        out[quality_column(metric, extractor)] = (
            point[metric] if own.get(metric) == extractor else math.nan
        )
    return out | {
        "time/batch [s]": point["time_per_batch_s"],
        "batch": point["time_batch_size"],
        "device": point["device"],
        "note": point["notes"],
    }


def table3(df: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Quality and speed, LDDGAN paper Table 3 style: measured ok cells (scored images too,
    without NFE or time), then reported rows.

    Columns: source, [experiment], name (as in :func:`table2`), dataset, cell, NFE,
    ``FID [<extractor>]`` (followed by
    ``FID 95% CI [<extractor>]``, ``[low, high]``, and ``FID-infinity [<extractor>]`` where a
    measured cell has them) and ``recall [<extractor>]`` per extractor with a value,
    time/batch [s], time IQR [s], time CV (the trials' coefficient of variation), batch, device,
    threads, timing note (why the timing cannot be
    compared with the others, :func:`~genbench.report.tables.timing_flags`), note.
    """
    multi, lead = _leading_columns(df)
    measured = _ok(df).sort_values(["dataset", "cell"], kind="stable", na_position="last")
    quality = _quality_names(measured, paper)
    quality_columns = []
    for metric, extractor in quality:
        quality_columns.append(quality_column(metric, extractor))
        if metric == "fid":
            quality_columns += _uncertainty_columns(measured, extractor)
    columns = [*lead, "NFE", *quality_columns, "time/batch [s]", "time IQR [s]", "time CV",
               "batch", "device", "threads", "timing note", "note"]
    extractors = {
        metric: extractor_of(measured, metric) for metric in (*MEASURED_QUALITY, "fid_infinity")
    }
    flags = timing_flags(measured)
    rows = [
        _measured_quality(row, name, {m: extractors[m][i] for m in extractors}, quality, multi,
                          flags[i])
        for (i, row), name in zip(measured.iterrows(), short_names(measured))
    ]
    rows += [_reported_quality(point, quality, multi) for point in _paper_rows(paper)]
    return _frame(rows, columns)
