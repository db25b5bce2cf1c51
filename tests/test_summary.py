"""The summary table `genbench run`, `--grid` and `eval` print: units that say what they are."""

from __future__ import annotations

import pytest

from genbench.report.experiment import significant, summary_text


def _record(cell: str, time_s: float | None, batch: int | None, mem_mb: float) -> dict:
    return {"cell": cell, "status": "ok",
            "metrics": {"fid": 12.5, "nfe": 4, "time_per_batch_s": time_s,
                        "gmacs_per_sample": 0.00012, "params": 876_481,
                        "peak_memory_mb": mem_mb},
            "timing": {} if batch is None else {"median_s": time_s, "batch_size": batch}}


def _columns(text: str) -> dict[str, str]:
    """The first row's cells by header (columns are separated by two or more spaces)."""
    import re

    header, row = text.splitlines()[:2]
    return dict(zip(re.split(r"\s{2,}", header), re.split(r"\s{2,}", row)))


def test_the_time_column_names_its_batch_size_and_memory_is_never_zero():
    text = summary_text([_record("a", 0.6603024675000597, 100, 0.00021),
                         _record("b", 1.25, 100, 0.10016632080078125)])
    first = _columns(text)
    assert first["s/batch(100)"] == "0.660"
    assert first["mem MB"] == "0.000210"  # 210 bytes of tensors: not "0.0"
    assert first["GMACs/smp"] == "0.000120"
    assert "0.100" in text.splitlines()[2]


def test_mixed_batch_sizes_are_said_per_row():
    text = summary_text([_record("a", 0.5, 100, 1.0), _record("b", 0.25, 64, 1.0),
                         _record("c", None, None, 1.0)])
    rows = text.splitlines()
    assert "s/batch " in rows[0] + " "
    assert "0.500 (b=100)" in rows[1] and "0.250 (b=64)" in rows[2]
    assert "(b=" not in rows[3]


@pytest.mark.parametrize("value, text", [
    (10.813301086425781, "10.8"), (0.10016632080078125, "0.100"), (0.0002067, "0.000207"),
    (1234.5, "1234"), (0.0, "0"), (None, "-"), (-0.012345, "-0.0123")])
def test_significant(value, text):
    assert significant(value) == text
