"""Tests for genbench.report: records -> tables -> figures -> one offline HTML page + CSV."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

from genbench.errors import UserError
from genbench.report import (
    RecordWarning,
    fid_vs_time_figures,
    load_records,
    report_figures,
    summary_table,
    write_report,
)
from genbench.report.figures import pareto_front

DIGITS = "digits-classifier"
INCEPTION = "inception-v3-compat"


def _record(cell: str, *, fid: float | None, extractor: str, time_s: float, **extra: Any) -> dict:
    """A result.json in the harness's schema (version 1)."""
    recipe = {"extractor": extractor, "num_fake": 1000, "num_real": 1437}
    record = {
        "schema_version": 1,
        "experiment": "default",
        "cell": cell,
        "status": "ok",
        "error": None,
        "created": "2026-11-22T10:00:00Z",
        "config": {
            "dataset": {"name": "digits", "resolution": 8, "split": "train"},
            "backbone": {"name": "ncsnpp", "nf": 16},
            "latent": {"name": "pixel"},
            "sampler": {"name": "ddgan", "steps": 4},
            "train": {"steps": 100, "seed": 0},
            "eval": {"num_fake": 1000},
        },
        "metrics": {
            "fid": fid,
            "precision": 0.7,
            "recall": 0.5,
            "nfe": 4,
            "params": 123_000,
            "params_denoiser": 120_000,
            "params_decoder": 3_000,
            "gmacs_denoiser": 0.01,
            "gmacs_decoder": 0.0,
            "gmacs_per_sample": 0.04,
            "peak_memory_mb": 12.0,
            "time_per_batch_s": time_s,
            "time_per_batch_iqr_s": 0.002,
        },
        "metric_recipes": {"fid": recipe, "precision": dict(recipe), "recall": dict(recipe)},
        "missing": {"kid": "not requested"},
        "timing": {
            "median_s": time_s,
            "iqr_s": 0.002,
            "trials": 10,
            "warmup": 2,
            "method": "perf_counter",
            "device": "cpu",
            "batch_size": 100,
        },
        "artifacts": {"samples": "samples.png", "config": "config.yaml"},
    }
    record.update(extra)
    return record


def _write(results: Path, record: dict, samples: bool = True) -> Path:
    folder = results / record["experiment"] / record["cell"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(record))
    if samples:
        Image.new("RGB", (16, 16), (10, 200, 30)).save(folder / "samples.png")
    return folder / "result.json"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Three ok cells (two extractors), one failed cell."""
    root = tmp_path / "results"
    _write(root, _record("ncsnpp-pixel-ddgan-t4", fid=12.5, extractor=DIGITS, time_s=0.05))
    _write(root, _record("ncsnpp-pixel-ddgan-t2", fid=20.0, extractor=DIGITS, time_s=0.03))
    _write(root, _record("uvit-pixel-ddim-50", fid=8.0, extractor=INCEPTION, time_s=0.9))
    failed = _record("uvit-pixel-ddpm-1000", fid=None, extractor=DIGITS, time_s=0.0)
    failed.update(status="failed", error="training diverged: loss is NaN")
    failed["metrics"] = {"params": 10}
    _write(root, failed, samples=False)
    return root


def test_load_records_flattens(results: Path) -> None:
    df = load_records([results])
    assert len(df) == 4
    assert set(df["status"]) == {"ok", "failed"}
    row = df[df["cell"] == "uvit-pixel-ddim-50"].iloc[0]
    assert row["fid"] == 8.0 and row["fid_extractor"] == INCEPTION
    assert row["recall_extractor"] == INCEPTION and row["nfe"] == 4
    assert row["backbone"] == "ncsnpp" and row["sampler"] == "ddgan" and row["steps"] == 4
    assert row["timing_device"] == "cpu" and row["timing_batch_size"] == 100
    assert row["missing"] == "kid: not requested"
    assert Path(row["samples_path"]).is_file()
    assert "backbone.nf=16" in row["config_flat"].splitlines()
    assert df.attrs["skipped"] == []


def test_load_records_file_and_dir_deduplicated(results: Path) -> None:
    one = next(results.rglob("result.json"))
    assert len(load_records([one])) == 1
    assert len(load_records([results, one])) == 4


def test_load_records_missing_path_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_records([tmp_path / "nope"])


def test_corrupt_record_is_skipped_with_warning(results: Path) -> None:
    bad = results / "default" / "broken" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"schema_version": 1, "cell": ')
    future = copy.deepcopy(_record("future", fid=1.0, extractor=DIGITS, time_s=0.1))
    future["schema_version"] = 99
    _write(results, future)
    with pytest.warns(RecordWarning) as caught:
        df = load_records([results])
    assert len(df) == 4
    messages = " ".join(str(w.message) for w in caught)
    assert "broken" in messages and "schema_version 99" in messages
    assert {Path(p).parent.name for p, _ in df.attrs["skipped"]} == {"broken", "future"}


def test_summary_table_separates_extractors(results: Path) -> None:
    table = summary_table(load_records([results]))
    assert len(table) == 4
    fid_columns = [c for c in table.columns if c.startswith("FID")]
    assert fid_columns == [f"FID [{DIGITS}]", f"FID [{INCEPTION}]"]
    assert f"recall [{DIGITS}]" in table.columns and "FID" not in table.columns
    by_cell = table.set_index("cell")
    assert by_cell.loc["uvit-pixel-ddim-50", f"FID [{INCEPTION}]"] == 8.0
    assert pd.isna(by_cell.loc["uvit-pixel-ddim-50", f"FID [{DIGITS}]"])
    assert by_cell.loc["ncsnpp-pixel-ddgan-t4", f"FID [{DIGITS}]"] == 12.5
    assert by_cell.loc["uvit-pixel-ddpm-1000", "status"] == "failed"
    assert "diverged" in by_cell.loc["uvit-pixel-ddpm-1000", "note"]
    for column in ("backbone", "latent", "sampler", "NFE", "time/batch [s]", "GMACs/sample"):
        assert column in table.columns
    assert by_cell.loc["ncsnpp-pixel-ddgan-t4", "params [M]"] == pytest.approx(0.123)


def test_summary_table_of_no_records(tmp_path: Path) -> None:
    df = load_records([tmp_path])
    assert df.empty
    assert summary_table(df).empty
    assert report_figures(df) == []


def test_figures_one_per_extractor_one_point_per_ok_record(results: Path) -> None:
    figures = fid_vs_time_figures(load_records([results]))
    by_extractor = {f.layout.meta["extractor"]: f for f in figures}
    assert set(by_extractor) == {DIGITS, INCEPTION}
    digits_points = by_extractor[DIGITS].data[0]
    assert sorted(digits_points.y) == [12.5, 20.0]
    assert list(by_extractor[INCEPTION].data[0].y) == [8.0]
    assert by_extractor[DIGITS].layout.xaxis.type == "log"
    assert list(digits_points.error_x.array) == [0.001, 0.001]
    hover = digits_points.hovertext[0]
    assert "sampler.steps=4" in hover and "backbone.name=ncsnpp" in hover
    # one point per ok record with an FID, across all figures: the failed cell is not plotted
    assert sum(len(f.data[0].y) for f in figures) == 3
    assert all("uvit-pixel-ddpm-1000" not in f.data[0].text for f in figures)


def test_ok_record_without_fid_is_listed_not_plotted(results: Path, tmp_path: Path) -> None:
    no_fid = _record("ncsnpp-pixel-ddgan-nofid", fid=None, extractor=DIGITS, time_s=0.04)
    no_fid["missing"] = {"fid": "reference statistics missing"}
    _write(results, no_fid)
    df = load_records([results])
    assert sum(len(f.data[0].y) for f in fid_vs_time_figures(df)) == 3
    page = write_report(df, tmp_path / "r.html")["html"].read_text(encoding="utf-8")
    assert "no FID (fid: reference statistics missing" in page


def test_pareto_front() -> None:
    x, y = [1.0, 2.0, 3.0, 0.5], [5.0, 3.0, 4.0, 9.0]
    assert pareto_front(x, y) == [3, 0, 1]


def test_write_report_is_self_contained(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    written = write_report(load_records([results]), out)
    assert written == {"html": out, "csv": out.with_suffix(".csv")}
    page = out.read_text(encoding="utf-8")
    assert "plotly.js v" in page or "Plotly" in page
    assert len(page) > 1_000_000  # plotly.js is inlined, not linked
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", page)
    assert page.count("src='data:image/png;base64,") == 3  # the failed cell has no grid
    assert "uvit-pixel-ddpm-1000" in page and "training diverged" in page
    assert f"FID [{INCEPTION}]" in page and f"FID [{DIGITS}]" in page
    csv = pd.read_csv(written["csv"])
    assert len(csv) == 4 and f"FID [{DIGITS}]" in csv.columns
    assert not list(out.parent.glob(".*.tmp"))  # temporary files are gone


def test_write_report_is_reproducible(results: Path, tmp_path: Path) -> None:
    df = load_records([results])
    first = write_report(df, tmp_path / "a.html")["html"].read_text(encoding="utf-8")
    second = write_report(df, tmp_path / "b.html")["html"].read_text(encoding="utf-8")
    assert first == second
