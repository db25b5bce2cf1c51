"""Plotly figures of the quality/cost trade-off.

The LDDGAN paper's central comparison is FID against sampling time for a batch of 100 (Table 3
and Fig. 1 of seeds/lddgan-paper.txt); genbench draws it from its records, plus FID against NFE.
FID values from different feature extractors or different datasets are not comparable, so each
(extractor, dataset) pair gets a figure of its own: no axis ever mixes two extractors.
Failed cells and cells without an FID are not plotted; the summary table lists them.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from genbench.report.tables import extractor_of, quality_column

__all__ = [
    "fid_vs_nfe_figures",
    "fid_vs_time_figures",
    "hover_text",
    "pareto_front",
    "report_figures",
]

FIGURE_HEIGHT = 520


def hover_text(row: pd.Series) -> str:
    """The cell name, its headline numbers and its full configuration, one ``key=value`` a line."""
    lines = [f"<b>{html.escape(str(row['cell']))}</b>"]
    for label, column, unit in (
        ("FID", "fid", ""),
        ("time/batch", "time_per_batch_s", " s"),
        ("NFE", "nfe", ""),
        ("GMACs/sample", "gmacs_per_sample", ""),
    ):
        value = row.get(column)
        if isinstance(value, int | float) and math.isfinite(value):
            lines.append(f"{label}={value:.4g}{unit}")
    if isinstance(row.get("timing_device"), str):
        lines.append(f"timed on {html.escape(row['timing_device'])}")
    config = row.get("config_flat")
    if isinstance(config, str) and config:
        lines.extend(html.escape(line) for line in config.splitlines())
    return "<br>".join(lines)


def pareto_front(x: list[float], y: list[float]) -> list[int]:
    """Indices of the points not dominated (lower x and lower y are better), sorted by x."""
    order = sorted(range(len(x)), key=lambda i: (x[i], y[i]))
    front, best = [], math.inf
    for i in order:
        if y[i] < best:
            front.append(i)
            best = y[i]
    return front


def _plottable(df: pd.DataFrame, x_column: str) -> pd.DataFrame:
    """Rows with status ok, a finite FID and a positive ``x_column``; adds ``_extractor``."""
    if df.empty or "fid" not in df.columns or x_column not in df.columns:
        return df.iloc[0:0].assign(_extractor=[])
    fid = pd.to_numeric(df["fid"], errors="coerce")
    x = pd.to_numeric(df[x_column], errors="coerce")
    keep = (df["status"] == "ok") & fid.notna() & x.notna() & (x > 0)
    out = df[keep].copy()
    out["fid"], out[x_column] = fid[keep].astype(float), x[keep].astype(float)
    out["_extractor"] = extractor_of(df, "fid")[keep]
    out["dataset"] = out["dataset"].map(lambda d: d if isinstance(d, str) else "unknown dataset")
    return out


def _time_error_bars(group: pd.DataFrame) -> dict[str, Any] | None:
    """Half the interquartile range either side of the median time, where it was recorded."""
    if "time_per_batch_iqr_s" not in group.columns:
        return None
    iqr = pd.to_numeric(group["time_per_batch_iqr_s"], errors="coerce")
    if iqr.isna().all():
        return None
    half = [v / 2 if math.isfinite(v) else None for v in iqr.astype(float)]
    return {"type": "data", "array": half, "symmetric": True, "thickness": 1.2, "width": 4}


def _axis_note(group: pd.DataFrame) -> str:
    """Batch size(s) and device(s) of the timings, for the x-axis title."""
    parts = []
    for column, label in (("timing_batch_size", "batch"), ("timing_device", "device")):
        if column in group.columns:
            values = sorted({str(v) for v in group[column].dropna()})
            if values:
                parts.append(f"{label} {', '.join(values)}")
    return f" ({'; '.join(parts)})" if parts else ""


def _trade_off_figure(
    group: pd.DataFrame, x_column: str, x_title: str, kind: str, extractor: str, dataset: str
) -> go.Figure:
    """FID (one extractor, one dataset) against ``x_column`` (log axis) with its Pareto front."""
    x, y = group[x_column].tolist(), group["fid"].tolist()
    error_x = _time_error_bars(group) if x_column == "time_per_batch_s" else None
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers+text",
            text=group["cell"].tolist(),
            textposition="top center",
            textfont={"size": 9},
            hovertext=[hover_text(row) for _, row in group.iterrows()],
            hoverinfo="text",
            error_x=error_x,
            marker={"size": 10},
            name=f"{quality_column('fid', extractor)} ({len(x)} cells)",
        )
    )
    front = pareto_front(x, y)
    if len(front) > 1:
        figure.add_trace(
            go.Scatter(
                x=[x[i] for i in front],
                y=[y[i] for i in front],
                mode="lines",
                line={"dash": "dash", "shape": "hv"},
                hoverinfo="skip",
                name="Pareto front",
            )
        )
    figure.update_layout(
        title=f"{quality_column('fid', extractor)} vs {x_title.split(' [')[0]} - {dataset}",
        xaxis={"type": "log", "title": {"text": x_title + _axis_note(group)}},
        yaxis={"title": {"text": f"FID ({extractor}, lower is better)"}},
        height=FIGURE_HEIGHT,
        meta={"kind": kind, "extractor": extractor, "dataset": dataset},
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def _figures(df: pd.DataFrame, x_column: str, x_title: str, kind: str) -> list[go.Figure]:
    points = _plottable(df, x_column)
    return [
        _trade_off_figure(group, x_column, x_title, kind, extractor, dataset)
        for (extractor, dataset), group in points.groupby(["_extractor", "dataset"], sort=True)
    ]


def fid_vs_time_figures(df: pd.DataFrame) -> list[go.Figure]:
    """FID against median time per batch (log x), error bars +-IQR/2; one figure per extractor
    and dataset. ``figure.layout.meta`` holds ``{"kind", "extractor", "dataset"}``."""
    return _figures(df, "time_per_batch_s", "time per batch [s]", "fid_vs_time")


def fid_vs_nfe_figures(df: pd.DataFrame) -> list[go.Figure]:
    """FID against the number of function evaluations (log x); one figure per extractor/dataset."""
    return _figures(df, "nfe", "NFE [network evaluations per sample]", "fid_vs_nfe")


def report_figures(df: pd.DataFrame) -> list[go.Figure]:
    """Every figure of the report, FID vs time first."""
    return fid_vs_time_figures(df) + fid_vs_nfe_figures(df)
