"""FID's sampling interval and FID-infinity: their cost, and why half-samples, not a bootstrap.

1. Cost at one thread: one FID by the standard formula (torch-fidelity's eigenvalues of
   S_r S_g, 2048 x 2048), one half-sample FID by :class:`genbench.metrics.quality.SubsetFID`
   (one eigvalsh of at most n/2 x n/2), the whole 200-half-sample interval and the 15-point
   FID-infinity, for n = 1,000 generated 2,048-d features; and one half-sample at n = 5,000
   (the d x d path, subsets larger than the dimension).
2. Coverage on Gaussian features, where the sampling distribution of FID_n can be drawn: 200
   fresh generated sets give FID_n's median and 95% range; 40 single sets each give a
   half-sample interval (100 half-samples) and a percentile bootstrap interval (100 resamples
   with replacement). Reported: how often each covers the median, and its mean width over the
   true 95% range.

    python benchmarks/fid_uncertainty.py        # about 5 minutes on a 2-core CPU

Results go to benchmarks/results/fid_uncertainty-cpu.json (and are printed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REGIMES = ((64, 1024), (64, 128), (256, 128))  # (dims, n): n/d = 16, 2, 0.5 (1,000 Inception)


def _gaussian_setup(dims: int, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((dims, dims)) / np.sqrt(dims)
    b = a + 0.3 * rng.standard_normal((dims, dims)) / np.sqrt(dims)
    reference = rng.standard_normal((20000, dims)) @ a
    return reference, b


def cost(quality) -> dict:
    out = {}
    reference, b = _gaussian_setup(2048, 0)
    stats = quality.as_statistics(reference)
    for n, calls in ((1000, 20), (5000, 2)):
        fake = np.random.default_rng(1).standard_normal((n, 2048)) @ b + 0.1
        started = time.perf_counter()
        subset_fid = quality.SubsetFID(stats, fake)
        subset_fid(np.arange(2))  # builds the Gram matrix or the whitened features
        setup = time.perf_counter() - started
        rng = np.random.default_rng(2)
        started = time.perf_counter()
        for _ in range(calls):
            subset_fid(rng.permutation(n)[: n // 2])
        row = {"setup_s": setup, "per_half_sample_s": (time.perf_counter() - started) / calls}
        if n == 1000:
            started = time.perf_counter()
            standard = quality.fid(stats, fake)
            row["standard_fid_s"] = time.perf_counter() - started
            row["relative_difference_whole_set"] = abs(
                subset_fid(np.arange(n)) - standard) / standard
            started = time.perf_counter()
            quality.fid_interval(stats, fake, resamples=200, seed=0, subset_fid=subset_fid)
            row["interval_200_s"] = time.perf_counter() - started
            started = time.perf_counter()
            found = quality.fid_infinity(stats, fake, points=15, seed=0, subset_fid=subset_fid)
            row["fid_infinity_15_s"] = time.perf_counter() - started
            row["fid"], row["fid_infinity"] = standard, found.value
            row["fid_infinity_r2"] = found.fit["r2"]
        out[f"n{n}_d2048"] = row
        print(f"n={n} d=2048: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()))
    return out


def coverage(quality, dims: int, n: int, trials: int = 40, fresh: int = 200) -> dict:
    reference, b = _gaussian_setup(dims, 5)
    stats = quality.as_statistics(reference)

    def draw(seed: int) -> np.ndarray:
        return np.random.default_rng(seed).standard_normal((n, dims)) @ b + 0.2

    true = np.array([quality.SubsetFID(stats, draw(1000 + i))(np.arange(n))
                     for i in range(fresh)])
    median, (t_low, t_high) = float(np.median(true)), np.percentile(true, [2.5, 97.5])
    half = {"covered": 0, "widths": []}
    boot = {"covered": 0, "widths": [], "contains_own_fid": 0}
    for trial in range(trials):
        fake = draw(trial)
        found = quality.fid_interval(stats, fake, resamples=100, seed=trial)
        half["covered"] += found.low <= median <= found.high
        half["widths"].append(found.high - found.low)
        subset_fid, rng = quality.SubsetFID(stats, fake), np.random.default_rng(trial)
        fids = [subset_fid(rng.integers(0, n, n)) for _ in range(100)]
        low, high = np.percentile(fids, [2.5, 97.5])
        boot["covered"] += low <= median <= high
        boot["widths"].append(high - low)
        boot["contains_own_fid"] += low <= found.fid <= high
    row = {"dims": dims, "n": n, "trials": trials, "fresh_sets": fresh,
           "fid_n_median": median, "fid_n_true_95_width": float(t_high - t_low)}
    for name, found in (("half_sample", half), ("bootstrap", boot)):
        row[f"{name}_covers_median"] = int(found["covered"])
        row[f"{name}_width_over_true"] = float(np.mean(found["widths"]) / (t_high - t_low))
    row["bootstrap_contains_own_fid"] = int(boot["contains_own_fid"])
    print(f"d={dims} n={n}: half-sample covers {half['covered']}/{trials}, width x"
          f"{row['half_sample_width_over_true']:.2f}; bootstrap covers {boot['covered']}/"
          f"{trials}, width x{row['bootstrap_width_over_true']:.2f}, holds its own FID "
          f"{boot['contains_own_fid']}/{trials}")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results" / "fid_uncertainty-cpu.json"))
    args = parser.parse_args(argv)

    import torch

    from genbench.metrics import quality

    torch.set_num_threads(1)
    out = {"threads": 1, "torch": torch.__version__, "cost": cost(quality),
           "coverage": [coverage(quality, dims, n) for dims, n in REGIMES]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
