"""Sampling speed and memory of published generator configurations (prints and saves numbers).

Protocol (WaveDiff/LDDGAN ``--measure_time``): fixed x_T, warm-up runs, then repeated timed runs
of a whole sampling pass (all T denoiser calls and the decode) on a batch of 100, with CUDA
events and synchronisation on a GPU; medians and spreads are reported, never asserted. Weights
are the initial ones: time and memory do not depend on them.

    python benchmarks/sampling_speed.py          # every baseline, this machine's device
    python benchmarks/sampling_speed.py --baselines ddgan_cifar10 --trials 300 --warmup 10

Results go to benchmarks/results/sampling_speed-<device>.json (and are printed as a table).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from genbench.config import compose_plain
from genbench.harness.profile import profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines", nargs="*", default=None, help="default: all")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=None, help="default: 10 GPU, 2 CPU")
    parser.add_argument("--trials", type=int, default=None, help="default: 300 GPU, 5 CPU")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    from genbench.config import baseline_names

    names = args.baselines or baseline_names()
    gpu = torch.cuda.is_available() and args.device != "cpu"
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 2)
    trials = args.trials if args.trials is not None else (300 if gpu else 5)
    rows = []
    for name in names:
        cfg = compose_plain([f"baseline={name}", f"device={args.device}",
                        f"eval.time_batch_size={args.batch}", f"eval.time_warmup={warmup}",
                        f"eval.time_trials={trials}"])
        result = profile(cfg, time_it=True)
        result.pop("timing", None)
        rows.append({"baseline": name, **result})
        print(f"{name:<28} params {result['params'] / 1e6:8.2f}M  "
              f"GMACs/sample {result['gmacs_per_sample']:8.3f}  NFE {result['nfe']:4d}  "
              f"time/batch {result['time_per_batch_s']:.4f}s "
              f"(IQR {result['time_per_batch_iqr_s']:.4f})  "
              f"peak {result['peak_memory_mb']:.1f} MB", flush=True)
    device = rows[0]["device"] if rows else args.device
    tag = torch.cuda.get_device_name().replace(" ", "_") if gpu else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"sampling_speed-{tag}.json"
    meta = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
            "batch": args.batch, "warmup": warmup, "trials": trials,
            "threads": torch.get_num_threads()}
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
