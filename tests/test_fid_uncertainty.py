"""Uncertainty of FID: the half-sample interval (fid_ci), FID-infinity, KID's subset size, and
how records, tables and figures carry them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import write_ok_record

from genbench.errors import UserError
from genbench.metrics import quality
from genbench.metrics.quality import (
    SubsetFID,
    as_statistics,
    fid_infinity,
    fid_interval,
    infinity_fit,
    infinity_sizes,
    interval_of_mean,
)


def _mixing(dims: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((dims, dims)) / np.sqrt(dims)


def _gaussian(n: int, mixing: np.ndarray, shift: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, len(mixing))) @ mixing + shift


def _pair(n: int, dims: int, seed: int = 0):
    """Reference statistics and generated features from two different Gaussians."""
    a = _mixing(dims, seed)
    b = a + 0.3 * _mixing(dims, seed + 1)
    reference = as_statistics(_gaussian(max(4 * dims, 400), a, 0.0, seed + 2))
    return reference, _gaussian(n, b, 0.2, seed + 3)


# ---------------------------------------------------------------------------- SubsetFID


@pytest.mark.parametrize("n, dims", [(40, 24), (300, 16), (120, 64)])
def test_subset_fid_equals_the_standard_formula(n: int, dims: int) -> None:
    """Whole set, a resample with repeated rows and a half-sample, on both paths (subsets
    smaller and larger than the dimension), against torch-fidelity's formula in quality.py."""
    reference, fake = _pair(n, dims)
    subset_fid = SubsetFID(reference, fake)
    rng = np.random.default_rng(7)
    for index in (np.arange(n), rng.integers(0, n, n), rng.permutation(n)[: n // 2],
                  rng.permutation(n)[: dims + 5]):
        index = index[index < n]
        expected = quality.fid(reference, fake[index])
        assert subset_fid(index) == pytest.approx(expected, rel=1e-6)


def test_subset_fid_rejects_other_dimensions_and_single_rows() -> None:
    reference, fake = _pair(30, 6)
    with pytest.raises(UserError, match="one feature extractor"):
        SubsetFID(reference, fake[:, :5])
    with pytest.raises(UserError, match="at least 2 samples"):
        SubsetFID(reference, fake)(np.array([3]))


# ---------------------------------------------------------------------------- the interval


def test_interval_contains_the_fid_is_reproducible_and_seeded() -> None:
    reference, fake = _pair(64, 8)
    first = fid_interval(reference, fake, resamples=50, seed=3)
    again = fid_interval(reference, fake, resamples=50, seed=3)
    other = fid_interval(reference, fake, resamples=50, seed=4)
    assert first.fid == pytest.approx(quality.fid(reference, fake), rel=1e-9)
    assert first.low < first.fid < first.high
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)
    assert first.half_sample_fids.shape == (50,)
    assert first.recipe["resamples"] == 50 and first.recipe["half_size"] == 32
    assert first.recipe["seed"] == 3 and "half-sampling" in first.recipe["method"]


def test_interval_covers_the_expected_fid_with_about_the_true_width() -> None:
    """Simulation: Gaussian features with as many dimensions as samples (the regime of 1,000
    Inception features). The sampling distribution of FID_n is measured over fresh generated
    sets; intervals from single sets must cover its median about 95% of the time with about its
    width. A percentile bootstrap (rows with replacement) misses the set's own FID instead."""
    dims, n, trials = 32, 32, 20
    a, b = _mixing(dims, 5), _mixing(dims, 5) + 0.3 * _mixing(dims, 6)
    reference = as_statistics(_gaussian(5000, a, 0.0, 7))
    fresh = [quality.fid(reference, _gaussian(n, b, 0.2, 1000 + i)) for i in range(200)]
    true_low, true_high = np.percentile(fresh, [2.5, 97.5])
    covered, widths, bootstrap_misses = 0, [], 0
    for trial in range(trials):
        fake = _gaussian(n, b, 0.2, trial)
        found = fid_interval(reference, fake, resamples=100, seed=trial)
        covered += found.low <= np.median(fresh) <= found.high
        widths.append(found.high - found.low)
        subset_fid, rng = SubsetFID(reference, fake), np.random.default_rng(trial)
        boot = [subset_fid(rng.integers(0, n, n)) for _ in range(100)]
        low, high = np.percentile(boot, [2.5, 97.5])
        bootstrap_misses += not low <= found.fid <= high
    assert covered >= 17
    assert 0.7 < np.mean(widths) / (true_high - true_low) < 1.8
    assert bootstrap_misses >= 15


def test_interval_needs_samples_and_resamples() -> None:
    reference, fake = _pair(30, 4)
    with pytest.raises(UserError, match="at least 4 generated samples"):
        fid_interval(reference, fake[:3], resamples=20, seed=0)
    with pytest.raises(UserError, match="resamples >= 1"):
        fid_interval(reference, fake, resamples=0, seed=0)


def test_interval_of_the_mean_of_seeds() -> None:
    reference, fake = _pair(64, 8)
    other = _gaussian(64, _mixing(8, 0) + 0.5 * _mixing(8, 9), 0.1, 11)
    one = fid_interval(reference, fake, resamples=60, seed=2)
    two = fid_interval(reference, other, resamples=60, seed=2)
    low, high = interval_of_mean([one.fid, two.fid], [one.half_sample_fids,
                                                      two.half_sample_fids])
    mean = (one.fid + two.fid) / 2
    assert low < mean < high
    assert high - low < max(one.high - one.low, two.high - two.low)  # averaging narrows it
    assert interval_of_mean([one.fid], [one.half_sample_fids]) == pytest.approx(
        (one.low, one.high))


# ---------------------------------------------------------------------------- FID-infinity


def test_infinity_fit_recovers_a_line_in_one_over_n() -> None:
    sizes = [200, 400, 600, 800, 1000]
    fit = infinity_fit(sizes, [3.0 + 5000.0 / s for s in sizes])
    assert fit["intercept"] == pytest.approx(3.0) and fit["slope"] == pytest.approx(5000.0)
    assert fit["r2"] == pytest.approx(1.0)


def test_infinity_sizes_follow_the_official_spacing() -> None:
    official = infinity_sizes(50000, 15)
    assert official == list(np.linspace(5000, 50000, 15).astype(int))  # score_infinity.py
    small = infinity_sizes(1000, 15)
    assert small[0] == 200 and small[-1] == 1000 and len(small) == 15
    assert infinity_sizes(12, 15) == sorted(set(infinity_sizes(12, 15)))  # no repeats


def test_fid_infinity_is_closer_to_the_large_sample_fid() -> None:
    """FID falls with N (Chong and Forsyth 2020); the extrapolation lands nearer the FID of many
    samples than the FID of the set itself."""
    dims = 16
    a, b = _mixing(dims, 1), _mixing(dims, 1) + 0.3 * _mixing(dims, 2)
    reference = as_statistics(_gaussian(20000, a, 0.0, 3))
    fake = _gaussian(300, b, 0.2, 4)
    large = quality.fid(reference, _gaussian(20000, b, 0.2, 5))
    found = fid_infinity(reference, fake, points=15, seed=0)
    assert found.fid_at_n[300] == pytest.approx(quality.fid(reference, fake), rel=1e-9)
    assert sorted(found.fid_at_n) == found.recipe["sizes"] and len(found.fid_at_n) == 15
    assert found.value == found.fit["intercept"] and found.fit["slope"] > 0
    assert abs(found.value - large) < 0.5 * abs(quality.fid(reference, fake) - large)
    again = fid_infinity(reference, fake, points=15, seed=0)
    assert again.value == found.value


def test_fid_infinity_needs_samples() -> None:
    reference, fake = _pair(30, 4)
    with pytest.raises(UserError, match="FID-infinity needs at least 10"):
        fid_infinity(reference, fake[:9], points=15, seed=0)


def test_kid_subset_size_adapts_to_the_smaller_set() -> None:
    assert quality.kid_subset_size(1437, 1000) == 1000
    assert quality.kid_subset_size(1437, 200) == 200
    assert quality.kid_subset_size(50000, 50000) == 1000


# ---------------------------------------------------------------------------- harness


@pytest.fixture()
def pixel_cell(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """The tiny digits configuration with its "inception" and "vgg16" extractors replaced by the
    flattened pixels (64-d, no training, no weights), and 120 noisy digits as samples."""
    import torch

    from genbench.config import compose, to_plain
    from genbench.data.base import all_images
    from genbench.harness.build import build_components
    from genbench.metrics import features as feature_module
    from genbench.metrics.features import FeatureExtractor

    def pixels(weights_path, allow_download, device, *, progress):
        network = lambda batch: batch[:, :1].double().flatten(1)  # noqa: E731  (grey: 1 of 3)
        return FeatureExtractor("pixels", {"dims": 64, "sha256": "p" * 64}, network,
                                progress=progress)

    for name in ("inception", "vgg16"):
        monkeypatch.setitem(feature_module.PRETRAINED, name, pixels)
    cfg = to_plain(compose(["eval=tiny", "eval.feature_extractor=inception"]))
    comps = build_components(cfg)
    images = all_images(comps.dataset)[0][:120]
    noise = torch.randint(-40, 41, images.shape, generator=torch.Generator().manual_seed(3))
    samples = (images.to(torch.int16) + noise).clamp(0, 255).to(torch.uint8)
    return cfg["eval"], comps, tmp_path, samples


def _measure(eval_cfg: dict, comps, cache, samples):
    import torch

    from genbench.harness.evaluate import Measurements, choose_extractors, measure_quality

    chosen = choose_extractors(eval_cfg, comps, cache, torch.device("cpu"), False)
    out = Measurements()
    measure_quality(samples, comps, eval_cfg, cache, chosen, out)
    return out


def test_an_evaluation_records_fid_ci_and_fid_infinity(pixel_cell) -> None:
    from genbench.data.base import all_images

    eval_cfg, comps, cache, samples = pixel_cell
    out = _measure({**eval_cfg, "metrics": ["fid"]}, comps, cache, samples)
    real = all_images(comps.dataset)[0].double().flatten(1)
    fake = samples.double().flatten(1)
    expected = fid_interval(as_statistics(real), fake, resamples=20, seed=eval_cfg["seed"])
    assert eval_cfg["fid_ci_resamples"] == 20 and eval_cfg["fid_infinity_points"] == 5
    assert out.metrics["fid"] == pytest.approx(expected.fid, rel=1e-6)
    assert out.metrics["fid_ci"] == pytest.approx([expected.low, expected.high], rel=1e-6)
    recipe = out.recipes["fid_ci"]
    assert recipe["extractor"] == "pixels" and recipe["interval"]["resamples"] == 20
    assert recipe["interval"]["seed"] == eval_cfg["seed"] and recipe["num_fake"] == 120
    assert recipe["reference"] == out.recipes["fid"]["reference"]  # FID's, kept
    extrapolation = out.recipes["fid_infinity"]["extrapolation"]
    assert set(out.metrics["fid_at_n"]) == {str(n) for n in infinity_sizes(120, 5)}
    assert out.metrics["fid_at_n"]["120"] == pytest.approx(expected.fid, rel=1e-6)
    assert out.metrics["fid_infinity"] == extrapolation["fit"]["intercept"]
    assert extrapolation["sizes"] == infinity_sizes(120, 5)
    assert out.missing == {}


def test_off_or_impossible_uncertainty_is_missing_with_a_reason(pixel_cell) -> None:
    eval_cfg, comps, cache, samples = pixel_cell
    off = _measure({**eval_cfg, "metrics": ["fid"], "fid_ci_resamples": 0,
                    "fid_infinity_points": 0}, comps, cache, samples)
    assert off.metrics["fid_ci"] is None and off.metrics["fid_infinity"] is None
    assert off.missing["fid_ci"] == "off (eval.fid_ci_resamples=0)"
    assert off.missing["fid_infinity"] == "off (eval.fid_infinity_points=0)"
    few = _measure({**eval_cfg, "metrics": ["fid"]}, comps, cache, samples[:3])
    assert few.metrics["fid_ci"] is None and "at least 4 generated samples" in few.missing[
        "fid_ci"]
    assert few.metrics["fid_at_n"] is None and "at least 10" in few.missing["fid_infinity"]


def test_kid_records_its_subset_size_and_no_spread_made_of_whole_sets(pixel_cell) -> None:
    eval_cfg, comps, cache, samples = pixel_cell
    out = _measure({**eval_cfg, "metrics": ["fid", "kid"], "num_real": 120}, comps, cache,
                   samples)
    recipe = out.recipes["kid_mean"]
    assert recipe["kid_subset_size"] == 120 and recipe["kid_subsets"] == 100
    assert out.metrics["kid_mean"] is not None and out.metrics["kid_std"] is None
    assert "spread is 0 by construction" in out.missing["kid_std"]
    wider = _measure({**eval_cfg, "metrics": ["kid"], "num_real": 200}, comps, cache, samples)
    assert wider.recipes["kid_std"]["kid_subset_size"] == 120
    assert wider.metrics["kid_std"] > 0 and "kid_std" not in wider.missing


def test_several_seeds_record_the_interval_of_their_mean(pixel_cell) -> None:
    import torch

    from genbench.harness.evaluate import combine_seed_uncertainty

    eval_cfg, comps, cache, samples = pixel_cell
    other = (samples.to(torch.int16) + 9).clamp(0, 255).to(torch.uint8)
    runs = [_measure({**eval_cfg, "metrics": ["fid"]}, comps, cache, s)
            for s in (samples, other)]
    metrics, recipes, missing = combine_seed_uncertainty(runs)
    expected = interval_of_mean([r.metrics["fid"] for r in runs],
                                [r.half_sample_fids for r in runs])
    assert metrics["fid_ci"] == list(expected) and missing == {}
    mean_fid = np.mean([r.metrics["fid"] for r in runs])
    assert metrics["fid_ci"][0] < mean_fid < metrics["fid_ci"][1]
    for size, value in metrics["fid_at_n"].items():
        assert value == pytest.approx(np.mean([r.metrics["fid_at_n"][size] for r in runs]))
    mean_intercept = np.mean([r.metrics["fid_infinity"] for r in runs])
    assert metrics["fid_infinity"] == pytest.approx(mean_intercept)  # the fit is linear
    assert "2 training seeds" in recipes["fid_ci"]["over_seeds"]
    runs[1].half_sample_fids = None
    _, _, missing = combine_seed_uncertainty(runs)
    assert "not every one of the 2 training seeds" in missing["fid_ci"]


# ---------------------------------------------------------------------------- report


def _ok_record(root, cell: str, steps: int, seed: int, fid: float, *, ci=None, infinity=None,
               per_seed=None, time_s: float = 0.01) -> None:
    """An ok record carrying FID's interval and FID-infinity (or saying the interval is off)."""
    write_ok_record(root, cell, steps, seed, fid, time_s=time_s, per_seed=per_seed,
                    metrics={"fid_ci": ci, "fid_infinity": infinity},
                    missing={} if ci else {"fid_ci": "off (eval.fid_ci_resamples=0)"})


@pytest.fixture()
def uncertain_results(tmp_path):
    """s2: one run with a sampling interval; s4: a train.seeds=2 record (seed range 26..40 and
    the interval of its mean); s8: one run without an interval; s16: two grid replicates."""
    _ok_record(tmp_path, "s2", 2, 0, 30.0, ci=[28.0, 33.0], infinity=21.5)
    _ok_record(tmp_path, "s4", 4, 0, 33.0, ci=[31.0, 35.0], infinity=25.0,
               per_seed=[(0, 26.0), (1, 40.0)])
    _ok_record(tmp_path, "s8", 8, 0, 100.0)
    _ok_record(tmp_path, "s16-0", 16, 0, 60.0, ci=[59.0, 61.0])
    _ok_record(tmp_path, "s16-1", 16, 1, 64.0, ci=[63.0, 65.0])
    return tmp_path


def test_tables_show_the_interval_and_fid_infinity(uncertain_results) -> None:
    from genbench.report import load_records, summary_table, table3
    from genbench.report.seeds import seeds_table

    df = load_records([uncertain_results])
    by_cell = df.set_index("cell")
    assert (by_cell.loc["s2", "fid_ci_low"], by_cell.loc["s2", "fid_ci_high"]) == (28.0, 33.0)
    assert pd.isna(by_cell.loc["s8", "fid_ci_low"])
    summary = summary_table(df).set_index("cell")
    columns = list(summary.columns)
    assert columns.index("FID 95% CI [clf]") == columns.index("FID [clf]") + 1
    assert summary.loc["s2", "FID 95% CI [clf]"] == "[28, 33]"
    assert summary.loc["s8", "FID 95% CI [clf]"] is None
    assert summary.loc["s2", "FID-infinity [clf]"] == 21.5
    paper = table3(df).set_index("cell")
    assert paper.loc["s4", "FID 95% CI [clf]"] == "[31, 35]"
    assert paper.loc["s4", "FID-infinity [clf]"] == 25.0
    seeds = seeds_table(df, text=True).set_index("steps")
    assert seeds.loc[2, "FID 95% CI"] == "[28, 33]" and seeds.loc[4, "FID 95% CI"] == "[31, 35]"
    assert pd.isna(seeds.loc[16, "FID 95% CI"])  # two records: each interval is its own
    assert seeds.loc[16, "n"] == 2 and seeds.loc[4, "n"] == 2


def test_every_fid_axis_draws_the_seed_range_or_else_the_interval(uncertain_results) -> None:
    from genbench.report import fid_vs_time_figures, load_records, recall_vs_fid_figures

    df = load_records([uncertain_results])
    [figure] = fid_vs_time_figures(df)
    [trace] = [t for t in figure.data if t.meta["role"] == "measured"]
    bars = {label.split(" n=")[0]: (plus, minus) for label, plus, minus in
            zip(trace.text, trace.error_y.array, trace.error_y.arrayminus)}
    assert bars["ddgan s2"] == (3.0, 2.0)  # n=1: the asymmetric sampling interval
    assert bars["ddgan s4"] == (7.0, 7.0)  # n=2: min..max over seeds, not the interval
    assert bars["ddgan s16"] == (2.0, 2.0)  # grid replicates 60 and 64 around 62
    assert bars["ddgan s8"] == (None, None)  # nothing to draw
    hover = dict(zip([t.split(" n=")[0] for t in trace.text], trace.hovertext))
    assert "95% sampling interval of the generated set" in hover["ddgan s2"]
    assert "min..max over training seeds" in hover["ddgan s4"]
    assert "sampling interval of the mean [31, 35]" in hover["ddgan s4"]
    [recall] = recall_vs_fid_figures(df)
    [trace] = [t for t in recall.data if t.meta["role"] == "measured"]
    x_bars = dict(zip([t.split(" n=")[0] for t in trace.text], trace.error_x.array))
    assert x_bars["ddgan s2"] == 3.0 and x_bars["ddgan s8"] is None


def test_overlapping_sampling_intervals_are_warned(tmp_path) -> None:
    from genbench.report import load_records
    from genbench.report.seeds import ranking_warnings

    _ok_record(tmp_path, "a", 2, 0, 30.0, ci=[28.0, 33.0], time_s=0.01)
    _ok_record(tmp_path, "b", 4, 0, 32.0, ci=[31.0, 34.0], time_s=0.02)
    _ok_record(tmp_path, "c", 8, 0, 50.0, ci=[49.0, 51.0], time_s=0.04)
    lines = ranking_warnings(load_records([tmp_path]))
    assert lines == ["a (n=1) and b (n=1): their FID intervals overlap, so their FID ranking "
                     "is not supported"]


def test_the_page_and_console_say_what_the_bars_and_intervals_are(uncertain_results) -> None:
    import json

    from genbench.report import load_records, write_report
    from genbench.report.experiment import summary_text

    written = write_report(load_records([uncertain_results]),
                           uncertain_results / "report.html", include_paper=False)
    page = written["html"].read_text()
    assert "Error bars on FID" in page and "[28, 33]" in page
    assert "| FID 95% CI [clf] |" in written["table3_md"].read_text()
    records = [json.loads(p.read_text())
               for p in sorted(uncertain_results.glob("e/*/result.json"))]
    console = summary_text(records)
    assert "FID 95% CI" in console and "[28.000, 33.000]" in console and "21.500" in console


@pytest.mark.slow
def test_a_two_seed_run_records_the_interval_of_its_mean_fid(tmp_path) -> None:
    from genbench.config import compose_plain
    from genbench.harness import record
    from genbench.harness.cell import paths, run_cell

    cfg = compose_plain(["backbone=ncsnpp_tiny", "train=tiny", "eval=tiny", "progress=false",
                         "report=false", "dataset.split=test", "train.seeds=2",
                         f"results_dir={tmp_path}"])
    run_cell(cfg)
    saved = record.read_record(paths(cfg)[1])
    metrics, per_seed = saved["metrics"], saved["replicates"]["per_seed"]
    fids = [p["metrics"]["fid"] for p in per_seed]
    assert metrics["fid"] == pytest.approx(np.mean(fids))
    low, high = metrics["fid_ci"]
    assert low < metrics["fid"] < high  # around the mean, not around the first seed
    for p in per_seed:  # each seed keeps its own interval
        assert p["metrics"]["fid_ci"][0] < p["metrics"]["fid"] < p["metrics"]["fid_ci"][1]
    infinities = [p["metrics"]["fid_infinity"] for p in per_seed]
    assert metrics["fid_infinity"] == pytest.approx(np.mean(infinities))
    assert saved["replicates"]["aggregate"]["fid_infinity"]["n"] == 2
    assert "2 training seeds" in saved["metric_recipes"]["fid_ci"]["over_seeds"]
