"""Tests for genbench.report: records (+ published numbers) -> tables -> figures -> one offline
HTML page, with the paper-style tables as CSV, Markdown and LaTeX beside it."""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from PIL import Image

from genbench import cli
from genbench.config import baseline_names, baselines_root, config_root
from genbench.errors import UserError
from genbench.report import (
    PaperWarning,
    RecordWarning,
    fid_vs_gmacs_figures,
    fid_vs_time_figures,
    load_records,
    paper_points,
    recall_vs_fid_figures,
    report_figures,
    summary_table,
    table2,
    table3,
    write_report,
)
from genbench.report import html as html_module
from genbench.report.figures import pareto_front

DIGITS = "digits-classifier"
INCEPTION = "inception-v3-compat"
VGG16 = "vgg16"
SOURCE = "LDDGAN paper (Trinh and Hamagami 2024), Table 2 and Table 3"
DDGAN_PAPER = {
    "method": "DDGAN", "source": SOURCE, "dataset": "CIFAR-10 32x32", "extractor": INCEPTION,
    "fid": 3.75, "recall": 0.57, "nfe": 4, "time_per_batch_s": 0.21, "params_m": 48.43,
    "gflops": 7.05, "memory_gb": 0.31,
}  # fmt: skip
LDDGAN_PAPER = DDGAN_PAPER | {
    "method": "LDDGAN", "fid": 2.98, "recall": 0.58, "time_per_batch_s": 0.08,
    "params_m": 41.97, "gflops": 1.72, "memory_gb": 0.18, "notes": "1.72 G incl. decoder?",
}  # fmt: skip
CELEBA_PAPER = DDGAN_PAPER | {"dataset": "CelebA-HQ 256", "fid": 7.64, "nfe": 2}


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
    return write_results(tmp_path / "results")


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


def test_load_records_skips_temporaries_of_atomic_writes(results: Path) -> None:
    experiment = results / "default"
    staging = experiment / f".half-written.{'a' * 32}.tmp"
    set_aside = experiment / f".uvit-pixel-ddim-50.{'b' * 32}.old"
    for folder in (staging, set_aside):
        shutil.copytree(experiment / "uvit-pixel-ddim-50", folder)
    df = load_records([results])
    assert len(df) == 4 and df.attrs["skipped"] == []
    assert not any(".tmp" in p or ".old" in p for p in df["path"])


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


def test_summary_table_shows_the_fast_path_and_its_fid_cost(tmp_path: Path) -> None:
    """A cell sampled with a fast path says which, and its FID minus the fp32 FID of the same
    seeds; plain cells leave both empty (and a report of plain cells has neither column)."""
    fast = {"precision": "bf16", "compile": True, "compile_mode": "reduce-overhead",
            "cuda_graphs": True, "channels_last": False}
    plain = {"precision": "fp32", "compile": False, "compile_mode": None, "cuda_graphs": False,
             "channels_last": False}
    fast_record = _record("fast", fid=10.2, extractor=DIGITS, time_s=0.01)
    fast_record["metrics"]["fid_delta_fp32"] = 0.2
    fast_record["timing"]["fast_path"] = fast
    plain_record = _record("plain", fid=10.0, extractor=DIGITS, time_s=0.02)
    plain_record["timing"]["fast_path"] = plain
    for record in (fast_record, plain_record):
        _write(tmp_path / "mixed", record)
    table = summary_table(load_records([tmp_path / "mixed"])).set_index("cell")
    assert table.loc["fast", "fast path"] == "bf16 compile(reduce-overhead, CUDA graphs)"
    assert table.loc["fast", "fast path FID - fp32 FID"] == pytest.approx(0.2)
    assert pd.isna(table.loc["plain", "fast path"])
    assert pd.isna(table.loc["plain", "fast path FID - fp32 FID"])
    _write(tmp_path / "plain", plain_record)
    html_table = html_module._every_row(summary_table(load_records([tmp_path / "plain"])),
                                        keep=())[0]
    assert "fast path" not in html_table.columns
    assert "fast path FID - fp32 FID" not in html_table.columns


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
    assert list(digits_points.error_x.array) == [0.001, 0.001]  # +-IQR/2 without quartiles
    assert list(digits_points.error_x.arrayminus) == [0.001, 0.001]
    hover = digits_points.hovertext[0]
    # short: what sets the point apart, its metrics with their intervals, where its record is;
    # the full configuration stays in the record
    lines = hover.split("<br>")
    assert lines[0].startswith("<b>ddgan s4") and len(lines) <= 10
    assert "FID 20" in hover and "/result.json" in hover and "backbone.name=" not in hover
    # one point per ok record with an FID, across all figures: the failed cell is not plotted
    assert sum(len(f.data[0].y) for f in figures) == 3
    plotted = [h for f in figures for h in f.data[0].hovertext]
    assert len(plotted) == 3 and not any("uvit-pixel-ddpm-1000" in h for h in plotted)
    assert any("ncsnpp" in h for h in plotted)  # the hover names each plotted cell


def test_point_labels_name_only_what_tells_the_cells_apart() -> None:
    from genbench.report.figures import point_labels

    df = pd.DataFrame({
        "cell": ["a-11111111", "b-22222222", "c-33333333", "d-44444444"],
        "experiment": ["grid"] * 4, "backbone": ["ncsnpp"] * 4,
        "latent": ["pixel", "wavelet", "pixel", "pixel"],
        "sampler": ["ddgan", "ddgan", "ddim", "ddim"], "steps": [4, 4, 10, 10],
    })
    assert point_labels(df) == ["pixel ddgan s4", "wavelet ddgan s4", "pixel ddim s10 33333333",
                                "pixel ddim s10 44444444"]
    assert point_labels(df.iloc[:1]) == ["ddgan s4"]
    assert point_labels(df.iloc[:0]) == []


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


def _cifar_record(cell: str, fid: float, time_s: float, **extra: Any) -> dict:
    """An inception/VGG16-measured CIFAR-10 (32 px) cell."""
    record = _record(cell, fid=fid, extractor=INCEPTION, time_s=time_s, **extra)
    record["config"]["dataset"] = {"name": "cifar10", "resolution": 32, "split": "train"}
    record["metric_recipes"]["recall"]["extractor"] = VGG16
    record["metric_recipes"]["precision"]["extractor"] = VGG16
    return record


def write_baselines(root: Path) -> Path:
    """Three baseline presets: DDGAN and LDDGAN on CIFAR-10, DDGAN on CelebA-HQ 256."""
    root.mkdir(parents=True)
    for name, dataset, paper in (("ddgan_cifar10", "cifar10", DDGAN_PAPER),
                                 ("lddgan_cifar10", "cifar10", LDDGAN_PAPER),
                                 ("ddgan_celebahq256", "celebahq256", CELEBA_PAPER)):
        preset = {"defaults": [{"override /dataset": dataset}, {"override /latent": "pixel"}],
                  "experiment": name, "paper": paper}
        (root / f"{name}.yaml").write_text(yaml.safe_dump(preset))
    return root


def write_results(root: Path) -> Path:
    """Three digits-dataset ok cells (two extractors), one failed cell."""
    _write(root, _record("ncsnpp-pixel-ddgan-t4", fid=12.5, extractor=DIGITS, time_s=0.05))
    _write(root, _record("ncsnpp-pixel-ddgan-t2", fid=20.0, extractor=DIGITS, time_s=0.03))
    _write(root, _record("uvit-pixel-ddim-50", fid=8.0, extractor=INCEPTION, time_s=0.9))
    failed = _record("uvit-pixel-ddpm-1000", fid=None, extractor=DIGITS, time_s=0.0)
    failed.update(status="failed", error="training diverged: loss is NaN")
    failed["metrics"] = {"params": 10}
    _write(root, failed, samples=False)
    return root


def write_mixed_results(root: Path) -> Path:
    """:func:`write_results` plus three CIFAR-10 inception cells, one run from the DDGAN
    baseline (its config carries the baseline's ``paper:`` block)."""
    write_results(root)
    baseline_run = _cifar_record("ddgan-cifar10", 5.0, 0.4, experiment="ddgan_cifar10")
    baseline_run["config"]["paper"] = DDGAN_PAPER
    _write(root, baseline_run)
    _write(root, _cifar_record("lddgan-cifar10", 4.0, 0.2))
    _write(root, _cifar_record("lddgan-cifar10-t2", 6.0, 0.1))
    return root


@pytest.fixture
def baselines(tmp_path: Path) -> Path:
    return write_baselines(tmp_path / "baselines")


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    return write_mixed_results(tmp_path / "results")


def _by_panel(figures: list) -> dict[tuple[str, str], Any]:
    return {(f.layout.meta["extractor"], f.layout.meta["dataset"]): f for f in figures}


def _roles(figure: Any, role: str) -> list:
    return [t for t in figure.data if t.meta and t.meta["role"] == role]


def test_every_baseline_has_a_usable_paper_block() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PaperWarning)
        points = paper_points(baselines_dir=baselines_root())
    assert baseline_names()
    for name in baseline_names():
        preset = yaml.safe_load((baselines_root() / f"{name}.yaml").read_text())
        block = preset["paper"]
        dataset = next(v for entry in preset["defaults"] if isinstance(entry, dict)
                       for k, v in entry.items() if k.endswith("/dataset"))
        same = points[(points["method"] == block["method"]) & (points["fid"] == block["fid"])
                      & (points["dataset"] == dataset)]
        assert len(same) == 1, name
        # published FIDs are TF-Inception FIDs: never on a digits-classifier axis
        assert block["extractor"] == INCEPTION
        dataset_yaml = config_root() / "dataset" / f"{dataset}.yaml"
        if dataset_yaml.is_file():
            assert same["resolution"].iloc[0] == yaml.safe_load(dataset_yaml.read_text())[
                "resolution"]
    assert points["fid"].notna().all() and (points["source"].str.len() > 0).all()


def test_paper_points_deduplicated_and_mapped(mixed: Path, baselines: Path) -> None:
    df = load_records([mixed])
    paper = paper_points(df, baselines)
    assert sorted(zip(paper["method"], paper["dataset"], paper["resolution"])) == [
        ("DDGAN", "celebahq256", 256), ("DDGAN", "cifar10", 32), ("LDDGAN", "cifar10", 32)]
    # the record's own block (same numbers as its baseline) is the same point, not a second one
    ddgan = paper[(paper["method"] == "DDGAN") & (paper["dataset"] == "cifar10")].iloc[0]
    assert ddgan["origin"] == "baselines/ddgan_cifar10.yaml"
    assert ddgan["source_short"] == "LDDGAN paper" and ddgan["recall_extractor"] == VGG16
    assert ddgan["gmacs_per_sample"] == pytest.approx(4 * 7.05) and ddgan["gmacs_derived"]
    assert len(paper_points(df, baselines, baselines=False)) == 1  # only the record's block


def test_a_baseline_is_placed_where_hydra_composes_it(tmp_path: Path) -> None:
    """The dataset of a baseline is what its preset composes to: the primary config's default
    when it selects none, its own keys over its dataset preset's, and an unknown preset is
    skipped with a warning."""
    root = tmp_path / "baselines"
    root.mkdir()
    presets = {"plain": {"experiment": "plain", "paper": DDGAN_PAPER | {"fid": 1.0}},
               "small": {"defaults": [{"override /dataset": "cifar10"}],
                         "dataset": {"resolution": 16}, "paper": DDGAN_PAPER | {"fid": 2.0}},
               "broken": {"defaults": [{"override /dataset": "no_such_set"}],
                          "paper": DDGAN_PAPER | {"fid": 3.0}}}
    for name, preset in presets.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(preset))
    with pytest.warns(PaperWarning, match="broken.yaml: bad configuration: .*no_such_set"):
        paper = paper_points(baselines_dir=root)
    assert sorted(zip(paper["fid"], paper["dataset"], paper["resolution"])) == [
        (1.0, "digits", 8), (2.0, "cifar10", 16)]


def test_record_paper_blocks_other_numbers_and_bad_blocks(results: Path, tmp_path: Path) -> None:
    other = _cifar_record("rerun", 5.0, 0.4)
    other["config"]["paper"] = DDGAN_PAPER | {"fid": 3.0}
    _write(results, other)
    bad = _cifar_record("bad", 5.0, 0.4)
    bad["config"]["paper"] = {"method": "X", "fid": 1.0}  # no extractor: cannot be placed
    _write(results, bad)
    empty = tmp_path / "no-baselines"
    empty.mkdir()
    with pytest.warns(PaperWarning, match="needs 'method' and 'extractor'"):
        paper = paper_points(load_records([results]), empty)
    assert list(paper["fid"]) == [3.0]
    assert paper["dataset"].iloc[0] == "cifar10" and paper["origin"].iloc[0].endswith(
        "result.json")


def test_paper_points_only_on_their_extractor_and_dataset(mixed: Path, baselines: Path) -> None:
    df = load_records([mixed])
    figures = _by_panel(fid_vs_time_figures(df, paper_points(df, baselines)))
    assert set(figures) == {(DIGITS, "digits"), (INCEPTION, "digits"), (INCEPTION, "cifar10"),
                            (INCEPTION, "celebahq256")}
    assert not _roles(figures[(DIGITS, "digits")], "paper")
    assert not _roles(figures[(INCEPTION, "digits")], "paper")
    cifar = figures[(INCEPTION, "cifar10")]
    assert cifar.layout.meta["measured"] == 3 and cifar.layout.meta["reported"] == 2
    assert sorted(_roles(cifar, "measured")[0].y) == [4.0, 5.0, 6.0]
    paper = {t.name: t for t in _roles(cifar, "paper")}
    assert set(paper) == {"DDGAN (reported, LDDGAN paper)", "LDDGAN (reported, LDDGAN paper)"}
    ddgan = paper["DDGAN (reported, LDDGAN paper)"]
    assert list(ddgan.x) == [0.21] and list(ddgan.y) == [3.75]
    assert ddgan.marker.symbol == "diamond-open"
    assert "diamond" not in "".join(_roles(cifar, "measured")[0].marker.symbol)
    assert "reported, not measured" in ddgan.hovertext[0] and SOURCE in ddgan.hovertext[0]
    # the Pareto front is the measured cells': paper points never join it
    front = _roles(cifar, "pareto")[0]
    assert list(front.x) == [0.1, 0.2] and list(front.y) == [6.0, 4.0]
    celeba = figures[(INCEPTION, "celebahq256")]
    assert celeba.layout.meta["measured"] == 0 and not _roles(celeba, "measured")
    assert [t.name for t in _roles(celeba, "paper")] == ["DDGAN (reported, LDDGAN paper)"]


def test_paper_only_panel_when_no_measured_cell_uses_the_extractor(
    results: Path, baselines: Path
) -> None:
    df = load_records([results])
    df = df[df["fid_extractor"] != INCEPTION]  # digits-classifier cells only
    figures = report_figures(df, paper_points(df, baselines))
    for figure in figures:
        if figure.layout.meta["extractor"] == DIGITS:
            assert not _roles(figure, "paper")
        else:
            assert figure.layout.meta["extractor"] == INCEPTION
            assert figure.layout.meta["measured"] == 0 and _roles(figure, "paper")
    kinds = {(f.layout.meta["kind"], f.layout.meta["dataset"]) for f in figures
             if f.layout.meta["extractor"] == INCEPTION}
    assert ("fid_vs_time", "cifar10") in kinds and ("recall_vs_fid", "celebahq256") in kinds
    assert figures[0].layout.meta["extractor"] == DIGITS  # measured panels come first


def test_paper_points_need_the_same_resolution(results: Path, baselines: Path) -> None:
    small = _cifar_record("cifar16", 30.0, 0.1)
    small["config"]["dataset"]["resolution"] = 16
    _write(results, small)
    df = load_records([results])
    figures = fid_vs_time_figures(df, paper_points(df, baselines))
    cifar = [f for f in figures if f.layout.meta["dataset"] == "cifar10"]
    assert sorted((f.layout.meta["resolution"], f.layout.meta["measured"],
                   f.layout.meta["reported"]) for f in cifar) == [(16, 1, 0), (32, 0, 2)]


def test_recall_and_gmacs_figures(mixed: Path, baselines: Path) -> None:
    df = load_records([mixed])
    paper = paper_points(df, baselines)
    recall = {(f.layout.meta["extractor"], f.layout.meta["recall_extractor"],
               f.layout.meta["dataset"]): f for f in recall_vs_fid_figures(df, paper)}
    assert (INCEPTION, VGG16, "cifar10") in recall and (DIGITS, DIGITS, "digits") in recall
    cifar = recall[(INCEPTION, VGG16, "cifar10")]
    assert cifar.layout.xaxis.type == "linear"
    ddgan = next(t for t in _roles(cifar, "paper") if t.meta["method"] == "DDGAN")
    assert list(ddgan.x) == [3.75] and list(ddgan.y) == [0.57]
    assert not _roles(recall[(DIGITS, DIGITS, "digits")], "paper")
    gmacs = _by_panel(fid_vs_gmacs_figures(df, paper))[(INCEPTION, "cifar10")]
    ddgan = next(t for t in _roles(gmacs, "paper") if t.meta["method"] == "DDGAN")
    assert list(ddgan.x) == [pytest.approx(28.2)] and "derived" in ddgan.hovertext[0]
    assert list(_roles(gmacs, "measured")[0].x) == [0.04, 0.04, 0.04]


def test_time_error_bars_from_quartiles(tmp_path: Path) -> None:
    record = _record("c", fid=1.0, extractor=DIGITS, time_s=0.05)
    record["timing"] |= {"q25_s": 0.045, "q75_s": 0.06, "iqr_s": 0.015}
    _write(tmp_path, record)
    trace = fid_vs_time_figures(load_records([tmp_path]))[0].data[0]
    assert list(trace.error_x.array) == [pytest.approx(0.01)]
    assert list(trace.error_x.arrayminus) == [pytest.approx(0.005)]


def test_table2_and_table3(mixed: Path, baselines: Path) -> None:
    df = load_records([mixed])
    paper = paper_points(df, baselines)
    t3 = table3(df, paper)
    measured, reported = t3[t3["source"] == "measured"], t3[t3["source"] != "measured"]
    assert len(measured) == 6 and len(reported) == 3  # the failed cell is not a row
    assert (reported["source"] == "reported: LDDGAN paper").all()
    assert reported[f"FID [{DIGITS}]"].isna().all()  # never in a digits-classifier column
    ddgan = reported[(reported["name"] == "DDGAN") & (reported["dataset"] == "cifar10")].iloc[0]
    assert ddgan[f"FID [{INCEPTION}]"] == 3.75 and ddgan[f"recall [{VGG16}]"] == 0.57
    assert ddgan["NFE"] == 4 and ddgan["time/batch [s]"] == 0.21
    cell = measured.set_index("cell").loc["ddgan-cifar10"]
    assert cell[f"FID [{INCEPTION}]"] == 5.0 and math.isnan(cell[f"FID [{DIGITS}]"])
    assert cell[f"recall [{VGG16}]"] == 0.5 and cell["device"] == "cpu" and cell["batch"] == 100
    assert "experiment" in t3.columns  # two experiments: default and ddgan_cifar10
    t2 = table2(df, paper)
    ddgan = t2[(t2["name"] == "LDDGAN")].iloc[0]
    assert (ddgan["params [M]"], ddgan["GMACs/forward"], ddgan["memory [GB]"]) == (
        41.97, 1.72, 0.18)
    assert math.isnan(ddgan["GMACs/sample"]) and ddgan["note"] == "1.72 G incl. decoder?"
    cell = t2.set_index("cell").loc["ncsnpp-pixel-ddgan-t4"]
    assert cell["params [M]"] == pytest.approx(0.123)
    assert cell["params denoiser [M]"] == pytest.approx(0.12)
    assert cell["params decoder [M]"] == pytest.approx(0.003)
    assert (cell["GMACs/forward"], cell["GMACs decoder"], cell["GMACs/sample"]) == (
        0.01, 0.0, 0.04)
    assert cell["memory [MB]"] == pytest.approx(12.0)  # measured: MB; reported: the paper's GB
    assert math.isnan(cell["memory [GB]"]) and math.isnan(ddgan["memory [MB]"])
    # measured rows are named by what sets them apart, not by hashed folder names
    assert set(t2.loc[t2["source"] == "measured", "name"]) >= {"default digits ddgan s4 t4"}


def test_write_report_is_self_contained(mixed: Path, baselines: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    written = write_report(load_records([mixed]), out, baselines_dir=baselines)
    tables = {f"table{n}_{s}": out.with_name(f"report.table{n}.{s}")
              for n in (2, 3) for s in ("csv", "md", "tex")}
    assert written == {"html": out, "csv": out.with_suffix(".csv"),
                       "seeds_csv": out.with_suffix(".seeds.csv"), **tables}
    page = out.read_text(encoding="utf-8")
    assert page.count("plotly.js v") == 1  # inlined once
    assert len(page) > 1_000_000  # plotly.js is inlined, not linked
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", page)
    assert page.count("src='data:image/png;base64,") == 6  # the failed cell has no grid
    assert "uvit-pixel-ddpm-1000" in page and "training diverged" in page
    assert f"FID [{INCEPTION}]" in page and f"FID [{DIGITS}]" in page
    assert "DDGAN (reported, LDDGAN paper)" in page and "Published trade-offs" in page
    assert "3.61 GMACs" in page  # the note on LDDGAN's decoder, next to Table 2
    csv = pd.read_csv(written["csv"])
    assert len(csv) == 7 and f"FID [{DIGITS}]" in csv.columns
    t3 = pd.read_csv(written["table3_csv"])
    assert len(t3) == 6 + 3 and t3["source"].str.startswith("reported").sum() == 3
    markdown = written["table3_md"].read_text()
    assert "## Measured" in markdown and "## Reported (published, not measured)" in markdown
    reported_part = markdown.split("## Reported")[1]
    assert f"FID [{DIGITS}]" not in reported_part  # the empty column is left out there
    assert "| DDGAN | cifar10 | 4 | 3.75 | 0.57 | 0.21 |" in reported_part
    assert "3.61 GMACs" in written["table2_md"].read_text()
    latex = written["table3_tex"].read_text()
    assert latex.count(r"\begin{tabular}") == 2 and r"\toprule" in latex
    assert "ddgan\\_cifar10" in latex and "ddgan_cifar10" not in latex  # escaped for LaTeX
    assert not list(out.parent.glob(".*.tmp"))  # temporary files are gone


def test_write_report_is_reproducible(mixed: Path, baselines: Path, tmp_path: Path) -> None:
    df = load_records([mixed])
    first = write_report(df, tmp_path / "a" / "r.html", baselines_dir=baselines)
    second = write_report(df, tmp_path / "b" / "r.html", baselines_dir=baselines)
    for kind, path in first.items():
        assert path.read_bytes() == second[kind].read_bytes(), kind


def test_report_command_with_and_without_paper(mixed: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli" / "report.html"
    assert cli.main(["report", str(mixed), "-o", str(out)]) == 0
    assert f"table3_tex: {out.with_name('report.table3.tex')}" in capsys.readouterr().out
    with_paper = pd.read_csv(out.with_name("report.table3.csv"))
    assert with_paper["source"].str.startswith("reported").sum() >= len(baseline_names())
    assert cli.main(["report", str(mixed), "-o", str(out), "--no-paper"]) == 0
    without = pd.read_csv(out.with_name("report.table3.csv"))
    assert (without["source"] == "measured").all() and len(without) == 6
    assert "(reported," not in out.read_text(encoding="utf-8")


def test_published_panels_of_unmeasured_datasets_collapsed_or_left_out(
        mixed: Path, baselines: Path, tmp_path: Path) -> None:
    """CelebA-HQ is measured by no record: its published panel is in the one collapsed section,
    or not on the page with ``--measured-datasets-only``; CIFAR-10's stays in view."""
    out = tmp_path / "report.html"
    write_report(load_records([mixed]), out, baselines_dir=baselines)
    page = out.read_text(encoding="utf-8")
    shown, collapsed = page.split("<details class='published'")
    assert page.count("<details") == 1 and "celebahq256" in collapsed.split("</details>")[0]
    assert "FID [inception-v3-compat] - cifar10" in shown
    assert "FID [inception-v3-compat] - celebahq256" not in shown
    write_report(load_records([mixed]), out, baselines_dir=baselines, published_elsewhere=False)
    page = out.read_text(encoding="utf-8")
    assert "<details" not in page and "FID [inception-v3-compat] - celebahq256" not in page
    assert "FID [inception-v3-compat] - cifar10" in page


def test_no_file_outside_the_repository_is_cited() -> None:
    """Paper notes cite the papers and official repositories, never a file genbench does not
    ship (REFERENCE.md, DESIGN.md, ../shared/)."""
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "baselines").glob("*.yaml")) + sorted(
            (root / "genbench" / "report").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for name in ("REFERENCE.md", "DESIGN.md", "../shared/"):
            assert name not in text, (path.name, name)


def test_resolution_of_an_image_folder_at_its_own_size(tmp_path: Path) -> None:
    """``dataset.resolution: null`` (an image folder at its images' own size): the report's
    resolution is the side of the image shape the cell recorded."""
    from conftest import write_ok_record

    write_ok_record(tmp_path, "native", 4, 0, 10.0, resolution=None)
    write_ok_record(tmp_path, "given", 4, 0, 11.0, resolution=16)
    path = tmp_path / "e" / "native" / "result.json"
    record = json.loads(path.read_text())
    assert record["config"]["dataset"]["resolution"] is None
    assert pd.isna(load_records([tmp_path]).set_index("cell").loc["native", "resolution"])
    path.write_text(json.dumps({**record, "shapes": {"image": [3, 32, 32]}}))
    rows = load_records([tmp_path]).set_index("cell")
    assert rows.loc["native", "resolution"] == 32 and rows.loc["given", "resolution"] == 16
