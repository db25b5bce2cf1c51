"""Plotly figures of the quality/cost trade-off.

The LDDGAN paper's central comparison is FID against sampling time for a batch of 100 (Trinh and
Hamagami 2024, Fig. 1 and Table 3); genbench draws it from its records, together with FID against
NFE, recall against FID and FID against GMACs per sample (Table 2's cost). Without VGG16 weights
recall is measured on Inception features instead, as ``recall[inception]``, in figures of its own.

FID values from different feature extractors or different datasets are not comparable, so each
(FID extractor, dataset) pair is a *panel* with figures of its own: no axis ever mixes two
extractors (recall figures are split by the recall extractor as well). Published numbers
(:mod:`genbench.report.paper`) appear as separate open-diamond traces named
``<method> (reported, <source>)``, only in panels of their own extractor and dataset; a panel
with reported points and no measured cell is still drawn. The Pareto front is that of the
measured cells. Failed cells and cells without the plotted numbers are not drawn; the summary
table lists them. Replicates of one configuration over training seeds are one point
(:func:`genbench.report.seeds.configurations`): the mean, with error bars from the lowest to the
highest seed on quality axes and the timing quartiles on the time axis; every point's label says
its n. Every FID axis (y, or x of recall vs FID) carries an error bar for each point that has an
interval (:func:`genbench.report.seeds.fid_interval`): [min, max] over training seeds when
n > 1, else the 95% sampling interval of the generated set (``fid_ci``, asymmetric); the hover
text says which.

``figure.layout.meta`` holds ``{"kind", "extractor", "dataset", "measured", "reported"}``
(``"recall_extractor"`` too on recall figures) and ``"scored"``; each trace's ``meta["role"]`` is
``"measured"``, ``"paper"``, ``"pareto"`` or ``"scored"``.

Scored images (``genbench eval`` records: samples from elsewhere, no generator in genbench) have
quality numbers but no sampling time, NFE or cost. They are never placed on a cost axis: on a
figure of FID against a cost they are a dotted horizontal line at their FID across the figure
(a level to compare the cells with, at no particular cost), on recall against FID they are points
(``x`` markers) of their own trace; they are not part of the Pareto front, which is that of the
generated cells. A panel with scored images only has just its recall-vs-FID figure.
"""

from __future__ import annotations

import html
import math
import re
import textwrap
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from genbench.report.paper import PAPER_COLUMNS, same_dataset
from genbench.report.replicates import SEED_METRICS
from genbench.report.seeds import configurations, fid_interval
from genbench.report.tables import (
    SCORED,
    finite_values,
    interval_text,
    is_scored,
    measured_rows,
    quality_column,
    short_names,
    timing_flags,
)

__all__ = [
    "FIGURE_KINDS",
    "Panel",
    "fid_vs_gmacs_figures",
    "fid_vs_time_figures",
    "fid_vs_training_macs_figures",
    "hover_text",
    "pareto_front",
    "recall_vs_fid_figures",
    "report_figures",
    "report_panels",
    "samples_id",
]

FIGURE_HEIGHT = 520
MEASURED_COLOR = "#1F3B73"
# Measured families (what differs across the cells: sampler, latent, backbone): the first field
# that differs picks the colour (Dark2, starting from genbench's blue), the second the symbol.
# Diamonds are the published points' and x the scored images', so families never use them.
FAMILY_FIELDS = ("sampler", "latent", "backbone")
FAMILY_COLORS = ("#1F3B73", "#1B9E77", "#D95F02", "#7570B3", "#E7298A", "#66A61E", "#E6AB02",
                 "#A6761D", "#666666")
FAMILY_SYMBOLS = ("circle", "square", "triangle-up", "star", "pentagon", "hexagon", "cross",
                  "triangle-down")
# Published methods keep one colour on every figure of the page (D3 without its blue).
PAPER_COLORS = ("#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F",
                "#BCBD22", "#17BECF")
PAPER_MARKER = {"symbol": "diamond-open", "size": 13, "line": {"width": 2}}


@dataclass(frozen=True)
class _Kind:
    """One kind of trade-off figure: which columns go on which axis."""

    name: str
    x: str  # column of the measured frame
    y: str
    paper_x: str  # column of the paper frame
    paper_y: str
    x_title: str
    log_x: bool
    y_higher_is_better: bool = False


FIGURE_KINDS: dict[str, _Kind] = {
    k.name: k
    for k in (
        _Kind("fid_vs_time", "time_per_batch_s", "fid", "time_per_batch_s", "fid",
              "time per batch [s]", True),
        _Kind("fid_vs_nfe", "nfe", "fid", "nfe", "fid",
              "NFE [network evaluations per sample]", True),
        _Kind("recall_vs_fid", "fid", "recall", "fid", "recall", "FID", False, True),
        # without VGG16 weights: recall on the Inception's pool features, a figure of its own
        # (papers report VGG16 recall: no published point lands here)
        _Kind("recall_inception_vs_fid", "fid", "recall[inception]", "fid",
              "recall[inception]", "FID", False, True),
        _Kind("fid_vs_gmacs", "gmacs_per_sample", "fid", "gmacs_per_sample", "fid",
              "GMACs per sample (NFE x denoiser + decoder)", True),
        # quality against the compute the model's training consumed (genbench.training.budget):
        # measured cells only; papers do not report training MACs in a comparable way
        _Kind("fid_vs_training_macs", "train_macs", "fid", "training_macs", "fid",
              "training MACs consumed [forward + backward, measure_flops]", True),
    )
}  # fmt: skip


@dataclass
class Panel:
    """The figures of one FID extractor on one dataset (at one resolution)."""

    extractor: str
    dataset: str
    resolution: int | None
    measured: int  # ok cells with an FID
    reported: int  # paper points
    figures: list[go.Figure]

    @property
    def title(self) -> str:
        label = _dataset_label(self.dataset, self.resolution)
        return f"{quality_column('fid', self.extractor)} - {label}"


def _dataset_label(dataset: str, resolution: int | None) -> str:
    return dataset if resolution is None else f"{dataset} ({resolution} px)"


def samples_id(cell: Any) -> str:
    """The HTML id of a cell's sample grid in the report (a point's ``customdata[0]``)."""
    return "samples-" + re.sub(r"[^A-Za-z0-9_-]", "_", str(cell))


def _number(row: pd.Series, column: str) -> float | None:
    value = row.get(column)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def hover_text(row: pd.Series, name: str | None = None) -> str:
    """What sets the point apart (its short ``name``, else the cell), its metrics with their
    intervals, the conditions of its timing and where its record is; the full configuration is
    in the record, not here."""
    cells = row.get("cells") if isinstance(row.get("cells"), str) else row["cell"]
    lines = [f"<b>{html.escape(str(name or cells))}</b>"]
    n = row.get("n")
    if isinstance(n, int | float) and math.isfinite(n) and row.get("kind") != SCORED:
        seeds = row.get("seeds") if isinstance(row.get("seeds"), str) else ""
        lines.append(f"n={int(n)} training seed{'s' if n != 1 else ''}"
                     + (f" ({html.escape(seeds)}): mean, bars min..max" if n > 1 else ""))
    fid = _number(row, "fid")
    if fid is not None:
        fid_bar = fid_interval(row)
        text = f"FID {fid:.4g}"
        if fid_bar is not None:
            (low, high), kind = fid_bar
            what = ("min..max over training seeds" if kind == "seeds" else
                    "95% sampling interval of the generated set (half-samples)")
            text += f" {interval_text(low, high)}: {what}"
        lines.append(text)
        sampling = interval_text(row.get("fid_ci_low"), row.get("fid_ci_high"))
        if sampling and fid_bar is not None and fid_bar[1] == "seeds":  # train.seeds=N
            lines.append(f"FID 95% sampling interval of the mean {sampling}")
    quality = [f"{label} {value:.4g}" for label, value in (
        ("FID-infinity", _number(row, "fid_infinity")), ("precision", _number(row, "precision")),
        ("recall", _number(row, "recall")),
        ("recall[inception]", _number(row, "recall[inception]"))) if value is not None]
    if quality:
        lines.append(", ".join(quality))
    time = _number(row, "time_per_batch_s")
    if time is not None:
        q25, q75 = _number(row, "timing_q25_s"), _number(row, "timing_q75_s")
        spread = f" [{q25:.3g}, {q75:.3g}] quartiles" if q25 is not None and q75 is not None else ""
        conditions = [str(row[c]) if c == "timing_device" else f"{label} {int(row[c])}"
                      for c, label in (("timing_batch_size", "batch"), ("timing_device", ""),
                                       ("timing_threads", "threads"))
                      if (c == "timing_device" and isinstance(row.get(c), str))
                      or _number(row, c) is not None]
        lines.append(f"time/batch {time:.3g} s{spread}"
                     + (f" ({html.escape(', '.join(conditions))})" if conditions else ""))
    flag = row.get("_timing_flag")
    if isinstance(flag, str) and flag:
        lines.append(f"<b>timing not comparable</b>: {html.escape(flag)}")
    cost = [f"{label} {value:.4g}" for label, value in (
        ("NFE", _number(row, "nfe")), ("GMACs/sample", _number(row, "gmacs_per_sample")),
        ("training MACs", _number(row, "train_macs"))) if value is not None]
    if cost:
        lines.append(", ".join(cost))
    if isinstance(row.get("path"), str) and row.get("kind") != SCORED:
        lines.append(f"record: {html.escape(str(row.get('experiment')))}/"
                     f"{html.escape(str(row['cell']))}/result.json")
        lines.append("<i>click the point: its samples and record</i>")
    return "<br>".join(lines)


def paper_hover_text(point: pd.Series) -> str:
    """Method, the fact that it is reported, every published number, its source and notes."""
    lines = [f"<b>{html.escape(point['method'])}</b> (reported, not measured by genbench)"]
    for label, column in (("FID", "fid"), ("recall", "recall"), ("NFE", "nfe"),
                          ("time/batch [s]", "time_per_batch_s"), ("params [M]", "params_m"),
                          ("GFLOPs/forward", "gflops"), ("memory [GB]", "memory_gb")):
        value = point.get(column)
        if isinstance(value, float) and math.isfinite(value):
            lines.append(f"{label}={value:.4g}")
    if point.get("gmacs_derived") and math.isfinite(point.get("gmacs_per_sample", math.nan)):
        lines.append("GMACs/sample derived here: NFE x reported GFLOPs per forward")
    lines.append(f"FID extractor: {html.escape(point['extractor'])}; "
                 f"recall extractor: {html.escape(point['recall_extractor'])}")
    lines.append(f"dataset: {html.escape(point['dataset_label'])}; "
                 f"device: {html.escape(point['device'])}")
    lines.append(f"source: {html.escape(point['source'])}")
    if isinstance(point.get("notes"), str):
        wrapped = textwrap.wrap(f"notes: {point['notes']}", width=100)
        lines.extend(html.escape(line) for line in wrapped)
    lines.append(f"from {html.escape(point['origin'])}")
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


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame.columns:
        return pd.Series([math.nan] * len(frame), index=frame.index, dtype=float)
    return pd.to_numeric(frame[name], errors="coerce").astype(float)


def _plottable(frame: pd.DataFrame, kind: _Kind, paper: bool) -> pd.DataFrame:
    x, y = (kind.paper_x, kind.paper_y) if paper else (kind.x, kind.y)
    keep = finite_values(_column(frame, x), kind.log_x) & finite_values(_column(frame, y), False)
    return frame[keep]


def _time_error_bars(group: pd.DataFrame) -> dict[str, Any] | None:
    """Quartiles of the timing trials around the median: q25..q75 where recorded, else +-IQR/2."""
    median = _column(group, "time_per_batch_s")
    q25, q75 = _column(group, "timing_q25_s"), _column(group, "timing_q75_s")
    half_iqr = _column(group, "time_per_batch_iqr_s") / 2
    plus = (q75 - median).where(q75.notna() & q25.notna(), half_iqr)
    minus = (median - q25).where(q75.notna() & q25.notna(), half_iqr)
    if plus.isna().all():
        return None

    def values(series: pd.Series) -> list[float | None]:
        return [float(v) if math.isfinite(v) else None for v in series.clip(lower=0)]

    return {"type": "data", "array": values(plus), "arrayminus": values(minus),
            "symmetric": False, "thickness": 1.2, "width": 4}


def _axis_note(group: pd.DataFrame) -> str:
    """Batch size(s) and device(s) of the timings, for the x-axis title."""
    parts = []
    for column, label in (("timing_batch_size", "batch"), ("timing_device", "device")):
        if column in group.columns:
            values = sorted({str(v) for v in group[column].dropna()})
            if values:
                parts.append(f"{label} {', '.join(values)}")
    return f" ({'; '.join(parts)})" if parts else ""


def point_labels(group: pd.DataFrame) -> list[str]:
    """Short labels for a panel's points: only the fields that tell its cells apart
    (:func:`genbench.report.tables.short_names`)."""
    return short_names(group)


def _seed_error_bars(group: pd.DataFrame, column: str) -> dict[str, Any] | None:
    """[min, max] over training seeds around the mean (no bar for a configuration with n = 1)."""
    n = _column(group, "n")
    if not (n > 1).any():
        return None
    mean = _column(group, column)
    low, high = _column(group, f"{column}_min"), _column(group, f"{column}_max")

    def values(series: pd.Series) -> list[float | None]:
        return [float(v) if k > 1 and math.isfinite(v) else None
                for v, k in zip(series.clip(lower=0), n)]

    return {"type": "data", "array": values(high - mean), "arrayminus": values(mean - low),
            "symmetric": False, "thickness": 1.2, "width": 4}


def _fid_error_bars(group: pd.DataFrame) -> dict[str, Any] | None:
    """Per point: [min, max] over training seeds when n > 1, else its 95% sampling interval
    (``fid_ci``), else no bar (:func:`genbench.report.seeds.fid_interval`)."""
    plus: list[float | None] = []
    minus: list[float | None] = []
    for (_, row), centre in zip(group.iterrows(), _column(group, "fid")):
        interval = fid_interval(row)
        if interval is None or not math.isfinite(centre):
            plus.append(None)
            minus.append(None)
            continue
        low, high = interval[0]
        plus.append(max(high - centre, 0.0))
        minus.append(max(centre - low, 0.0))
    if all(v is None for v in plus):
        return None
    return {"type": "data", "array": plus, "arrayminus": minus, "symmetric": False,
            "thickness": 1.2, "width": 4}


def _error_bars(group: pd.DataFrame, column: str) -> dict[str, Any] | None:
    if column == "time_per_batch_s":
        return _time_error_bars(group)
    if column == "fid":
        return _fid_error_bars(group)
    return _seed_error_bars(group, column) if column in SEED_METRICS else None


def _with_n(labels: list[str], group: pd.DataFrame) -> list[str]:
    """Each label with the number of training seeds behind its point (n=1: a single run)."""
    n = _column(group, "n").tolist()
    return [f"{label} n={int(k) if math.isfinite(k) else 1}".strip() for label, k in zip(labels, n)]


@dataclass(frozen=True)
class _Style:
    """How a panel's measured families look: the fields that differ across its cells, the first
    one's colour per value and the second one's symbol per value."""

    fields: tuple[str, ...]
    colors: dict[str, str]
    symbols: dict[str, str]

    def family(self, row: pd.Series) -> tuple[str, ...]:
        return tuple(_text(row.get(f)) for f in self.fields)

    def name(self, family: tuple[str, ...]) -> str:
        return " ".join(f"{f}={v}" for f, v in zip(self.fields, family))


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _family_style(cells: pd.DataFrame) -> _Style:
    generated = cells[~is_scored(cells)] if not cells.empty else cells
    fields = tuple(f for f in FAMILY_FIELDS if f in generated.columns
                   and generated[f].map(_text).nunique() > 1)
    values = [sorted(set(generated[f].map(_text))) for f in fields[:2]]
    colors = {v: FAMILY_COLORS[i % len(FAMILY_COLORS)]
              for i, v in enumerate(values[0])} if values else {}
    symbols = {v: FAMILY_SYMBOLS[i % len(FAMILY_SYMBOLS)]
               for i, v in enumerate(values[1])} if len(values) > 1 else {}
    return _Style(fields, colors, symbols)


def _shown_labels(labels: list[str], group: pd.DataFrame, style: _Style) -> list[str]:
    """The text drawn beside each point: its label less the family's values (the legend and
    the colour say those), with its n when several seeds stand behind it."""
    shown = []
    for label, (_, row), k in zip(labels, group.iterrows(), _column(group, "n")):
        family = set(style.family(row))
        words = [w for w in label.split(" ") if w not in family]
        if math.isfinite(k) and k > 1:
            words.append(f"n={int(k)}")
        shown.append(" ".join(words))
    return shown


def _measured_traces(group: pd.DataFrame, kind: _Kind, style: _Style) -> list[go.Scatter]:
    """One trace per family (its legend entry hides or shows it); on the time axis, timings
    that cannot be compared with the rest are open markers and say why on hover."""
    labels = point_labels(group)
    texts = _with_n(labels, group)
    shown = _shown_labels(labels, group, style)
    families: dict[tuple[str, ...], list[int]] = {}
    for i, (_, row) in enumerate(group.iterrows()):
        families.setdefault(style.family(row), []).append(i)
    flags = ([isinstance(f, str) and bool(f) for f in group["_timing_flag"]]
             if kind.x == "time_per_batch_s" and "_timing_flag" in group.columns
             else [False] * len(group))
    traces = []
    for family, rows in sorted(families.items()):
        rows = sorted(rows, key=lambda i: flags[i])  # the legend shows the first point's marker
        part = group.iloc[rows]
        flagged = [flags[i] for i in rows]
        symbol = style.symbols.get(family[1], "circle") if len(family) > 1 else "circle"
        name = style.name(family) or (f"{_text(part['sampler'].iloc[0])} "
                                      f"({len(group)} configurations)".strip())
        traces.append(go.Scatter(
            x=_column(part, kind.x).tolist(),
            y=_column(part, kind.y).tolist(),
            mode="markers+text",
            text=[texts[i] for i in rows],
            customdata=[[samples_id(r["cell"]), shown[i]]
                        for i, (_, r) in zip(rows, part.iterrows())],
            texttemplate="%{customdata[1]}",
            textposition="top center",
            textfont={"size": 9},
            hovertext=[hover_text(r, labels[i]) for i, (_, r) in zip(rows, part.iterrows())],
            hoverinfo="text",
            error_x=_error_bars(part, kind.x),
            error_y=_error_bars(part, kind.y),
            marker={"size": 10, "color": style.colors.get(family[0], MEASURED_COLOR)
                    if family else MEASURED_COLOR,
                    "symbol": [f"{symbol}-open" if f else symbol for f in flagged],
                    "line": {"width": 2}},
            name=f"{name} (measured)",
            legendgroup=name,
            meta={"role": "measured", "family": dict(zip(style.fields, family)),
                  "timing_flagged": sum(flagged)},
        ))
    return traces


def _front_trace(group: pd.DataFrame, kind: _Kind) -> go.Scatter | None:
    """The staircase of the measured points no other beats on both axes; on the time axis only
    the timings that can be compared with each other (all of them when fewer than two can)."""
    if kind.x == "time_per_batch_s" and "_timing_flag" in group.columns:
        comparable = group[group["_timing_flag"].map(lambda f: not (isinstance(f, str) and f))]
        group = comparable if len(comparable) >= 2 else group
    x, y = _column(group, kind.x).tolist(), _column(group, kind.y).tolist()
    front = pareto_front(x, [-v for v in y] if kind.y_higher_is_better else y)
    if len(front) < 2:
        return None
    return go.Scatter(
        x=[x[i] for i in front],
        y=[y[i] for i in front],
        mode="lines",
        line={"dash": "dash", "color": "#888888", "shape": "hv"},  # the attainable staircase
        hoverinfo="skip",
        name="Pareto front (measured)",
        meta={"role": "pareto"},
    )


SCORED_COLOR = "#555555"


def _scored_traces(scored: pd.DataFrame, kind: _Kind, x_values: list[float]) -> list[go.Scatter]:
    """Scored images on one figure: points on recall vs FID; elsewhere (a cost on x, which they
    do not have) one dotted horizontal line per record at its FID, across ``x_values``' span."""
    if scored.empty:
        return []
    labels = point_labels(scored)
    hover = [hover_text(row) + "<br>scored images (genbench eval): no generator, so no "
             "sampling time, NFE or cost" for _, row in scored.iterrows()]
    if kind.name == "recall_vs_fid":
        return [go.Scatter(
            x=_column(scored, kind.x).tolist(), y=_column(scored, kind.y).tolist(),
            mode="markers+text", text=labels, textposition="bottom center",
            textfont={"size": 9}, hovertext=hover, hoverinfo="text",
            marker={"symbol": "x", "size": 11, "color": SCORED_COLOR},
            name=f"scored images ({len(scored)}, genbench eval)", meta={"role": "scored"})]
    finite = [x for x in x_values if math.isfinite(x) and (x > 0 or not kind.log_x)]
    if not finite:
        return []
    low, high = min(finite), max(finite)
    low, high = (low / 1.5, high * 1.5) if kind.log_x else (low - 0.05 * (high - low) - 0.5,
                                                            high + 0.05 * (high - low) + 0.5)
    traces = []
    for (_, row), label, text in zip(scored.iterrows(), labels, hover):
        fid = float(row[kind.y])
        traces.append(go.Scatter(
            x=[low, high], y=[fid, fid], mode="lines+text", text=["", label],
            textposition="top left", textfont={"size": 9, "color": SCORED_COLOR},
            line={"dash": "dot", "color": SCORED_COLOR, "width": 1.5},
            hovertext=[text, text], hoverinfo="text",
            name=f"{label}: FID {fid:.4g} (scored images, no {kind.x_title.split(' [')[0]})",
            meta={"role": "scored"}))
    return traces


def _method_colors(paper: pd.DataFrame) -> dict[str, str]:
    methods = sorted(set(paper["method"]))
    return {m: PAPER_COLORS[i % len(PAPER_COLORS)] for i, m in enumerate(methods)}


def _paper_traces(points: pd.DataFrame, kind: _Kind, colors: dict[str, str]) -> list[go.Scatter]:
    """One open-diamond trace per published method and source."""
    traces = []
    for (method, source), group in points.groupby(["method", "source_short"], sort=True):
        traces.append(
            go.Scatter(
                x=_column(group, kind.paper_x).tolist(),
                y=_column(group, kind.paper_y).tolist(),
                mode="markers+text",
                text=[f"{method} (reported)"] * len(group),
                textposition="bottom center",
                textfont={"size": 9},
                hovertext=[paper_hover_text(p) for _, p in group.iterrows()],
                hoverinfo="text",
                marker={**PAPER_MARKER, "color": colors.get(method)},
                name=f"{method} (reported, {source})",
                legendgroup="reported",
                meta={"role": "paper", "method": method, "source": source},
            )
        )
    return traces


def tick_text(value: float) -> str:
    """A log-axis tick as a number one reads (0.5, 20, 3e+12), not plotly's bare digit."""
    if value == 0 or 1e-4 <= abs(value) < 1e6:
        return f"{value:.6g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values on a log axis from ``low`` to ``high``: 1-2-5 per decade, every digit when
    that leaves fewer than three, decades only when it leaves more than ten, and the two ends
    (at two significant digits) when a range is too narrow for any."""
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high < low:
        return []
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    for mantissas in ((1, 2, 5), tuple(range(1, 10)), (1,)):
        ticks = [float(f"{m}e{e}") for e in range(first, last + 1) for m in mantissas]
        ticks = [t for t in ticks if low <= t <= high]
        if mantissas == (1, 2, 5) and len(ticks) > 10:
            continue
        if len(ticks) >= 3 or mantissas == (1,):
            break
    if len(ticks) < 2:
        ticks = sorted({float(f"{low:.2g}"), float(f"{high:.2g}"), *ticks})
    return ticks


def _x_extent(figure: go.Figure) -> tuple[float, float] | None:
    """The smallest and largest x any drawn point or error bar reaches (positive values)."""
    values: list[float] = []
    for trace in figure.data:
        xs = [float(v) for v in (trace.x or ()) if isinstance(v, int | float)]
        bars = trace.error_x if trace.error_x is not None else None
        plus = list(bars.array) if bars is not None and bars.array is not None else []
        minus = (list(bars.arrayminus) if bars is not None and bars.arrayminus is not None
                 else plus)
        for i, x in enumerate(xs):
            values.append(x)
            if i < len(plus) and plus[i] is not None:
                values.append(x + float(plus[i]))
            if i < len(minus) and minus[i] is not None:
                values.append(x - float(minus[i]))
    values = [v for v in values if math.isfinite(v) and v > 0]
    return (min(values), max(values)) if values else None


def _log_axis(figure: go.Figure) -> dict[str, Any]:
    """A log x axis whose range holds every point with a margin and whose ticks read as
    numbers (:func:`log_ticks`, :func:`tick_text`)."""
    extent = _x_extent(figure)
    if extent is None:
        return {"type": "log"}
    low, high = extent[0] / 1.25, extent[1] * 1.25
    ticks = log_ticks(low, high)
    return {"type": "log", "range": [math.log10(low), math.log10(high)], "tickmode": "array",
            "tickvals": ticks, "ticktext": [tick_text(t) for t in ticks]}


def _figure(measured: pd.DataFrame, points: pd.DataFrame, kind: _Kind, meta: dict[str, Any],
            colors: dict[str, str], scored: pd.DataFrame, style: _Style) -> go.Figure:
    extractor = meta["extractor"]
    dataset = _dataset_label(meta["dataset"], meta["resolution"])
    figure = go.Figure()
    if not measured.empty:
        for trace in _measured_traces(measured, kind, style):
            figure.add_trace(trace)
        front = _front_trace(measured, kind)
        if front is not None:
            figure.add_trace(front)
    x_values = [*_column(measured, kind.x).tolist(), *_column(points, kind.paper_x).tolist()]
    for trace in _scored_traces(scored, kind, x_values):
        figure.add_trace(trace)
    for trace in _paper_traces(points, kind, colors):
        figure.add_trace(trace)
    fid_title = f"FID ({extractor}, lower is better)"
    if kind.name == "recall_vs_fid":
        x_title = fid_title
        y_title = f"recall ({meta['recall_extractor']}, higher is better)"
        title = f"recall vs {quality_column('fid', extractor)} - {dataset}"
    elif kind.name == "recall_inception_vs_fid":
        x_title = fid_title
        y_title = "recall[inception] (Inception pool features, k = 3, higher is better)"
        title = f"recall[inception] vs {quality_column('fid', extractor)} - {dataset}"
    else:
        x_title, y_title = kind.x_title, fid_title
        title = f"{quality_column('fid', extractor)} vs {kind.x_title.split(' [')[0]} - {dataset}"
    flagged = 0
    if kind.name == "fid_vs_time":
        x_title += _axis_note(measured)
        flagged = sum(t.meta.get("timing_flagged", 0) for t in figure.data
                      if t.meta and t.meta.get("role") == "measured")
    if flagged:
        figure.add_annotation(
            text=(f"open markers: {flagged} timing(s) that cannot be compared with the others "
                  "(another device, thread count or batch size, or taken under load; hover "
                  "says which); the Pareto front leaves them out"),
            xref="paper", yref="paper", x=0, y=1.0, xanchor="left", yanchor="bottom",
            showarrow=False, font={"size": 10, "color": "#A33"})
    xaxis = _log_axis(figure) if kind.log_x else {"type": "linear"}
    figure.update_layout(
        title=title,
        xaxis={**xaxis, "title": {"text": x_title}},
        yaxis={"title": {"text": y_title}},
        height=FIGURE_HEIGHT,
        meta={**meta, "kind": kind.name, "measured": len(measured), "reported": len(points),
              "scored": len(scored), "timing_flagged": flagged},
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def _kind_figures(measured: pd.DataFrame, points: pd.DataFrame, kind: _Kind,
                  base: dict[str, Any], colors: dict[str, str], style: _Style
                  ) -> list[go.Figure]:
    """The figures of one kind in one panel (recall figures: one per recall extractor); scored
    images are drawn on the figures the generated cells or the paper points make."""
    scored = measured[is_scored(measured)]
    measured = _plottable(measured[~is_scored(measured)], kind, paper=False)
    points = _plottable(points, kind, paper=True)
    if kind.name != "recall_vs_fid":
        if measured.empty and points.empty:
            return []
        return [_figure(measured, points, kind, base, colors, scored, style)]
    scored = _plottable(scored, kind, paper=False)
    recall_extractors = sorted(set(measured["_recall_extractor"]) | set(points["recall_extractor"])
                               | set(scored["_recall_extractor"]))
    return [
        _figure(measured[measured["_recall_extractor"] == r],
                points[points["recall_extractor"] == r], kind, {**base, "recall_extractor": r},
                colors, scored[scored["_recall_extractor"] == r], style)
        for r in recall_extractors
    ]


_Key = tuple[str, str, "int | None"]  # (FID extractor, dataset, resolution)


def _paper_resolution(point: pd.Series) -> int | None:
    value = point["resolution"]
    return None if pd.isna(value) else int(value)


def _panel_keys(measured: pd.DataFrame, paper: pd.DataFrame) -> list[tuple[_Key, int]]:
    """Panel keys with their measured counts: most measured first, paper-only panels last."""
    counts: dict[_Key, int] = {}
    for key in zip(measured["_extractor"], measured["_dataset"], measured["_resolution"]):
        counts[key] = counts.get(key, 0) + 1
    for _, point in paper.iterrows():
        dataset, resolution = point["dataset"], _paper_resolution(point)
        if not any(e == point["extractor"] and same_dataset(dataset, resolution, d, r)
                   for e, d, r in counts):
            counts[(point["extractor"], dataset, resolution)] = 0
    return sorted(counts.items(), key=lambda item: (-item[1], item[0][:2], item[0][2] or 0))


def _empty_paper() -> pd.DataFrame:
    return pd.DataFrame(columns=list(PAPER_COLUMNS))


def report_panels(df: pd.DataFrame, paper: pd.DataFrame | None = None,
                  kinds: tuple[str, ...] = tuple(FIGURE_KINDS)) -> list[Panel]:
    """One :class:`Panel` per (FID extractor, dataset) with measured cells or paper points.

    ``paper`` is :func:`~genbench.report.paper.paper_points`' frame (None: no paper points).
    Panels with the most measured cells come first; the first figure of the first panel is the
    report's main figure (FID vs time when the panel has timings).
    """
    measured = measured_rows(configurations(df))  # one point per configuration over its seeds
    measured["_timing_flag"] = timing_flags(measured)
    paper = _empty_paper() if paper is None else paper
    colors = _method_colors(paper)
    panels = []
    for (extractor, dataset, resolution), count in _panel_keys(measured, paper):
        same_resolution = [r == resolution for r in measured["_resolution"]]
        cells = measured[(measured["_extractor"] == extractor)
                         & (measured["_dataset"] == dataset)
                         & pd.Series(same_resolution, index=measured.index, dtype=bool)]
        belongs = [
            p["extractor"] == extractor
            and same_dataset(p["dataset"], _paper_resolution(p), dataset, resolution)
            for _, p in paper.iterrows()
        ]
        points = paper[pd.Series(belongs, index=paper.index, dtype=bool)]
        base = {"extractor": extractor, "dataset": dataset, "resolution": resolution}
        style = _family_style(cells)
        figures = [f for name in kinds
                   for f in _kind_figures(cells, points, FIGURE_KINDS[name], base, colors, style)]
        if figures:
            panels.append(Panel(extractor, dataset, resolution, count, len(points), figures))
    return panels


def _figures_of(df: pd.DataFrame, paper: pd.DataFrame | None, kind: str) -> list[go.Figure]:
    return [f for panel in report_panels(df, paper, (kind,)) for f in panel.figures]


def fid_vs_time_figures(df: pd.DataFrame, paper: pd.DataFrame | None = None) -> list[go.Figure]:
    """FID against median time per batch (log x), error bars from the timing quartiles."""
    return _figures_of(df, paper, "fid_vs_time")


def recall_vs_fid_figures(df: pd.DataFrame, paper: pd.DataFrame | None = None
                          ) -> list[go.Figure]:
    """Recall against FID; one figure per FID extractor, recall extractor and dataset."""
    return _figures_of(df, paper, "recall_vs_fid")


def fid_vs_gmacs_figures(df: pd.DataFrame, paper: pd.DataFrame | None = None
                         ) -> list[go.Figure]:
    """FID against GMACs per sample (NFE x denoiser + decoder; log x)."""
    return _figures_of(df, paper, "fid_vs_gmacs")


def fid_vs_training_macs_figures(df: pd.DataFrame) -> list[go.Figure]:
    """FID against the training MACs each cell's model consumed (log x; measured cells)."""
    return _figures_of(df, None, "fid_vs_training_macs")


def report_figures(df: pd.DataFrame, paper: pd.DataFrame | None = None) -> list[go.Figure]:
    """Every figure of the report, panel by panel; the main figure first."""
    return [f for panel in report_panels(df, paper) for f in panel.figures]
