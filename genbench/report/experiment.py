"""What a run leaves for people: an experiment's HTML report and the console summary table.

``genbench run``, ``genbench run --grid`` and ``genbench report`` all call
:func:`write_experiment_report` (records -> :func:`~genbench.report.tables.load_records` ->
:func:`~genbench.report.html.write_report`) and print :func:`summary_text`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SUMMARY_HEADER = ("cell", "n", "FID", "extractor", "prec", "recall", "NFE", "s/batch", "GMACs/smp",
                  "params M", "mem MB")
# Shown when a record has them (no VGG16 weights): precision/recall on Inception features.
INCEPTION_PR = ("precision[inception]", "recall[inception]")


def write_experiment_report(inputs: Iterable[Path], out_html: Path, *,
                            include_paper: bool = True) -> dict[str, Path] | None:
    """The report of the records under ``inputs`` (folders or result.json files) at ``out_html``.

    Returns the written files by kind (``html``, tables), or None when there is no record.
    """
    from genbench._io import remove_stale_temporaries
    from genbench.report.html import write_report
    from genbench.report.tables import load_records

    df = load_records(list(inputs))
    if df.empty:
        return None
    remove_stale_temporaries(Path(out_html).parent)  # a killed report's half-written files
    return write_report(df, Path(out_html), include_paper=include_paper)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _summary_row(record: Mapping[str, Any], inception_pr: bool = False) -> tuple[str, ...]:
    m = record.get("metrics") or {}
    extractor = (record.get("metric_recipes") or {}).get("fid", {}).get("extractor", "-")
    params = None if m.get("params") is None else m["params"] / 1e6
    reps = record.get("replicates") if isinstance(record.get("replicates"), Mapping) else {}
    n = reps.get("n") if isinstance(reps.get("n"), int) else 1
    std = ((reps.get("aggregate") or {}).get("fid") or {}).get("std")
    fid = _fmt(m.get("fid"), ".3f") + (f" ± {std:.3f}" if isinstance(std, float) else "")
    extra = tuple(_fmt(m.get(key), ".3f") for key in INCEPTION_PR) if inception_pr else ()
    return (str(record.get("cell", "?")), str(n), fid, str(extractor),
            _fmt(m.get("precision"), ".3f"), _fmt(m.get("recall"), ".3f"), *extra,
            _fmt(m.get("nfe"), "d"), _fmt(m.get("time_per_batch_s"), ".4f"),
            _fmt(m.get("gmacs_per_sample"), ".4f"), _fmt(params, ".3f"),
            _fmt(m.get("peak_memory_mb"), ".1f"))


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def summary_text(records: Iterable[Mapping[str, Any]]) -> str:
    """A plain-text table of the main numbers, one row per record (FID with its extractor; n
    training seeds, a ``train.seeds=N`` record's FID as mean ± std; precision/recall on VGG16
    features, and in columns of their own ``precision[inception]``/``recall[inception]`` when a
    record has them); then, when records are
    replicates of one configuration over seeds, one row per configuration, and a warning per
    pair of configurations whose intervals overlap (:func:`genbench.report.seeds
    .ranking_warnings`)."""
    from pathlib import Path

    from genbench.report.seeds import ranking_warnings, seeds_table
    from genbench.report.tables import _record_row

    records = list(records)
    inception_pr = any((r.get("metrics") or {}).get(k) is not None for r in records
                       for k in INCEPTION_PR)
    header = SUMMARY_HEADER[:6] + (INCEPTION_PR if inception_pr else ()) + SUMMARY_HEADER[6:]
    text = _table([header, *(_summary_row(r, inception_pr) for r in records)])
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
