"""`genbench run` with no arguments: the embedded default, end to end, in an empty folder.

This is the researcher's first command (README.md), so it runs for real: a few minutes on a
2-core CPU. The trained DDGAN must beat a non-degenerate baseline on the same metric: samples of
a Gaussian with the training digits' per-pixel mean and full covariance (rounded and clipped to
0..255), scored by the run's own code path (genbench.harness.evaluate) with the extractor the
record names, against the same reference. (An untrained generator is no baseline: its tanh
output is a constant grey image, which any model beats.) Today the default run does not beat
the Gaussian: that comparison alone is a strict expected failure, so any other failure of the
run still fails the test and a run that beats the Gaussian fails it until the mark goes.
"""

import json
import time

import pytest
import torch

from genbench.config import compose_plain
from genbench.data.base import all_images
from genbench.harness.build import build_components
from genbench.harness.evaluate import Measurements, choose_extractors, measure_quality
from genbench.harness.system import resolve_device

GAUSSIAN_SEED = 0


class DoesNotBeatGaussian(AssertionError):
    """The trained model scored no better than the Gaussian baseline."""


def _record(folder):
    (path,) = folder.glob("*/result.json")
    return json.loads(path.read_text())


def gaussian_like(images: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` uint8 samples of N(mean, covariance) of ``images`` (per pixel, full covariance).

    The covariance is singular (the digits' corner pixels are always 0), so samples are drawn as
    mean + V sqrt(max(eigenvalues, 0)) z rather than through a Cholesky factor.
    """
    flat = images.flatten(1).double()
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(flat.T))
    root = eigenvectors * eigenvalues.clamp(min=0).sqrt()
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(count, flat.shape[1], generator=generator, dtype=torch.float64)
    samples = (flat.mean(0) + z @ root.T).round().clamp(0, 255).to(torch.uint8)
    return samples.view(count, *images.shape[1:])


def test_gaussian_like_matches_the_moments() -> None:
    g = torch.Generator().manual_seed(1)
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 0.0]])
    images = (128 + 30 * torch.randn(4000, 3, generator=g) @ mix.T).round().to(torch.uint8)
    samples = gaussian_like(images.view(-1, 3, 1, 1), 20000, seed=2).flatten(1).double()
    assert samples[:, 2].eq(128).all()  # a pixel of zero variance stays constant
    ref = images.double()
    assert torch.allclose(samples.mean(0), ref.mean(0), atol=1.0)
    assert torch.allclose(torch.cov(samples.T), torch.cov(ref.T), atol=40.0)  # of ~900
    assert torch.corrcoef(samples[:, :2].T)[0, 1] == pytest.approx(0.8, abs=0.03)


def _score_gaussian(tmp_path, num_fake: int) -> Measurements:
    """The Gaussian baseline scored as the run scores its samples (cached extractor and stats)."""
    cfg = compose_plain([])
    comps = build_components(cfg)
    cache_dir = tmp_path / "results" / ".cache"  # the default run's cache (<results_dir>/.cache)
    extractors = choose_extractors(cfg["eval"], comps, cache_dir,
                                   resolve_device(str(cfg["device"])), progress=False)
    images, _ = all_images(comps.dataset)  # the training split
    out = Measurements()
    measure_quality(gaussian_like(images, num_fake, GAUSSIAN_SEED), comps, cfg["eval"],
                    cache_dir, extractors, out)
    return out


@pytest.mark.slow
@pytest.mark.xfail(raises=DoesNotBeatGaussian, strict=True, reason=(
    "measured once (2 busy CPU cores, 526 s): the default DDGAN scores FID 207.3 / precision "
    "0.231 / recall 0.285 on digits-classifier features, the Gaussian baseline 84.6 / 0.269 / "
    "0.620; the default training must learn more. Strict: remove this mark once it beats it."))
@pytest.mark.timeout(4800)  # the run itself may take up to its own 3600 s limit
def test_default_run_trains_evaluates_and_beats_a_gaussian(run_cli, tmp_path):
    started = time.perf_counter()
    proc = run_cli("run", timeout=3600)  # minutes on an idle 2-core machine; slack for a busy one
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"default run: {elapsed:.0f} s")  # README: about 5 minutes on 2 cores
    trained = _record(tmp_path / "results" / "default")
    assert trained["training"]["source"] == "trained" and trained["training"]["steps"] > 0
    assert (tmp_path / "results" / "default" / "report.html").is_file()
    assert "report:" in proc.stdout

    recipe = trained["metric_recipes"]["fid"]
    gaussian = _score_gaussian(tmp_path, recipe["num_fake"])
    for key in ("extractor", "num_real", "num_fake", "reference"):
        assert gaussian.recipes["fid"][key] == recipe[key], key
    a, b = trained["metrics"], gaussian.metrics
    print(f"[{recipe['extractor']}] trained: FID {a['fid']:.2f}, precision {a['precision']:.3f}, "
          f"recall {a['recall']:.3f}; Gaussian: FID {b['fid']:.2f}, precision "
          f"{b['precision']:.3f}, recall {b['recall']:.3f}")
    if not (a["fid"] < b["fid"] and a["precision"] > b["precision"]):
        raise DoesNotBeatGaussian(f"trained FID {a['fid']:.2f} vs Gaussian {b['fid']:.2f}")
