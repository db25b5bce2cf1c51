"""What the FID Inception costs on this machine, and the default run's evaluation time it implies.

Times genbench's Inception extractor (torch-fidelity's ``FeatureExtractorInceptionV3`` with the
packaged NVlabs weights, TF1.x-compatible resize to 299x299, channels-last on the CPU, batches of
100: the path ``genbench run`` takes) on the default run's own images, the 8x8 scikit-learn
digits, for each thread count given: one warm-up batch, then ``--batches`` timed batches; images per
second is the median batch's. From it, the Inception seconds of the default run
(``eval=digits_cpu``): the generated samples (``eval.num_samples``) every run, the reference
digits (``eval.num_real``, all 1,437 when null) once, then cached.

    python benchmarks/inception_cost.py --threads 1 2   # writes results/inception_cost-cpu.json

The numbers depend on what else the machine runs: the JSON keeps the 1-minute load average
measured before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--out", default=str(HERE / "results" / "inception_cost-cpu.json"))
    args = parser.parse_args(argv)

    import torch

    from genbench.config import compose_plain
    from genbench.data.base import all_images
    from genbench.harness.build import build_components
    from genbench.metrics.features import inception_extractor

    cfg = compose_plain([])  # the embedded default: digits, eval=digits_cpu
    images = all_images(build_components(cfg).dataset)[0]
    extractor = inception_extractor(batch_size=args.batch_size, progress=False)
    count = args.batch_size * (args.batches + 1)
    batch = images[:count] if images.shape[0] >= count else images.repeat(
        -(-count // images.shape[0]), 1, 1, 1)[:count]
    load_before = os.getloadavg()[0]
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        seconds = []
        for i in range(args.batches + 1):  # the first batch warms up
            chunk = batch[i * args.batch_size:(i + 1) * args.batch_size]
            start = time.perf_counter()
            extractor(chunk)
            seconds.append(time.perf_counter() - start)
        per_batch = statistics.median(seconds[1:])
        rate = args.batch_size / per_batch
        num_samples = int(cfg["eval"]["num_samples"])
        num_real = cfg["eval"].get("num_real") or images.shape[0]
        rows.append({"threads": threads, "batch_seconds": seconds[1:],
                     "images_per_s": rate,
                     "default_run_samples_s": num_samples / rate,
                     "default_run_reference_s": num_real / rate})
        print(f"{threads} thread(s): {rate:.2f} images/s; default run: {num_samples} samples "
              f"{num_samples / rate:.0f} s, {num_real} reference images {num_real / rate:.0f} s "
              f"(first run only)")
    result = {
        "what": "genbench inception_extractor (torch-fidelity FeatureExtractorInceptionV3, "
                "packaged NVlabs weights, TF1.x resize to 299), digits 8x8 uint8",
        "batch_size": args.batch_size, "timed_batches": args.batches,
        "num_samples": int(cfg["eval"]["num_samples"]),
        "num_real": cfg["eval"].get("num_real") or int(images.shape[0]),
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "torch": torch.__version__, "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
