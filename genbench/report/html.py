"""One self-contained HTML report: trade-off figures, the paper-style tables and sample grids.

The page inlines plotly.js once and embeds every sample grid as a base64 data URI, so it opens
offline and can be mailed as a single file. Beside it go the summary table (CSV) and the LDDGAN
paper's Table 2 (cost) and Table 3 (quality, speed) as CSV, Markdown and LaTeX (Trinh and Hamagami
2024; :mod:`genbench.report.paper_tables`). Every file is written atomically
(:func:`genbench._io.atomic_write_text`), as records are.

Published numbers come from ``baselines/*.yaml`` and from records' ``config.paper`` blocks
(:mod:`genbench.report.paper`); they are drawn as "reported" points only on figures of their own
feature extractor and dataset, and listed in separate "reported" table sections.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from genbench._io import atomic_write_text
from genbench.report.export import display_value, sections, write_table
from genbench.report.figures import FIGURE_HEIGHT, Panel, report_panels
from genbench.report.paper import paper_points
from genbench.report.paper_tables import TABLE2_NOTE, TABLE3_NOTE, table2, table3
from genbench.report.seeds import ranking_warnings, seeds_table
from genbench.report.tables import is_scored, summary_table

__all__ = ["MAIN_FIGURE_ID", "write_report"]

MAIN_FIGURE_ID = "genbench-figure-0"
FID_BARS = (
    "Error bars on FID: [min, max] over training seeds for a configuration trained under several "
    "seeds (n > 1); otherwise the 95% sampling interval of the generated set given the "
    "reference set (fid_ci, from half-samples of the same features), which says how much FID "
    "would move with another set of generated samples from the same model, not with another "
    "training run. Points without either have no FID bar."
)
_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.summary { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }
table.summary th, table.summary td { border: 1px solid #ccc; padding: 3px 6px; }
table.summary th { background: #f3f3f3; }
table.summary td.num { text-align: right; white-space: nowrap; }
table.summary td.text { text-align: left; }
table.summary td.notes { min-width: 30em; font-size: 0.9em; }
.grids { display: flex; flex-wrap: wrap; gap: 1.5em; }
.grids figure { margin: 0; max-width: 300px; }
.grids img { width: 256px; image-rendering: pixelated; border: 1px solid #ccc; }
.grids figcaption { font-size: 0.8em; word-break: break-all; }
.note { color: #a33; }
.remark { max-width: 60em; font-size: 0.9em; color: #444; }
"""
TABLES = {
    "table2": ("Table 2: cost per sample", TABLE2_NOTE),
    "table3": ("Table 3: quality and speed", TABLE3_NOTE),
}


def _data_uri(path: Path) -> str | None:
    """The image as a ``data:`` URI, or None when it is absent or not an image type we embed."""
    mime = _IMAGE_TYPES.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return None
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _figure_html(figure: go.Figure, index: int) -> str:
    return figure.to_html(
        full_html=False,
        include_plotlyjs=(index == 0),  # inlined once, no CDN: the page works offline
        div_id=f"genbench-figure-{index}",  # fixed ids keep the page reproducible
        default_height=f"{FIGURE_HEIGHT}px",
    )


def _panels_html(panels: list[Panel]) -> str:
    if not panels:
        return "<p>No cell has an FID yet and no published numbers apply; nothing to plot.</p>"
    parts, index = [], 0
    measured = [p for p in panels if p.measured]
    reported_only = [p for p in panels if not p.measured]
    for heading, group in (("Trade-off", measured), ("Published trade-offs", reported_only)):
        if not group:
            continue
        parts.append(f"<h2>{heading}</h2>")
        if heading == "Trade-off":
            parts.append(f"<p class='remark'>{html.escape(FID_BARS)}</p>")
        if heading == "Published trade-offs":
            parts.append("<p class='remark'>No measured cell uses these feature extractors and "
                         "datasets; the points are the papers' reported numbers only.</p>")
        for panel in group:
            counts = (f"{panel.measured} measured configurations, {panel.reported} reported "
                      f"points")
            parts.append(f"<h3>{html.escape(panel.title)} ({counts})</h3>")
            for figure in panel.figures:
                parts.append(_figure_html(figure, index))
                index += 1
    return "\n".join(parts)


def _scored_html(df: pd.DataFrame) -> str:
    """Where the records of scored images (``genbench eval``) are, and why not on a cost axis."""
    count = int(is_scored(df).sum()) if not df.empty else 0
    if not count:
        return ""
    return (f"<p class='remark' id='scored'>{count} record(s) score given images "
            f"(<code>genbench eval</code>): there is no generator behind them, so no sampling "
            f"time, NFE or cost. They are drawn as dotted horizontal lines at their FID on the "
            f"figures with a cost axis (not as points: they have no place on it), as "
            f"<code>x</code> points on recall against FID, and listed in Table 3 and the "
            f"summary; Table 2 (cost) and the training-seeds table leave them out.</p>")


def _table_html(table: pd.DataFrame) -> str:
    """An HTML table: numbers right-aligned (class ``num``), text left-aligned, notes wrapped."""
    if table.empty:
        return "<p>No records.</p>"
    classes = [
        "num" if pd.api.types.is_numeric_dtype(table[c]) else ("text notes" if c == "note"
                                                                 else "text")
        for c in table.columns
    ]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = [
        "<tr>" + "".join(f"<td class='{k}'>{html.escape(display_value(v))}</td>"
                         for k, v in zip(classes, row)) + "</tr>"
        for row in table.astype(object).itertuples(index=False)
    ]
    return (f"<table class='summary'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _paper_table_html(key: str, table: pd.DataFrame, files: dict[str, Path]) -> str:
    title, note = TABLES[key]
    links = ", ".join(
        f"<a href='{html.escape(p.name)}'>{suffix}</a>" for suffix, p in sorted(files.items())
    )
    parts = [f"<h2>{html.escape(title)}</h2>", f"<p class='remark'>Also written as {links}.</p>"]
    for heading, part in sections(table):
        parts += [f"<h3>{html.escape(heading)}</h3>", _table_html(part)]
    if len(parts) == 2:
        parts.append("<p>No rows.</p>")
    parts.append(f"<p class='remark'>{html.escape(note)}</p>")
    return "\n".join(parts)


def _seeds_html(df: pd.DataFrame, csv: Path) -> str:
    """Each configuration over its training seeds (mean ± std [min, max], n), and the pairs
    whose intervals overlap (their ranking is not supported)."""
    table = seeds_table(df, text=True)
    warnings = ranking_warnings(df)
    parts = ["<h2 id='seeds'>Training seeds</h2>",
             "<p class='remark'>Cells that differ only in <code>seed</code> and the seeds of a "
             "<code>train.seeds=N</code> cell are replicates of one configuration: quality is "
             "shown as mean ± sample standard deviation [min, max] over the seeds, n the number "
             "of seeds; each figure draws one point per configuration at the mean, with error "
             "bars from the lowest to the highest seed (for n=1, a single training run, the FID "
             "bar is its 95% sampling interval instead) and the timing quartiles on the time "
             "axis. FID 95% CI is the sampling interval where a configuration is one record "
             "(of the mean over its seeds for a train.seeds=N record); "
             "FID-infinity is FID extrapolated to infinitely many samples. Also written as "
             f"<a href='{html.escape(csv.name)}'>csv</a>.</p>",
             _table_html(table) if not table.empty else "<p>No ok records.</p>"]
    if warnings:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in warnings)
        parts.append(f"<h3>Rankings not supported</h3><ul class='note' id='ranking-warnings'>"
                     f"{items}</ul>")
    return "\n".join(parts)


def _recipes_html(df: pd.DataFrame) -> str:
    """The distinct metric recipes (extractor, sample counts ...) behind the numbers."""
    seen: dict[str, str] = {}
    for recipes in df["metric_recipes"]:
        for metric, recipe in (recipes or {}).items():
            text = json.dumps(recipe, sort_keys=True, default=str)
            seen.setdefault(f"{metric}: {text}", metric)
    if not seen:
        return ""
    items = "".join(f"<li><code>{html.escape(key)}</code></li>" for key in sorted(seen))
    return f"<h2>Metric recipes</h2><ul>{items}</ul>"


def _not_plotted_html(df: pd.DataFrame) -> str:
    fid = pd.to_numeric(df["fid"], errors="coerce") if "fid" in df.columns else None
    rows = []
    for i, row in df.iterrows():
        if row["status"] != "ok":
            reason = f"{row['status']}: {row.get('error') or 'no error message'}"
        elif fid is None or pd.isna(fid[i]):
            reason = f"no FID ({row.get('missing') or 'not recorded'})"
        else:
            continue
        rows.append(f"<li>{html.escape(str(row['cell']))}: {html.escape(str(reason))}</li>")
    skipped = [
        f"<li>{html.escape(path)}: unreadable record ({html.escape(reason)})</li>"
        for path, reason in df.attrs.get("skipped", [])
    ]
    if not rows and not skipped:
        return ""
    return f"<h2>Not plotted</h2><ul class='note'>{''.join(rows + skipped)}</ul>"


def _compute_html(df: pd.DataFrame) -> str:
    """Says how the models were trained: to which training-compute budgets (equal compute when
    one budget), or epochs; what each consumed is in the summary table's train columns."""
    if "train_images" not in df.columns or df["train_images"].isna().all():
        return ""
    budgets = sorted({str(b) for b in df.get("train_budget", pd.Series(dtype=object)).dropna()})
    unbudgeted = int((df["train_images"].notna() & df.get(
        "train_budget", pd.Series([None] * len(df), index=df.index)).isna()).sum())
    if len(budgets) == 1 and not unbudgeted:
        kind = budgets[0].split(":")[0]
        equal = {"macs": "equal training compute (MACs)", "images": "equal images seen",
                 "seconds": "equal device seconds of training"}.get(kind, "equal budget")
        text = (f"Every model was trained to the same training-compute budget "
                f"(train.budget={html.escape(budgets[0])}): the cells compare the methods at "
                f"{equal}, not at equal epochs.")
    elif budgets:
        text = (f"Models were trained to different training-compute budgets "
                f"({html.escape(', '.join(budgets))})"
                + (f" and {unbudgeted} record(s) to their epochs" if unbudgeted else "")
                + "; compare cells at equal compute only within one budget.")
    else:
        text = ("The models were trained for a number of epochs, not to a compute budget: a GAN "
                "step costs more than an eps step, so equal epochs are not equal compute.")
    return (f"<p class='remark'>{text} The training compute each model consumed (images, steps, "
            f"training MACs, device seconds) is in the summary table.</p>")


def _grids_html(df: pd.DataFrame) -> str:
    figures = []
    for _, row in df.iterrows():
        path = row.get("samples_path")
        uri = _data_uri(Path(path)) if isinstance(path, str) else None
        if uri:
            caption = html.escape(f"{row['experiment']}/{row['cell']}")
            figures.append(
                f"<figure><img alt='samples of {caption}' src='{uri}'>"
                f"<figcaption>{caption}</figcaption></figure>"
            )
    return f"<h2>Samples</h2><div class='grids'>{''.join(figures)}</div>" if figures else ""


def _page(df: pd.DataFrame, body: list[str], title: str, has_paper: bool) -> str:
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no records"
    paper_note = (
        " Open diamonds are published numbers (reported by their papers, not measured by "
        "genbench), drawn only with the feature extractor and dataset they were measured with."
        if has_paper else ""
    )
    head = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(df)} records ({html.escape(status)}). Quality numbers from different feature "
        f"extractors are in separate columns and figures; they are not comparable.{paper_note}</p>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(part for part in head + body if part)
        + "\n</body></html>\n"
    )


def write_report(
    df: pd.DataFrame,
    out_html: Path,
    title: str = "genbench report",
    *,
    include_paper: bool = True,
    baselines_dir: Path | None = None,
) -> dict[str, Path]:
    """Write the report page ``out_html`` and its tables beside it.

    ``df`` is :func:`~genbench.report.tables.load_records`' frame. Published numbers come from
    ``baselines_dir`` (default: genbench's ``baselines/``) and from the records' own
    ``config.paper`` blocks, unless ``include_paper`` is False. Returns the paths by kind:
    ``html``, ``csv`` (the summary table, ``<out>.csv``), ``seeds_csv`` (each configuration's
    mean, std, min and max over its training seeds and n, ``<out>.seeds.csv``) and
    ``table2_csv``, ``table2_md``, ``table2_tex``, ``table3_csv``, ``table3_md``, ``table3_tex``
    (``<out>.table2.csv`` ...).
    """
    out_html = Path(out_html)
    paper = paper_points(df, baselines_dir) if include_paper else None
    written: dict[str, Path] = {"html": out_html, "csv": out_html.with_suffix(".csv")}
    summary = summary_table(df)
    atomic_write_text(written["csv"], summary.to_csv(index=False))
    written["seeds_csv"] = out_html.with_suffix(".seeds.csv")
    atomic_write_text(written["seeds_csv"], seeds_table(df).to_csv(index=False))
    tables_html = []
    for key, table in (("table2", table2(df, paper)), ("table3", table3(df, paper))):
        title_, note = TABLES[key]
        files = write_table(table, out_html.with_suffix(f".{key}"), title_, note)
        written |= {f"{key}_{suffix}": path for suffix, path in files.items()}
        tables_html.append(_paper_table_html(key, table, files))
    body = [
        _scored_html(df),
        _panels_html(report_panels(df, paper)),
        _seeds_html(df, written["seeds_csv"]),
        *tables_html,
        "<h2>Summary of all records</h2>",
        _compute_html(df),
        _table_html(summary),
        _not_plotted_html(df),
        _recipes_html(df),
        _grids_html(df),
    ]
    has_paper = paper is not None and not paper.empty
    atomic_write_text(out_html, _page(df, body, title, has_paper))
    return written
