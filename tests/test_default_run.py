"""`genbench run` with no arguments: the embedded default, end to end, in an empty folder.

This is the researcher's first command (README.md), so it runs for real: a few minutes on a
2-core CPU. The trained DDGAN must beat an untrained generator on the same metric, measured
with the same extractor against the same reference, by a clear margin.
"""

import json
import time

import pytest
import torch

from genbench.cli import _compose
from genbench.harness.build import build_backbone, build_components
from genbench.training.checkpoint import save_weights


def _record(folder):
    (path,) = folder.glob("*/result.json")
    return json.loads(path.read_text())


@pytest.mark.slow
def test_default_run_trains_evaluates_and_beats_untrained(run_cli, tmp_path):
    started = time.perf_counter()
    proc = run_cli("run", timeout=3600)  # minutes on an idle 2-core machine; slack for a busy one
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"default run: {elapsed:.0f} s")  # README: about 5 minutes on 2 cores
    trained = _record(tmp_path / "results" / "default")
    assert trained["training"]["source"] == "trained" and trained["training"]["steps"] > 0
    assert (tmp_path / "results" / "default" / "report.html").is_file()
    assert "report:" in proc.stdout

    cfg = _compose([])
    comps = build_components(cfg)
    torch.manual_seed(cfg["seed"])
    untrained_net = build_backbone(cfg, comps.latent_shape, comps.sampler.objective)
    weights = tmp_path / "untrained.safetensors"
    save_weights(weights, {"G_ema": untrained_net})
    proc = run_cli("run", f"checkpoint={weights}", "experiment=untrained", "report=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    untrained = _record(tmp_path / "results" / "untrained")

    for key in ("fid",):
        a, b = trained["metric_recipes"][key], untrained["metric_recipes"][key]
        assert a["extractor"] == b["extractor"] and a["num_real"] == b["num_real"]
    fid_trained, fid_untrained = trained["metrics"]["fid"], untrained["metrics"]["fid"]
    print(f"FID [{trained['metric_recipes']['fid']['extractor']}]: trained {fid_trained:.2f}, "
          f"untrained {fid_untrained:.2f}")
    assert fid_trained < 0.5 * fid_untrained
    assert trained["metrics"]["recall"] > untrained["metrics"]["recall"]
