"""One self-contained HTML report: trade-off figures, the summary table and sample grids.

The page inlines plotly.js once and embeds every sample grid as a base64 data URI, so it opens
offline and can be mailed as a single file. The summary table is also written as CSV beside it.
Both files are written atomically (temporary file, then ``os.replace``), as records are.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from genbench.report.figures import FIGURE_HEIGHT, report_figures
from genbench.report.tables import load_records, summary_table

__all__ = ["make_report", "write_report"]

_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.summary { border-collapse: collapse; font-size: 0.85em; }
table.summary th, table.summary td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
table.summary th { background: #f3f3f3; }
.grids { display: flex; flex-wrap: wrap; gap: 1.5em; }
.grids figure { margin: 0; max-width: 300px; }
.grids img { width: 256px; image-rendering: pixelated; border: 1px solid #ccc; }
.grids figcaption { font-size: 0.8em; word-break: break-all; }
.note { color: #a33; }
"""


def _atomic_write(path: Path, data: str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _data_uri(path: Path) -> str | None:
    """The image as a ``data:`` URI, or None when it is absent or not an image type we embed."""
    mime = _IMAGE_TYPES.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return None
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _figures_html(df: pd.DataFrame) -> str:
    figures = report_figures(df)
    if not figures:
        return "<p>No cell has both an FID and a timing yet; nothing to plot.</p>"
    parts = [
        figure.to_html(
            full_html=False,
            include_plotlyjs=(i == 0),  # inlined once, no CDN: the page works offline
            div_id=f"genbench-figure-{i}",  # fixed ids keep the page reproducible
            default_height=f"{FIGURE_HEIGHT}px",
        )
        for i, figure in enumerate(figures)
    ]
    return "\n".join(parts)


def _display(value: object) -> str:
    """Table cell text: blank for missing, 4 significant digits for floats."""
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table_html(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p>No records.</p>"
    shown = table.astype(object).map(_display)
    return shown.to_html(index=False, classes="summary", border=0)


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


def _page(df: pd.DataFrame, table: pd.DataFrame, title: str) -> str:
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no records"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(df)} records ({html.escape(status)}). Quality numbers from different feature "
        "extractors are in separate columns and figures; they are not comparable.</p>",
        "<h2>Trade-off</h2>",
        _figures_html(df),
        "<h2>Summary</h2>",
        _table_html(table),
        _not_plotted_html(df),
        _recipes_html(df),
        _grids_html(df),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def write_report(
    df: pd.DataFrame, out_html: Path, title: str = "genbench report"
) -> dict[str, Path]:
    """Write the report page ``out_html`` and its summary table ``out_html.with_suffix('.csv')``.

    ``df`` is :func:`~genbench.report.tables.load_records`' frame. Returns
    ``{"html": path, "csv": path}``.
    """
    out_html = Path(out_html)
    table = summary_table(df)
    out_csv = out_html.with_suffix(".csv")
    _atomic_write(out_csv, table.to_csv(index=False))
    _atomic_write(out_html, _page(df, table, title))
    return {"html": out_html, "csv": out_csv}


def make_report(
    paths: Iterable[str | Path], out_html: Path, title: str = "genbench report"
) -> dict[str, Path]:
    """:func:`load_records` then :func:`write_report`."""
    return write_report(load_records(paths), Path(out_html), title=title)
