"""What a run leaves for people: an experiment's HTML report and the console summary table.

``genbench run``, ``genbench run --grid`` and ``genbench report`` all call
:func:`write_experiment_report` (records -> :func:`~genbench.report.tables.load_records` ->
:func:`~genbench.report.html.write_report`) and print :func:`summary_text`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SUMMARY_HEADER = ("cell", "n", "FID", "FID 95% CI", "FID-inf", "extractor", "prec", "recall",
                  "NFE", "s/batch", "GMACs/smp", "params M", "mem MB")
# Shown when a record has them (no VGG16 weights): precision/recall on Inception features.
INCEPTION_PR = ("precision[inception]", "recall[inception]")
_AFTER_RECALL = SUMMARY_HEADER.index("recall") + 1


def write_experiment_report(inputs: Iterable[Path], out_html: Path, *,
                            include_paper: bool = True, published_elsewhere: bool = True
                            ) -> dict[str, Path] | None:
    """The report of the records under ``inputs`` (folders or result.json files) at ``out_html``;
    ``published_elsewhere`` False leaves out the panels of published numbers on datasets no
    record measured (:func:`genbench.report.html.write_report`).

    Returns the written files by kind (``html``, tables), or None when there is no record.
    """
    from genbench._io import remove_stale_temporaries
    from genbench.report.html import write_report
    from genbench.report.tables import load_records

    df = load_records(list(inputs))
    if df.empty:
        return None
    remove_stale_temporaries(Path(out_html).parent)  # a killed report's half-written files
    return write_report(df, Path(out_html), include_paper=include_paper,
                        published_elsewhere=published_elsewhere)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def significant(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits in plain notation, for people: 0.10016 ->
    ``0.100``, 0.0002067 -> ``0.000207``, 10.8133 -> ``10.8``, 1234.5 -> ``1234``; None ``-``."""
    if value is None:
        return "-"
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return format(value, "g")
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    return f"{value:.{decimals}f}"


def _time_batch(record: Mapping[str, Any]) -> int | None:
    """The batch size of the record's time per batch (None: no time measured)."""
    if (record.get("metrics") or {}).get("time_per_batch_s") is None:
        return None
    size = (record.get("timing") or {}).get("batch_size")
    return int(size) if isinstance(size, (int, float)) else None


def _summary_row(record: Mapping[str, Any], inception_pr: bool = False) -> tuple[str, ...]:
    from genbench.report.tables import fid_ci_bounds

    m = record.get("metrics") or {}
    extractor = (record.get("metric_recipes") or {}).get("fid", {}).get("extractor", "-")
    params = None if m.get("params") is None else m["params"] / 1e6
    reps = record.get("replicates") if isinstance(record.get("replicates"), Mapping) else {}
    n = reps.get("n") if isinstance(reps.get("n"), int) else 1
    std = ((reps.get("aggregate") or {}).get("fid") or {}).get("std")
    fid = _fmt(m.get("fid"), ".3f") + (f" ± {std:.3f}" if isinstance(std, float) else "")
    low, high = fid_ci_bounds(m.get("fid_ci"))
    ci = "-" if low is None else f"[{low:.3f}, {high:.3f}]"
    infinity = m.get("fid_infinity") if isinstance(m.get("fid_infinity"), float) else None
    extra = tuple(_fmt(m.get(key), ".3f") for key in INCEPTION_PR) if inception_pr else ()
    return (str(record.get("cell", "?")), str(n), fid, ci, _fmt(infinity, ".3f"), str(extractor),
            _fmt(m.get("precision"), ".3f"), _fmt(m.get("recall"), ".3f"), *extra,
            _fmt(m.get("nfe"), "d"), significant(m.get("time_per_batch_s")),
            significant(m.get("gmacs_per_sample")), _fmt(params, ".3f"),
            significant(m.get("peak_memory_mb")))


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _with_batch_sizes(records: list[Mapping[str, Any]], rows: list[tuple[str, ...]],
                      header: tuple[str, ...] = SUMMARY_HEADER) -> list[tuple[str, ...]]:
    """Header and rows, the time column naming its batch size: ``s/batch(100)`` when every
    timed record used one size, else each time followed by its own (``0.615 (b=64)``)."""
    sizes = {_time_batch(r) for r in records} - {None}
    header, time_column = list(header), header.index("s/batch")
    if len(sizes) == 1:
        header[time_column] = f"s/batch({sizes.pop()})"
        return [tuple(header), *rows]
    out = [tuple(header)]
    for record, row in zip(records, rows):
        size, cells = _time_batch(record), list(row)
        if size is not None:
            cells[time_column] += f" (b={size})"
        out.append(tuple(cells))
    return out


def summary_text(records: Iterable[Mapping[str, Any]]) -> str:
    """A plain-text table of the main numbers, one row per record (FID with its extractor, its
    95% sampling interval and FID-infinity; n training seeds, a ``train.seeds=N`` record's FID
    as mean ± std; precision/recall on VGG16 features, and in columns of their own
    ``precision[inception]``/``recall[inception]`` when a record has them); then, when records are
    replicates of one configuration over seeds, one row per configuration, and a warning per
    pair of configurations whose intervals overlap (:func:`genbench.report.seeds
    .ranking_warnings`)."""
    from pathlib import Path

    from genbench.report.seeds import ranking_warnings, seeds_table
    from genbench.report.tables import _record_row

    records = list(records)
    inception_pr = any((r.get("metrics") or {}).get(k) is not None for r in records
                       for k in INCEPTION_PR)
    header = SUMMARY_HEADER[:_AFTER_RECALL] + (INCEPTION_PR if inception_pr else ()) \
        + SUMMARY_HEADER[_AFTER_RECALL:]
    text = _table(_with_batch_sizes(records, [_summary_row(r, inception_pr) for r in records],
                                    header))
    try:
        import pandas as pd

        frame = pd.DataFrame([_record_row(dict(r), Path(str(r.get("cell", "?"))) / "result.json")
                              for r in records])
        table = seeds_table(frame, text=True)
        warnings = ranking_warnings(frame)
    except (KeyError, TypeError, ValueError):  # a record too partial to aggregate
        return text
    if not table.empty and len(table) < len(records):  # some cells are replicates
        rows = [tuple(str(c) for c in table.columns),
                *(tuple("-" if v is None else str(v) for v in row)
                  for row in table.astype(object).itertuples(index=False))]
        text += "\n\nconfigurations over training seeds (mean ± std [min, max]):\n" + _table(rows)
    for line in warnings:
        text += f"\nwarning: {line}"
    return text
