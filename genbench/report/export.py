"""Writing report tables as CSV, Markdown and LaTeX, atomically (:mod:`genbench._io`).

CSV keeps every row of a table with its ``source`` column (``measured`` or ``reported: ...``).
Markdown and LaTeX split the table into a measured section and a reported section, each without
the columns that are empty in it, so that published numbers are never read as genbench's.
Markdown is written here (GitHub pipe tables; no ``tabulate`` dependency); LaTeX comes from
pandas' ``Styler.to_latex`` (booktabs rules), which needs jinja2.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from genbench._io import atomic_write_text

__all__ = [
    "display_value",
    "latex_document",
    "markdown_document",
    "markdown_table",
    "sections",
    "write_table",
]

SOURCE = "source"


def display_value(value: object) -> str:
    """Table cell text: blank for missing, 4 significant digits for floats."""
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def sections(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``[("Measured", rows), ("Reported (published, not measured)", rows)]``, the empty ones
    left out; each section drops the columns that have no value in it."""
    if SOURCE not in table.columns:
        return [("Measured", table)] if not table.empty else []
    reported = table[SOURCE].astype(str).str.startswith("reported")
    out = []
    for title, mask in (("Measured", ~reported), ("Reported (published, not measured)", reported)):
        part = table[mask]
        if not part.empty:
            shown = part.astype(object).map(display_value)
            out.append((title, part[[c for c in part.columns if (shown[c] != "").any()]]))
    return out


def _markdown_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub pipe table of ``table`` (numbers right-aligned, 4 significant digits)."""
    shown = table.astype(object).map(display_value)
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    header = "| " + " | ".join(_markdown_cell(str(c)) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    body = ["| " + " | ".join(_markdown_cell(v) for v in row) + " |"
            for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def markdown_document(table: pd.DataFrame, title: str, note: str = "") -> str:
    """``# title``, one ``##`` section per source, then the note."""
    parts = [f"# {title}\n"]
    for heading, part in sections(table) or [("Measured", table)]:
        parts.append(f"## {heading}\n\n{markdown_table(part) if not part.empty else '(none)'}")
    if note:
        parts.append(note.strip() + "\n")
    return "\n".join(parts)


def _latex_table(part: pd.DataFrame, caption: str) -> str:
    styler = part.style.format(display_value, escape="latex", na_rep="")
    styler = styler.format_index(escape="latex", axis=1).hide(axis="index")
    return styler.to_latex(hrules=True, caption=caption, position="htbp",
                           position_float="centering")


def _latex_escape(text: str) -> str:
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                    "^": r"\textasciicircum{}"}
    return "".join(replacements.get(ch, ch) for ch in text)


def latex_document(table: pd.DataFrame, title: str, note: str = "") -> str:
    """One ``table`` float per section (needs ``\\usepackage{booktabs}``), then the note as a
    footnote-size paragraph."""
    parts = [f"% {title}: written by genbench report; needs \\usepackage{{booktabs}}\n"]
    for heading, part in sections(table):
        parts.append(_latex_table(part, _latex_escape(f"{title}: {heading}")))
    if note:
        parts.append(f"\\par\\noindent{{\\footnotesize {_latex_escape(note.strip())}}}\\par\n")
    return "\n".join(parts)


def write_table(table: pd.DataFrame, stem: Path, title: str, note: str = "") -> dict[str, Path]:
    """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex``; returns the paths by suffix."""
    paths = {suffix: stem.with_name(f"{stem.name}.{suffix}") for suffix in ("csv", "md", "tex")}
    atomic_write_text(paths["csv"], table.to_csv(index=False))
    atomic_write_text(paths["md"], markdown_document(table, title, note))
    atomic_write_text(paths["tex"], latex_document(table, title, note))
    return paths
