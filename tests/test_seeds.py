"""Training seeds as a dimension: ``train.seeds=N`` cells, ``seed=0,1`` grids, the aggregate in
records, the report and the console, and the overlap warnings."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, write_ok_record
from safetensors.torch import load_file

from genbench.config import compose_plain
from genbench.errors import UserError
from genbench.harness.cell import cell_name, run_cell
from genbench.report.experiment import summary_text
from genbench.report.figures import fid_vs_time_figures
from genbench.report.html import write_report
from genbench.report.replicates import (
    Point,
    configuration_key,
    overlap_warnings,
    replicate_config,
    replicate_seeds,
    summarize,
)
from genbench.report.seeds import configurations, ranking_warnings
from genbench.report.tables import load_records
from genbench.schema import validate

FAST = [*TINY, "dataset.split=test"]  # the 360 test digits


def _record(folder: Path) -> dict:
    [path] = [p for p in folder.glob("*/result.json") if not p.parent.name.startswith(".")]
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- schema and names


def test_train_seeds_is_an_integer_of_at_least_one_and_defaults_to_one():
    cfg = compose_plain([*FAST])
    assert cfg["train"]["seeds"] == 1
    validate(cfg)
    validate(compose_plain([*FAST, "train.seeds=3"]))
    for bad, words in (("0", "must be >= 1"), ("1.5", "must be an integer"),
                       ("two", "must be an integer")):
        with pytest.raises(UserError, match=rf"train\.seeds.*{words}"):
            validate(compose_plain([*FAST, f"train.seeds={bad}"]))


def test_single_seed_cells_keep_their_names_and_replicates_are_cells_with_another_seed():
    cfg = compose_plain([*FAST])
    without = {**cfg, "train": {k: v for k, v in cfg["train"].items() if k != "seeds"}}
    assert cell_name(cfg) == cell_name(without)  # names from before train.seeds stay valid
    three = compose_plain([*FAST, "train.seeds=3", "seed=5"])
    assert cell_name(three) != cell_name(cfg)
    assert replicate_seeds(three) == [5, 6, 7]
    assert replicate_config(three, 6) == {**cfg, "seed": 6}
    assert configuration_key(cfg) == configuration_key({**cfg, "seed": 1, "experiment": "x"})
    assert configuration_key(cfg) != configuration_key(three)


def test_a_checkpoint_with_several_seeds_is_refused(tmp_path):
    weights = tmp_path / "g.safetensors"
    weights.write_bytes(b"not read")
    cfg = compose_plain([*FAST, "train.seeds=2", f"checkpoint={weights}",
                         f"results_dir={tmp_path / 'r'}"])
    with pytest.raises(UserError, match="train.seeds=2"):
        run_cell(cfg)
    assert not (tmp_path / "r" / "default").exists()


# --------------------------------------------------------------------------- aggregation


def test_summarize_is_mean_sample_std_min_max_and_n():
    values = [3.0, 5.0, 10.0]
    assert summarize(values) == {"mean": 6.0, "std": statistics.stdev(values), "min": 3.0,
                                 "max": 10.0, "n": 3}
    assert summarize([4.0, None, float("nan")]) == {"mean": 4.0, "std": None, "min": 4.0,
                                                    "max": 4.0, "n": 1}
    assert summarize([None]) is None


def test_overlap_warnings_name_the_axis_whose_intervals_overlap():
    a = Point("a", 1.0, 10.0, (0.9, 1.1), (8.0, 12.0), 2)
    b = Point("b", 5.0, 11.0, (4.8, 5.2), (10.5, 13.0), 2)
    c = Point("c", 5.1, 30.0, (5.0, 5.3), (29.0, 31.0), 2)
    lines = overlap_warnings([a, b, c])
    assert lines == [
        "a (n=2) and b (n=2): their FID intervals overlap, so their FID ranking is not supported",
        "b (n=2) and c (n=2): their time per batch intervals overlap, so their time per batch "
        "ranking is not supported",
    ]
    assert overlap_warnings([a, Point("d", 3.0, 40.0, None, (39.0, 41.0), 2)]) == []
    # a single run inside another's range is not ranked against it; two single runs have no
    # spread to compare
    assert len(overlap_warnings([a, Point("e", 3.0, 9.0, None, None, 1)])) == 1
    assert overlap_warnings([Point("f", 1.0, 1.0), Point("g", 1.0, 1.0)]) == []


def _write_record(root: Path, cell: str, steps: int, seed: int, fid: float, time_s: float,
                  *, per_seed: list[tuple[int, float]] | None = None) -> None:
    write_ok_record(root, cell, steps, seed, fid, time_s=time_s, resolution=32, per_seed=per_seed)


@pytest.mark.parametrize("overlapping", [True, False])
def test_replicates_collapse_to_one_point_and_overlaps_are_warned(tmp_path, overlapping):
    # configuration s2: two grid cells (seeds 0 and 1); configuration s4: one train.seeds=2
    # record; configuration s8: a single run
    _write_record(tmp_path, "s2-seed0", 2, 0, 20.0, 0.010)
    _write_record(tmp_path, "s2-seed1", 2, 1, 30.0, 0.011)
    s4 = [(0, 26.0), (1, 40.0)] if overlapping else [(0, 50.0), (1, 60.0)]
    _write_record(tmp_path, "s4-seeds", 4, 0, statistics.mean(f for _, f in s4), 0.020,
                  per_seed=s4)
    _write_record(tmp_path, "s8", 8, 0, 100.0, 0.040)
    df = load_records([tmp_path])
    configs = configurations(df).set_index("steps")
    assert configs.loc[2, "n"] == 2 and configs.loc[2, "seeds"] == "0, 1"
    assert configs.loc[2, "fid"] == 25.0 and configs.loc[2, "fid_std"] == statistics.stdev([20, 30])
    assert (configs.loc[2, "fid_min"], configs.loc[2, "fid_max"]) == (20.0, 30.0)
    assert configs.loc[2, "time_per_batch_s"] == pytest.approx(0.0105)
    assert configs.loc[4, "n"] == 2 and configs.loc[8, "n"] == 1
    assert math.isnan(configs.loc[8, "fid_std"]) or configs.loc[8, "fid_std"] is None

    warnings = ranking_warnings(df)
    fid_lines = [w for w in warnings if "FID ranking" in w]
    if overlapping:  # 20..30 and 26..40 overlap
        assert fid_lines == ["[s2-seed0, s2-seed1] (n=2) and s4-seeds (n=2): their FID intervals "
                             "overlap, so their FID ranking is not supported"]
    else:
        assert fid_lines == []

    [figure] = fid_vs_time_figures(df)
    [trace] = [t for t in figure.data if t.meta["role"] == "measured"]
    assert sorted(trace.y) == [25.0, statistics.mean(f for _, f in s4), 100.0]  # the means
    bars = dict(zip(trace.text, zip(trace.error_y.array, trace.error_y.arrayminus)))
    assert bars["ddgan s2 n=2"] == (5.0, 5.0)
    assert bars["ddgan s8 n=1"] == (None, None)  # a single run: no error bar

    written = write_report(df, tmp_path / "report.html", include_paper=False)
    page = written["html"].read_text()
    assert ("id='ranking-warnings'" in page) is overlapping
    assert "25.000 ± 7.071 [20.000, 30.000]" in page
    seeds = pd.read_csv(written["seeds_csv"]).set_index("steps")
    assert seeds.loc[2, "n"] == 2 and seeds.loc[2, "FID [clf] mean"] == 25.0
    assert seeds.loc[4, "FID [clf] max"] == s4[1][1] and seeds.loc[8, "n"] == 1
    summary = pd.read_csv(written["csv"]).set_index("cell")
    assert summary.loc["s4-seeds", "n"] == 2 and summary.loc["s8", "n"] == 1

    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("e/*/result.json"))]
    console = summary_text(records)
    assert "configurations over training seeds" in console
    assert ("warning: [s2-seed0, s2-seed1] (n=2) and s4-seeds (n=2): their FID" in console) \
        is overlapping


# --------------------------------------------------------------------------- end to end


def test_train_seeds_two_trains_two_models_and_records_their_aggregate(run_cli, tmp_path):
    cache = tmp_path / "cache"
    common = [*FAST, f"cache_dir={cache}", "results_dir=results"]
    single = run_cli("run", *common, "experiment=one")  # seed 0 alone: its model is cached
    assert single.returncode == 0, single.stderr
    proc = run_cli("run", *common, "train.seeds=2", "experiment=two")
    assert proc.returncode == 0, proc.stderr
    record = _record(tmp_path / "results" / "two")
    reps = record["replicates"]
    assert reps["n"] == 2 and reps["seeds"] == [0, 1]
    per_seed = record["training"]["per_seed"]
    # seed 0's model was there (a resumed multi-seed cell trains only the missing seeds)
    assert [p["source"] for p in per_seed] == ["cache", "trained"]
    assert per_seed[0]["key"] == _record(tmp_path / "results" / "one")["training"]["key"]
    weights = [load_file(str(Path(p["folder"]) / "generator.safetensors")) for p in per_seed]
    assert weights[0].keys() == weights[1].keys()
    assert any(not (weights[0][k] == weights[1][k]).all() for k in weights[0])

    fids = [p["metrics"]["fid"] for p in reps["per_seed"]]
    assert fids[0] != fids[1]
    assert fids[0] == pytest.approx(_record(tmp_path / "results" / "one")["metrics"]["fid"])
    for key in ("fid", "precision", "recall"):
        values = [p["metrics"][key] for p in reps["per_seed"]]
        aggregate = reps["aggregate"][key]
        assert aggregate["mean"] == pytest.approx(statistics.mean(values))
        assert aggregate["std"] == pytest.approx(statistics.stdev(values))
        assert (aggregate["min"], aggregate["max"], aggregate["n"]) == (min(values),
                                                                        max(values), 2)
        assert record["metrics"][key] == pytest.approx(statistics.mean(values))
    assert record["timing"]["measured_on_seed"] == 0
    assert " ± " in proc.stdout  # the console shows the spread

    # the same command again: the record is done; seed=1 alone reuses the cached model
    again = run_cli("run", *common, "seed=1", "experiment=three")
    assert again.returncode == 0, again.stderr
    third = _record(tmp_path / "results" / "three")
    assert third["training"]["source"] == "cache" and third["training"]["key"] == per_seed[1]["key"]
    assert third["metrics"]["fid"] == pytest.approx(fids[1])


def test_a_seed_grid_is_one_configuration_in_the_report(run_cli, tmp_path):
    proc = run_cli("run", "-m", *FAST, "seed=0,1", "experiment=g", "results_dir=results")
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "results" / "g"
    records = [json.loads(p.read_text()) for p in folder.glob("*/result.json")]
    assert len(records) == 2 and {r["config"]["seed"] for r in records} == {0, 1}
    fids = sorted(r["metrics"]["fid"] for r in records)
    seeds = pd.read_csv(folder / "report.seeds.csv")
    assert len(seeds) == 1 and seeds.loc[0, "n"] == 2 and seeds.loc[0, "seeds"] == "0, 1"
    [fid_mean] = [c for c in seeds.columns if c.startswith("FID [") and c.endswith(" mean")]
    assert seeds.loc[0, fid_mean] == pytest.approx(statistics.mean(fids))
    assert seeds.loc[0, fid_mean.replace(" mean", " min")] == pytest.approx(fids[0])
    assert seeds.loc[0, fid_mean.replace(" mean", " max")] == pytest.approx(fids[1])
    page = (folder / "report.html").read_text()
    assert '"text":["ddgan s4 n=2"]' in page  # one point, labelled with its n
    assert "configurations over training seeds" in proc.stdout


def test_the_same_seed_twice_or_no_seed_is_not_a_replicate(tmp_path):
    _write_record(tmp_path, "a", 2, 0, 20.0, 0.010)
    _write_record(tmp_path, "b", 2, 0, 30.0, 0.010)  # the same run measured again
    df = load_records([tmp_path])
    assert list(configurations(df)["n"]) == [1, 1]
    assert configurations(df.assign(seed=[None, None]))["n"].tolist() == [1, 1]


def test_a_bad_seed_count_still_records_the_failed_cell(tmp_path):
    from genbench.harness.cell import record_failure

    cfg = compose_plain([*FAST, "train.seeds=two", f"results_dir={tmp_path}", "cell=bad"])
    record = record_failure(cfg, UserError("train.seeds must be an integer, got 'two'"))
    assert record["status"] == "failed" and record["seeds"]["train"] == 0
    assert "train_replicates" not in record["seeds"]
