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
import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from genbench._io import atomic_write_text
from genbench.report.export import display_value, sections, write_table
from genbench.report.figures import FIGURE_HEIGHT, Panel, report_panels, samples_id
from genbench.report.paper import paper_points
from genbench.report.paper_tables import TABLE2_NOTE, TABLE3_NOTE, table2, table3
from genbench.report.seeds import ranking_warnings, seeds_table
from genbench.report.tables import (
    flatten_config,
    interval_text,
    is_scored,
    short_names,
    summary_table,
    timing_flags,
)

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
table.summary { border-collapse: collapse; font-size: 0.8em; margin-bottom: 1em; max-width: 100%; }
table.summary th, table.summary td { border: 1px solid #ccc; padding: 3px 5px; }
table.summary th { background: #f3f3f3; font-weight: 600; overflow-wrap: anywhere;
  min-width: 3.5em; }
table.summary td.num { text-align: right; white-space: nowrap; }
table.summary td.text { text-align: left; overflow-wrap: anywhere; }
table.summary td.notes { min-width: 16em; max-width: 36em; font-size: 0.9em; }
table.summary td.flag { color: #a33; }
div.scroll { overflow-x: auto; max-width: 100%; }
div.scroll table.summary { max-width: none; }
div.scroll table.summary td.text:not(.notes) { white-space: nowrap; }
div.scroll table.summary th { overflow-wrap: normal; }
p.every-row { font-size: 0.85em; color: #444; max-width: 90em; }
.grids { display: flex; flex-wrap: wrap; gap: 1.5em; }
.grids figure { margin: 0; max-width: 270px; padding: 4px; border: 2px solid transparent; }
.grids figure.selected { border-color: #D95F02; }
.grids img { width: 256px; image-rendering: pixelated; border: 1px solid #ccc; }
.grids figcaption { font-size: 0.8em; }
#sample-viewer { position: fixed; right: 1em; bottom: 1em; z-index: 10; background: #fff;
  border: 2px solid #D95F02; padding: 0.6em; max-width: 290px; box-shadow: 0 2px 8px #0004; }
#sample-viewer img { width: 256px; image-rendering: pixelated; }
#sample-viewer figure { margin: 0; }
#sample-viewer figcaption { font-size: 0.8em; }
#sample-viewer button { float: right; }
details.published > summary { cursor: pointer; font-size: 1.2em; font-weight: 600; margin: 1em 0; }
.note { color: #a33; }
.remark { max-width: 60em; font-size: 0.9em; color: #444; }
"""
# Clicking a measured point shows its sample grid (the figure whose id is the point's
# customdata[0]) in a panel, marks that grid and keeps the page where it is; opening the collapsed
# published panels redraws their figures at the page's width.
_SCRIPT = """<script>
(function () {
  function showSamples(id) {
    const viewer = document.getElementById('sample-viewer');
    const grid = document.getElementById(id);
    document.querySelectorAll('.grids figure.selected')
      .forEach(f => f.classList.remove('selected'));
    const body = viewer.querySelector('.viewer-body');
    if (grid) {
      grid.classList.add('selected');
      body.innerHTML = grid.innerHTML;
    } else {
      body.textContent = 'No sample grid was recorded for this point.';
    }
    viewer.dataset.shown = id;
    viewer.hidden = false;
  }
  window.genbenchShowSamples = showSamples;
  window.addEventListener('load', () => {
    document.querySelectorAll('.js-plotly-plot').forEach(gd => {
      gd.on('plotly_click', event => {
        const point = event.points && event.points[0];
        const data = point && point.customdata;
        if (Array.isArray(data) && typeof data[0] === 'string') showSamples(data[0]);
      });
    });
    document.querySelectorAll('details.published').forEach(d => d.addEventListener('toggle',
      () => d.querySelectorAll('.js-plotly-plot').forEach(gd => Plotly.Plots.resize(gd))));
    document.getElementById('sample-viewer-close').addEventListener('click',
      () => { document.getElementById('sample-viewer').hidden = true; });
  });
})();
</script>"""
_VIEWER = ("<div id='sample-viewer' hidden><button id='sample-viewer-close' type='button'>close"
           "</button><div class='viewer-body'></div></div>")
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


def _panel_html(panel: Panel, index: int) -> tuple[list[str], int]:
    counts = f"{panel.measured} measured configurations, {panel.reported} reported points"
    parts = [f"<h3>{html.escape(panel.title)} ({counts})</h3>"]
    for figure in panel.figures:
        parts.append(_figure_html(figure, index))
        index += 1
    return parts, index


def _panels_html(panels: list[Panel], published_elsewhere: bool = True) -> str:
    """The measured panels (with the published points of their own extractor and dataset), then
    the panels of published numbers alone in one collapsed section (or none of them)."""
    if not panels:
        return "<p>No cell has an FID yet and no published numbers apply; nothing to plot.</p>"
    parts, index = [], 0
    measured = [p for p in panels if p.measured]
    reported_only = [p for p in panels if not p.measured]
    if measured:
        parts += ["<h2>Trade-off</h2>", f"<p class='remark'>{html.escape(FID_BARS)} Colour and "
                  "symbol tell apart what differs across the cells (sampler, latent, backbone); "
                  "click a legend entry to hide that family, click a point to see its samples."
                  "</p>"]
        for panel in measured:
            more, index = _panel_html(panel, index)
            parts += more
    if reported_only and published_elsewhere:
        names = ", ".join(sorted({html.escape(p.title) for p in reported_only}))
        parts.append(f"<details class='published' id='published-elsewhere'><summary>Published "
                     f"trade-offs on datasets no record measured ({len(reported_only)} panels: "
                     f"{names})</summary><p class='remark'>No measured cell uses these feature "
                     "extractors and datasets; the points are the papers' reported numbers "
                     "only.</p>")
        for panel in reported_only:
            more, index = _panel_html(panel, index)
            parts += more
        parts.append("</details>")
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


def _every_row(table: pd.DataFrame, keep: tuple[str, ...]) -> tuple[pd.DataFrame, str]:
    """Text columns with one value in every row (two rows or more) leave the table and are said
    once above it; empty columns leave it too. ``keep`` columns always stay."""
    shown = table.astype(object).map(display_value)
    same, drop = [], []
    for column in table.columns:
        values = set(shown[column])
        if column in keep:
            continue
        if values == {""}:
            drop.append(column)
        elif (len(table) > 1 and len(values) == 1
              and not pd.api.types.is_numeric_dtype(table[column])):
            same.append(f"{column}: {next(iter(values))}")
            drop.append(column)
    line = ("<p class='every-row'>Every row: " + html.escape("; ".join(same)) + "</p>"
            if same else "")
    return table.drop(columns=drop), line


def _table_html(table: pd.DataFrame, keep: tuple[str, ...] = ("name",), hide: tuple[str, ...] = ()
                ) -> str:
    """An HTML table: numbers right-aligned (class ``num``), text left-aligned, notes wrapped;
    columns with one value in every row are said once above it (:func:`_every_row`); ``hide``
    columns (the cell's folder name, in the title of its name) are not drawn."""
    if table.empty:
        return "<p>No records.</p>"
    hidden = [c for c in hide if c in table.columns]
    titles = (table[hidden[0]].astype(object).map(display_value).tolist()
              if hidden and "name" in table.columns else None)
    table, line = _every_row(table.drop(columns=[c for c in hide if c in table.columns]), keep)
    classes = [
        "num" if pd.api.types.is_numeric_dtype(table[c]) else (
            "text notes" if c == "note" else "text notes flag" if c == "timing note" else "text")
        for c in table.columns
    ]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for i, row in enumerate(table.astype(object).itertuples(index=False)):
        cells = []
        for column, k, v in zip(table.columns, classes, row):
            title = (f" title='{html.escape(hidden[0])} {html.escape(titles[i])}'"
                     if titles and column == "name" and titles[i] else "")
            cells.append(f"<td class='{k}'{title}>{html.escape(display_value(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"{line}<table class='summary'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _paper_table_html(key: str, table: pd.DataFrame, files: dict[str, Path]) -> str:
    title, note = TABLES[key]
    links = ", ".join(
        f"<a href='{html.escape(p.name)}'>{suffix}</a>" for suffix, p in sorted(files.items())
    )
    parts = [f"<h2>{html.escape(title)}</h2>", f"<p class='remark'>Also written as {links}.</p>"]
    for heading, part in sections(table):
        parts += [f"<h3>{html.escape(heading)}</h3>", _table_html(part, hide=("cell",))]
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
             _table_html(table, hide=("cells",)) if not table.empty
             else "<p>No ok records.</p>"]
    if warnings:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in warnings)
        parts.append(f"<h3>Rankings not supported</h3><ul class='note' id='ranking-warnings'>"
                     f"{items}</ul>")
    return "\n".join(parts)


def _recipe_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _recipes_html(df: pd.DataFrame) -> str:
    """The metric recipes (extractor, sample counts ...) behind the numbers, once: what every
    recipe of every record shares in one table, then per metric what it sets on its own and
    which fields differ between records (outcomes such as fits and timings; those are in the
    records)."""
    by_metric: dict[str, list[dict[str, str]]] = {}
    for recipes in df["metric_recipes"]:
        for metric, recipe in (recipes or {}).items():
            flat = {k: _recipe_value(v) for k, v in flatten_config(
                recipe if isinstance(recipe, dict) else {"value": recipe}).items()}
            by_metric.setdefault(str(metric), []).append(flat)
    if not by_metric:
        return ""
    flats = [flat for group in by_metric.values() for flat in group]
    shared = {k: v for k, v in flats[0].items() if all(f.get(k) == v for f in flats)}
    rows = "".join(f"<tr><td class='text'>{html.escape(k)}</td><td class='text'>"
                   f"{html.escape(v)}</td></tr>" for k, v in sorted(shared.items()))
    items = []
    for metric, group in sorted(by_metric.items()):
        keys = sorted({k for f in group for k in f} - set(shared))
        own = [f"{k}={group[0][k]}" for k in keys
               if all(k in f and f[k] == group[0][k] for f in group)]
        varying = [k for k in keys if not all(k in f and f[k] == group[0].get(k) for f in group)]
        text = "; ".join(own) or "nothing else"
        if varying:
            text += f" (differs between records: {', '.join(varying)})"
        items.append(f"<li><b>{html.escape(metric)}</b> ({len(group)} record(s)): "
                     f"{html.escape(text)}</li>")
    return ("<h2 id='recipes'>Metric recipes</h2><p class='remark'>What every recipe shares is "
            "listed once, then what each metric sets on its own; the values that differ "
            "between records are in the records.</p>"
            f"<table class='summary'><thead><tr><th>shared by every recipe</th><th>value</th>"
            f"</tr></thead><tbody>{rows}</tbody></table><ul class='remark'>{''.join(items)}</ul>")


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


def _caption(row: pd.Series, name: str, record: str) -> str:
    """A grid's caption: the cell's short name, its metrics with intervals, its timing's flag
    and a link to its record."""
    parts = [f"<b>{html.escape(name)}</b>"]
    metrics = []
    fid = pd.to_numeric(pd.Series([row.get("fid")]), errors="coerce").iloc[0]
    if pd.notna(fid):
        ci = interval_text(row.get("fid_ci_low"), row.get("fid_ci_high"))
        metrics.append(f"FID {fid:.4g}" + (f" {ci}" if ci else ""))
    for label, column, unit in (("recall", "recall", ""), ("NFE", "nfe", ""),
                                ("time/batch", "time_per_batch_s", " s")):
        value = pd.to_numeric(pd.Series([row.get(column)]), errors="coerce").iloc[0]
        if pd.notna(value):
            metrics.append(f"{label} {value:.3g}{unit}")
    if metrics:
        parts.append(html.escape(", ".join(metrics)))
    flag = row.get("_timing_flag")
    if isinstance(flag, str) and flag:
        parts.append(f"<span class='note'>timing not comparable: {html.escape(flag)}</span>")
    cell = html.escape(str(row["cell"]))
    parts.append(f"<a href='{html.escape(record)}'>record</a> <span class='remark' "
                 f"title='{cell}'>(cell {cell.rsplit('-', 1)[-1]})</span>")
    return "<br>".join(parts)


def _grids_html(df: pd.DataFrame, out_dir: Path) -> str:
    """Each cell's sample grid, with the id its points click to, captioned by its short name,
    its metrics and a link to its record."""
    rows = df[~is_scored(df)].copy()
    rows["_timing_flag"] = timing_flags(rows)
    figures = []
    for (_, row), name in zip(rows.iterrows(), short_names(rows)):
        path = row.get("samples_path")
        uri = _data_uri(Path(path)) if isinstance(path, str) else None
        if uri:
            record = os.path.relpath(str(row["path"]), out_dir) if isinstance(
                row.get("path"), str) else ""
            figures.append(
                f"<figure id='{samples_id(row['cell'])}'><img alt='samples of "
                f"{html.escape(name)}' src='{uri}'><figcaption>{_caption(row, name, record)}"
                "</figcaption></figure>"
            )
    if not figures:
        return ""
    return ("<h2 id='samples'>Samples</h2><p class='remark'>Click a point on a figure to see "
            f"its grid here and in a panel.</p><div class='grids'>{''.join(figures)}</div>")


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
        + f"\n{_VIEWER}\n{_SCRIPT}\n</body></html>\n"
    )


def write_report(
    df: pd.DataFrame,
    out_html: Path,
    title: str = "genbench report",
    *,
    include_paper: bool = True,
    baselines_dir: Path | None = None,
    published_elsewhere: bool = True,
) -> dict[str, Path]:
    """Write the report page ``out_html`` and its tables beside it.

    ``df`` is :func:`~genbench.report.tables.load_records`' frame. Published numbers come from
    ``baselines_dir`` (default: genbench's ``baselines/``) and from the records' own
    ``config.paper`` blocks, unless ``include_paper`` is False; panels of published numbers on
    datasets no record measured go into one collapsed section, or are left out when
    ``published_elsewhere`` is False. Returns the paths by kind:
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
        _panels_html(report_panels(df, paper), published_elsewhere),
        _grids_html(df, out_html.parent),
        _seeds_html(df, written["seeds_csv"]),
        *tables_html,
        "<h2>Summary of all records</h2>",
        _compute_html(df),
        "<p class='remark'>Every column of the summary (also written as "
        f"<a href='{html.escape(written['csv'].name)}'>csv</a>); it scrolls sideways in its box "
        "when it is wider than the page.</p><div class='scroll'>",
        _table_html(summary, hide=("cell",)),
        "</div>",
        _not_plotted_html(df),
        _recipes_html(df),
    ]
    has_paper = paper is not None and not paper.empty
    atomic_write_text(out_html, _page(df, body, title, has_paper))
    return written
