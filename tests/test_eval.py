"""``genbench eval SAMPLES [REFERENCE]``: score given images (folders, .npz, dataset presets),
record them like a cell, print the metrics as JSON, draw them in the report; bad input is one
line and exit status 2 with nothing written.

The images are the 360 test digits (8x8 grey) written by the tests as PNG folders and .npz
files; the metrics use the digits feature classifier (``eval.feature_extractor=classifier``, the
offline extractor), trained once per module in a shared cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genbench import cli
from genbench.data.datasets import digits
from genbench.harness.record import METRIC_KEYS
from genbench.harness.score import NO_GENERATOR, QUALITY_KEYS
from genbench.report import load_records, report_panels, table2, table3
from genbench.report.seeds import seeds_table


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The test digits as: ``classes/<label>/`` and ``flat/`` PNG folders (same images),
    ``inverted/`` (255 - x), ``digits.npz`` (ADM layout, NHWC), ``digits_nchw.npz``; and one
    cache folder for the module (the classifiers and reference statistics)."""
    root = tmp_path_factory.mktemp("eval")
    test = digits(split="test")
    images, labels = test.images.numpy(), test.labels.numpy()  # [360, 1, 8, 8]
    for name in ("flat", "inverted", *(f"classes/{k}" for k in range(10))):
        (root / name).mkdir(parents=True)
    for i, (image, label) in enumerate(zip(images[:, 0], labels)):
        Image.fromarray(image).save(root / "classes" / str(label) / f"{i:04d}.png")
        Image.fromarray(image).save(root / "flat" / f"{i:04d}.png")
        Image.fromarray(255 - image).save(root / "inverted" / f"{i:04d}.png")
    np.savez(root / "digits.npz", images.transpose(0, 2, 3, 1))
    np.savez(root / "digits_nchw.npz", images)
    return root


def _eval(data: Path, results: Path, *words: str, capsys=None) -> tuple[int, str, str]:
    argv = ["eval", *words, "eval=tiny", "eval.feature_extractor=classifier", "progress=false",
            "report=false", f"results_dir={results}", f"cache_dir={data / 'cache'}"]
    code = cli.main(argv)
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


def _records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*/*/result.json"))]


def test_folder_vs_folder(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(data)  # SAMPLES and REFERENCE as relative paths
    results = tmp_path / "results"
    code, _, err = _eval(data, results, "classes", "classes", capsys=capsys)
    assert code == 0, err
    [record] = _records(results)
    assert record["kind"] == "eval" and record["status"] == "ok"
    assert record["cell"].startswith("eval-classes-vs-classes-")
    metrics = record["metrics"]
    assert abs(metrics["fid"]) < 1e-6  # identical sets
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0
    for key in METRIC_KEYS:
        assert key in metrics
        if key not in QUALITY_KEYS:
            assert metrics[key] is None and record["missing"][key] == NO_GENERATOR
    assert "training" not in record and "timing" not in record
    recipe = record["metric_recipes"]["fid"]
    assert recipe["extractor"] == "image_folder-classifier"  # trained on the class subfolders
    assert recipe["num_fake"] == recipe["num_real"] == 360
    samples, reference = record["inputs"]["samples"], record["inputs"]["reference"]
    assert samples["kind"] == "folder" and samples["files"] == 360 and samples["classes"] == 10
    assert samples["images"] == reference["images"]  # content hash of the uint8 arrays
    assert samples["images"]["shape"] == [360, 1, 8, 8]
    assert samples["path"] == str((data / "classes").resolve())
    assert samples["first_file"].startswith("0/") and samples["last_file"].startswith("9/")
    assert record["config"]["dataset"]["name"] == "image_folder"
    cell = results / "default" / record["cell"]
    assert (cell / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert (cell / "config.yaml").is_file()

    # the same images in one flat folder: another listing, the same pixels in another order
    code, _, err = _eval(data, results, "flat", "classes", capsys=capsys)
    assert code == 0, err
    flat = next(r for r in _records(results) if r["cell"].startswith("eval-flat-"))
    assert abs(flat["metrics"]["fid"]) < 1e-6
    assert flat["inputs"]["samples"]["images"]["sha256"] != samples["images"]["sha256"]
    # other images: a real distance
    code, _, err = _eval(data, results, "inverted", "classes", capsys=capsys)
    assert code == 0, err
    inverted = next(r for r in _records(results) if r["cell"].startswith("eval-inverted-"))
    assert inverted["metrics"]["fid"] > 10

    # the same command again: the record is kept, not scored again
    code, _, err = _eval(data, results, "classes", "classes", capsys=capsys)
    assert code == 0 and "already recorded" in err
    assert len(_records(results)) == 3


def test_npz_vs_dataset_preset_json(data, tmp_path, run_cli):
    results = tmp_path / "results"
    proc = run_cli("eval", str(data / "digits.npz"), "dataset=digits", "dataset.split=test",
                   "eval=tiny", "eval.feature_extractor=classifier", "progress=false",
                   "report=false", f"results_dir={results}", f"cache_dir={data / 'cache'}",
                   "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout)  # stdout is the JSON object and nothing else
    [record] = _records(results)
    assert printed == record["metrics"]
    assert abs(printed["fid"]) < 1e-6  # the test split against itself
    samples = record["inputs"]["samples"]
    assert samples["kind"] == "npz" and samples["layout"] == "NHWC"
    assert samples["array"] == "arr_0" and len(samples["file_sha256"]) == 64
    assert record["inputs"]["reference"]["kind"] == "dataset"
    assert record["config"]["presets"]["dataset"] == "digits"
    assert record["config"]["dataset"] == {"name": "digits", "resolution": 8, "split": "test",
                                           "channels": 1}
    assert record["metric_recipes"]["fid"]["extractor"] == "digits-classifier"


def test_npz_layouts_and_folder_read_the_same_images(data, tmp_path, capsys):
    results = tmp_path / "results"
    for samples in ("digits_nchw.npz", "flat"):
        code, _, err = _eval(data, results, str(data / samples), "dataset=digits",
                             "dataset.split=test", capsys=capsys)
        assert code == 0, err
    by_kind = {r["inputs"]["samples"]["kind"]: r for r in _records(results)}
    nchw, flat = by_kind["npz"], by_kind["folder"]
    assert nchw["inputs"]["samples"]["layout"] == "NCHW"
    assert nchw["inputs"]["samples"]["images"] == flat["inputs"]["samples"]["images"]
    assert nchw["metrics"] == flat["metrics"]


def _cell_record(fid: float, time_s: float) -> dict:
    """A generated cell's record on the digits test split with the digits classifier."""
    recipe = {"extractor": "digits-classifier", "num_fake": 200, "num_real": 360}
    return {
        "schema_version": 1, "experiment": "default", "cell": f"digits-pixel-x-ddgan-s4-{fid:g}",
        "status": "ok", "error": None, "created": "2026-01-01T00:00:00Z",
        "config": {"dataset": {"name": "digits", "resolution": 8, "split": "test"},
                   "presets": {"dataset": "digits"}, "backbone": {"name": "ncsnpp"},
                   "latent": {"name": "pixel"}, "sampler": {"name": "ddgan", "steps": 4},
                   "seed": 0},
        "metrics": {"fid": fid, "precision": 0.5, "recall": 0.4, "nfe": 4, "params": 1000,
                    "gmacs_per_sample": 0.01, "time_per_batch_s": time_s},
        "metric_recipes": {"fid": recipe, "precision": recipe, "recall": recipe},
        "missing": {}, "timing": {"median_s": time_s, "device": "cpu", "batch_size": 100},
        "artifacts": {},
    }  # fmt: skip


def test_report_draws_scored_images_beside_cells(data, tmp_path, capsys):
    results = tmp_path / "results"
    code, _, err = _eval(data, results, str(data / "inverted"), "dataset=digits",
                         "dataset.split=test", capsys=capsys)
    assert code == 0, err
    [scored] = _records(results)
    for fid, time_s in ((300.0, 0.5), (200.0, 2.0)):
        cell = _cell_record(fid, time_s)
        (results / "default" / cell["cell"]).mkdir()
        (results / "default" / cell["cell"] / "result.json").write_text(json.dumps(cell))
    out = tmp_path / "out" / "report.html"
    assert cli.main(["report", str(results), "-o", str(out), "--no-paper"]) == 0
    page = out.read_text()
    assert "id='scored'" in page and "scored inverted" in page

    df = load_records([results])
    [panel] = report_panels(df)  # one extractor, one dataset: the cells and the scored images
    figures = {f.layout.meta["kind"]: f for f in panel.figures}
    time_fig = figures["fid_vs_time"]
    [line] = [t for t in time_fig.data if t.meta["role"] == "scored"]
    assert list(line.y) == [scored["metrics"]["fid"]] * 2  # a level at its FID, at no time
    assert line.x[0] < 0.5 and line.x[1] > 2.0  # across the cells' span
    [measured] = [t for t in time_fig.data if t.meta["role"] == "measured"]
    assert len(measured.x) == 2  # the scored images are not a point on the time axis
    recall_fig = figures["recall_vs_fid"]
    [points] = [t for t in recall_fig.data if t.meta["role"] == "scored"]
    assert list(points.x) == [scored["metrics"]["fid"]]
    assert list(points.y) == [scored["metrics"]["recall"]]

    assert scored["cell"] in set(table3(df)["cell"])  # quality: listed
    assert scored["cell"] not in set(table2(df)["cell"])  # cost: no generator
    assert scored["cell"] not in " ".join(seeds_table(df)["cells"])  # never trained


def _npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def _bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _npy_named_npz(path: Path) -> str:
    with open(path, "wb") as handle:
        np.save(handle, np.zeros((4, 8, 8, 1), np.uint8))
    return str(path)


BAD_INPUTS = {
    "missing path": (lambda d: ["nowhere"], "no such file or folder"),
    "empty folder": (lambda d: [str(d / "empty")], "no images"),
    "one image": (lambda d: [str(d / "one")], "at least 2"),
    "not an npz": (lambda d: [str(d / "notes.txt")], "not an .npz"),
    "float npz": (lambda d: [_npz(d / "f.npz", arr_0=np.zeros((4, 8, 8, 1), np.float32))],
                  "not uint8"),
    "npz without arr_0": (lambda d: [_npz(d / "two.npz", a=np.zeros((4, 8, 8, 1), np.uint8),
                                          b=np.zeros(4))], "arr_0"),
    "npz of 4 channels": (lambda d: [_npz(d / "c4.npz", arr_0=np.zeros((4, 8, 8, 4), np.uint8))],
                          "expected uint8 images"),
    "non-square npz": (lambda d: [_npz(d / "ns.npz", arr_0=np.zeros((4, 8, 6, 1), np.uint8))],
                       "square"),
    "pickled npz": (lambda d: [_npz(d / "p.npz", arr_0=np.array([{"x": 1}], dtype=object))],
                    "cannot be read"),
    "truncated npz": (lambda d: [_bytes(d / "t.npz", b"PK\x03\x04 cut short")], "cannot be read"),
    "npy named npz": (lambda d: [_npy_named_npz(d / "npy.npz")], "not an .npz archive"),
    "mismatched shapes": (lambda d: [str(d / "digits.npz"), "dataset=digits16"], "must match"),
    "unknown dataset": (lambda d: [str(d / "flat"), "dataset=digitz"], "did you mean digits"),
    "generator override": (lambda d: [str(d / "flat"), "backbone=uvit"], "no generator"),
    "two references": (lambda d: [str(d / "flat"), str(d / "flat"), str(d / "classes")],
                       "one REFERENCE"),
    "path and preset": (lambda d: [str(d / "flat"), str(d / "flat"), "dataset=digits"],
                        "second one"),
    "unlabelled reference": (lambda d: [str(d / "flat"), str(d / "flat")],
                             "does not have"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(case, data, tmp_path, capsys):
    (data / "empty").mkdir(exist_ok=True)
    (data / "one").mkdir(exist_ok=True)
    Image.new("L", (8, 8)).save(data / "one" / "a.png")
    (data / "notes.txt").write_text("not images")
    words, expected = BAD_INPUTS[case]
    results = tmp_path / "results"
    code, out, err = _eval(data, results, *words(data), capsys=capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("genbench: error: ") and expected in lines[0], lines[0]
    assert out == ""
    assert not list(results.glob("*/*/result.json"))
