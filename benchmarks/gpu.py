"""The GPU fast path, measured: DDGAN, WDDGAN and LDDGAN CIFAR-10 generators at batch 100.

For each generator (random initial weights: time and memory do not depend on them) and each
sampling path (fp32 and the fast paths of :mod:`genbench.harness.fastpath`):

(a) time per batch of 100, noise to decoded uint8 images, with genbench's timing
    (:func:`genbench.harness.evaluate.time_sampling`: CUDA events and synchronisation on a GPU,
    10 warm-ups, which include any compilation, and 300 trials), with the trials' coefficient of
    variation, and the largest uint8 difference of the path's samples to fp32's on the same seeds;
(b) that time as a multiple of the FLOP floor of this GPU (MACs per batch x 2 / the peak dense
    throughput of the path's arithmetic, from :data:`PEAK_TFLOPS` by device name) and as a
    speed-up over the papers' 0.21 / 0.08 / 0.08 s (the baselines' ``paper.time_per_batch_s``:
    LDDGAN paper, Trinh and Hamagami 2024, Table 3);
(c) the harness overhead: genbench's sampling call (``generate_batch``, per-sample noise streams,
    as the FID samples are drawn) and the timed run against a bare loop that replays the same
    denoiser inputs (recorded from one sampling pass) and decodes, nothing else (target: <= 2%);
(d) Inception feature throughput: genbench's extractor (batching, host-device copies, float64
    features) against torch-fidelity's own ``FeatureExtractorInceptionV3`` forward on the same
    batches;
(e) peak memory per sample (:func:`genbench.metrics.cost.peak_memory` of one batch / batch).

Every timing keeps the thread count and the 1-minute load average (before and after).

    python benchmarks/gpu.py                 # on one GPU: writes results/gpu-<device>.json
    python benchmarks/gpu.py --quick         # a CPU smoke run with tiny batches and trials
    python benchmarks/gpu.py --paths fp32 bf16-compile --models lddgan_cifar10

On the CPU, fp32 convolutions have no TF32 and the floor uses the fp32 peak only when the
device is in the table; a CPU has no entry, so the floor ratios are null with the reason.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).parent
MODELS = ("ddgan_cifar10", "wddgan_cifar10", "lddgan_cifar10")
# name -> eval settings of genbench.harness.fastpath.FastPath
PATHS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "fp16": {"precision": "fp16"},
    "bf16-channels_last": {"precision": "bf16", "channels_last": True},
    "bf16-compile": {"precision": "bf16", "compile": True, "compile_mode": "reduce-overhead"},
    "fp16-compile": {"precision": "fp16", "compile": True, "compile_mode": "reduce-overhead"},
    "fp32-compile": {"compile": True, "compile_mode": "reduce-overhead"},
}
DEFAULT_PATHS = ("fp32", "bf16", "fp16", "bf16-channels_last", "bf16-compile")
QUICK_PATHS = ("fp32", "bf16", "bf16-channels_last")

# Peak dense throughput in TFLOP/s (no structured sparsity) by arithmetic, from the vendor
# datasheets (NVIDIA H100 and H200 Tensor Core GPU datasheets, A100 datasheet, V100 datasheet,
# L40S, L4 and A10 datasheets, Ada Lovelace architecture whitepaper (RTX 4090: FP16/BF16 with
# FP32 accumulate), T4 datasheet). None: the GPU has no such tensor-core path. Patterns are
# tried in order on torch.cuda.get_device_name() ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe",
# "NVIDIA H100 NVL", "Tesla V100S-PCIE-32GB", ...), ignoring case: the specific names first. A
# name no row fits (a laptop RTX 4090, an A10G, an L40) gets no floor rather than another GPU's.
PEAK_TFLOPS: list[tuple[str, dict[str, float | None]]] = [
    (r"H200 NVL", {"fp32": 60.0, "tf32": 418.0, "bf16": 835.0, "fp16": 835.0}),
    (r"H200", {"fp32": 67.0, "tf32": 494.0, "bf16": 989.0, "fp16": 989.0}),  # SXM
    (r"H100 NVL", {"fp32": 60.0, "tf32": 418.0, "bf16": 835.0, "fp16": 835.0}),  # per GPU
    (r"H100.*PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    (r"H100", {"fp32": 67.0, "tf32": 494.0, "bf16": 989.0, "fp16": 989.0}),  # SXM (HBM3)
    (r"A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (r"V100S", {"fp32": 16.4, "tf32": None, "bf16": None, "fp16": 130.0}),  # PCIe
    (r"V100.*PCIE", {"fp32": 14.0, "tf32": None, "bf16": None, "fp16": 112.0}),
    (r"V100", {"fp32": 15.7, "tf32": None, "bf16": None, "fp16": 125.0}),  # SXM2
    (r"L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0}),
    (r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    (r"\bA10\b", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    (r"RTX 4090(?!.*Laptop)", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}),
    (r"\bT4\b", {"fp32": 8.1, "tf32": None, "bf16": None, "fp16": 65.0}),
]
PEAK_SOURCE = ("vendor datasheets, dense (no sparsity): NVIDIA H100/H200 (SXM, PCIe, NVL), "
               "A100, V100/V100S, L40S, L4, A10 datasheets; Ada Lovelace whitepaper (RTX 4090, "
               "FP32 accumulate); T4")


def peak_row(device_name: str) -> tuple[str, dict[str, float | None]] | None:
    """(pattern, peaks) of the first table row whose pattern is in ``device_name``."""
    for pattern, row in PEAK_TFLOPS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return pattern, row
    return None


def peak_for(device_name: str, precision: str, tf32: bool) -> tuple[float | None, str]:
    """Peak TFLOP/s of ``precision`` arithmetic on ``device_name`` and which peak it is (fp32
    convolutions run on TF32 tensor cores when ``tf32``: cuDNN's default), or (None, why)."""
    found = peak_row(device_name)
    if found is None:
        return None, f"{device_name!r} is not in the peak table"
    pattern, row = found
    kind = ("tf32" if tf32 and row.get("tf32") else "fp32") if precision == "fp32" else precision
    value = row.get(kind)
    if value is None:
        return None, f"{pattern}: no dense {kind} tensor-core peak"
    return float(value), f"{pattern} dense {kind}"


def floor_seconds(macs_per_batch: float, peak_tflops: float | None) -> float | None:
    """The FLOP floor: MACs x 2 / peak FLOP/s (None without a peak)."""
    return None if not peak_tflops else 2 * macs_per_batch / (peak_tflops * 1e12)


def _build(name: str, device: torch.device):
    from genbench.config import compose_plain
    from genbench.harness.build import build_backbone, build_components
    from genbench.training.seeding import seeded_global_rng

    cfg = compose_plain([f"baseline={name}", f"device={device.type}", "progress=false"])
    comps = build_components(cfg, load_data=False)
    with seeded_global_rng(0, "init/generator"):
        net = build_backbone(cfg, comps.latent_shape, comps.sampler.objective)
    comps.latent.to(device)
    return cfg, comps, net.to(device).eval()


def _recorder(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` wrapped to keep the inputs of every denoiser call of one sampling pass (for the
    bare replay); the wrapper's other attributes are ``net``'s (:class:`Forwarding`)."""
    from genbench.metrics.cost import Forwarding

    class Recorder(Forwarding):
        def __init__(self) -> None:
            super().__init__()
            self.inner = net
            self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

        def forward(self, x, t, z=None):
            self.calls.append((x.clone(), t.clone(), None if z is None else z.clone()))
            return self.inner(x, t, z)

    return Recorder()


def overhead(net, comps, device: torch.device, batch: int, warmup: int,
             trials: int) -> dict[str, Any]:
    """(c): genbench's sampling call and timed run against the bare replay of the same calls."""
    from genbench.data.base import to_uint8
    from genbench.harness.evaluate import time_sampling
    from genbench.harness.generate import generate_batch
    from genbench.metrics import cost

    recorder = _recorder(net)
    with torch.no_grad():
        generate_batch(recorder, comps.latent, comps.sampler, comps.latent_shape, 0, 0, batch,
                       device)
    calls = recorder.calls

    def bare() -> None:
        x = None
        for x_in, t, z in calls:
            x = net(x_in, t, z)
        to_uint8(comps.latent.decode(x))

    def sampling_call() -> None:
        generate_batch(net, comps.latent, comps.sampler, comps.latent_shape, 0, 0, batch, device)

    with torch.no_grad():
        t_bare = cost.time_per_batch(bare, device, warmup=warmup, trials=trials)
        t_call = cost.time_per_batch(sampling_call, device, warmup=warmup, trials=trials)
    ev = {"time_batch_size": batch, "time_warmup": warmup, "time_trials": trials, "seed": 0}
    t_timed = time_sampling(net, comps, ev, device)
    base = t_bare["median_s"]
    return {
        "nfe": len(calls),
        "bare_replay_median_s": base, "bare_cv": t_bare["cv"],
        "generate_batch_median_s": t_call["median_s"], "generate_batch_cv": t_call["cv"],
        "generate_batch_overhead": t_call["median_s"] / base - 1,
        "timed_run_median_s": t_timed["median_s"], "timed_run_cv": t_timed["cv"],
        "timed_run_overhead": t_timed["median_s"] / base - 1,
        "target": "<= 0.02",
        "bare": "the recorded denoiser inputs of one pass replayed, then decode and uint8",
    }


def inception_throughput(device: torch.device, images: int, batch: int,
                         trials: int) -> dict[str, Any]:
    """(d): genbench's Inception extractor against torch-fidelity's forward, images/s."""
    from genbench.metrics.features import inception_extractor

    extractor = inception_extractor(device=device, batch_size=batch, progress=False)
    module = extractor.module
    data = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))

    def genbench_call() -> None:
        extractor(data)

    def fidelity_call() -> None:  # torch-fidelity's own loop: batch to device, forward, to host
        with torch.inference_mode():
            for start in range(0, images, batch):
                module(data[start:start + batch].to(device))[0].cpu()

    rows = {}
    for name, fn in (("torch_fidelity", fidelity_call), ("genbench", genbench_call)):
        fn()  # warm-up
        seconds = []
        for _ in range(trials):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
        rows[name] = {"images_per_s": images / statistics.median(seconds),
                      "median_s": statistics.median(seconds), "trials": trials}
    rows["ratio_genbench_to_fidelity"] = (rows["genbench"]["images_per_s"]
                                          / rows["torch_fidelity"]["images_per_s"])
    rows.update(images=images, batch=batch, image_size="32x32 uint8 (resized to 299 inside)",
                weights=extractor.recipe.get("weights_file"))
    return rows


def inception_section(device: torch.device, images: int, batch: int,
                      trials: int) -> dict[str, Any]:
    """(d), printed; ``{"missing": why}`` where no Inception weights are found (a GPU machine
    without the NVlabs network), never a made-up number."""
    from genbench.errors import UserError

    try:
        inception = inception_throughput(device, images, batch, trials)
    except UserError as exc:
        print(f"Inception: missing: {exc}", flush=True)
        return {"missing": str(exc)}
    print(f"Inception: genbench {inception['genbench']['images_per_s']:.1f} images/s, "
          f"torch-fidelity {inception['torch_fidelity']['images_per_s']:.1f} images/s "
          f"(ratio {inception['ratio_genbench_to_fidelity']:.3f})", flush=True)
    return inception


def measure_path(name: str, settings: dict[str, Any], net, comps, cfg, device: torch.device,
                 args, reference: torch.Tensor, macs_per_batch: float) -> dict[str, Any]:
    """(a), (b), (e) for one path of one generator."""
    from genbench.harness.evaluate import time_sampling
    from genbench.harness.fastpath import FastPath, prepare, uint8_difference
    from genbench.harness.generate import generate_batch
    from genbench.metrics import cost

    fast = FastPath.from_eval(settings)
    prepared = prepare(net, comps.latent, fast, device)
    ev = {"time_batch_size": args.batch, "time_warmup": args.warmup,
          "time_trials": args.trials, "seed": 0}
    started = time.perf_counter()
    timing = time_sampling(net, comps, ev, device, prepared=prepared)
    wall = time.perf_counter() - started

    def one_batch() -> torch.Tensor:
        with torch.no_grad():
            return generate_batch(prepared.net, prepared.latent, comps.sampler,
                                  comps.latent_shape, 0, 0, args.batch, device).cpu()

    difference = uint8_difference(one_batch(), reference)
    try:
        memory_mb, memory_method = cost.peak_memory(one_batch, device)
    except Exception as exc:  # e.g. a dispatch-mode tracker under a compiled CPU graph
        memory_mb, memory_method = None, f"not measured: {type(exc).__name__}: {exc}"
    memory_note = ("CUDA-graph replays allocate nothing: the graphs' private memory pool, "
                   "reserved when they were recorded (in the warm-ups), is not in this peak"
                   if fast.uses_cuda_graphs(device) and memory_mb is not None else None)
    precision = fast.precision
    tf32 = bool(torch.backends.cudnn.allow_tf32) if device.type == "cuda" else False
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak, peak_kind = peak_for(device_name, precision, tf32)
    floor = floor_seconds(macs_per_batch, peak)
    median = timing["median_s"]
    paper = (cfg.get("paper") or {}).get("time_per_batch_s")
    return {
        "path": name, "settings": timing["fast_path"], "median_s": median,
        "iqr_s": timing["iqr_s"], "cv": timing["cv"], "trials": timing["trials"],
        "warmup": timing["warmup"], "method": timing["method"],
        "wall_s_including_warmup": wall,
        # the timing's own conditions: threads, and the load just before and after its trials
        "threads": timing["threads"],
        "load_average_1min": [timing["load_1m_before"], timing["load_1m_after"]],
        "peak_tflops": peak, "peak_used": peak_kind, "floor_s": floor,
        "x_floor": median / floor if floor else None,
        "paper_s": paper, "speedup_over_paper": paper / median if paper else None,
        "uint8_diff_to_fp32": difference,
        "peak_memory_mb_per_sample": None if memory_mb is None else memory_mb / args.batch,
        "peak_memory_method": memory_method, "peak_memory_note": memory_note,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke run: batch 1, 1 warm-up, 2 trials, no compile")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--paths", nargs="+", default=None, choices=list(PATHS))
    parser.add_argument("--batch", type=int, default=None, help="default 100 (quick: 1)")
    parser.add_argument("--warmup", type=int, default=None, help="default 10 (quick: 1)")
    parser.add_argument("--trials", type=int, default=None, help="default 300 (quick: 2)")
    parser.add_argument("--overhead-trials", type=int, default=None,
                        help="trials of each overhead timing; default 100 (quick: 2)")
    parser.add_argument("--inception-images", type=int, default=None,
                        help="default 2000 (quick: 4)")
    parser.add_argument("--out", default=None, help="JSON path; default results/gpu-<device>.json")
    args = parser.parse_args(argv)
    quick = args.quick
    args.batch = args.batch or (1 if quick else 100)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 10)
    args.trials = args.trials or (2 if quick else 300)
    overhead_trials = args.overhead_trials or (2 if quick else 100)
    inception_images = args.inception_images or (4 if quick else 2000)
    paths = args.paths or list(QUICK_PATHS if quick else DEFAULT_PATHS)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() and not quick else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda":  # cuda:N stays N; the timing's streams and generators follow it
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None
                              else device.index)
        torch.cuda.set_device(device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device_name}; paths {', '.join(paths)}; batch {args.batch}, "
          f"{args.warmup} warm-ups, {args.trials} trials", flush=True)
    from genbench.harness.evaluate import probe_sampling, profile_costs
    from genbench.harness.generate import generate_batch

    started = time.perf_counter()
    models = []
    for model in args.models:
        cfg, comps, net = _build(model, device)
        probe = probe_sampling(net, comps, 0, device)
        costs = profile_costs(net, comps, device, probe["nfe"])
        macs_per_batch = costs["gmacs_per_sample"] * 1e9 * args.batch
        with torch.no_grad():
            reference = generate_batch(net, comps.latent, comps.sampler, comps.latent_shape, 0,
                                       0, args.batch, device).cpu()
        rows = []
        for name in paths:
            row = measure_path(name, PATHS[name], net, comps, cfg, device, args, reference,
                               macs_per_batch)
            rows.append(row)
            floor = f"{row['x_floor']:.2f}x floor" if row["x_floor"] else "floor n/a"
            paper = (f"paper's {row['paper_s']} s / this = {row['speedup_over_paper']:.2f}"
                     if row["speedup_over_paper"] else "")
            memory = row["peak_memory_mb_per_sample"]
            print(f"{model:<16} {name:<20} {row['median_s'] * 1e3:9.2f} ms/batch "
                  f"(CV {row['cv'] or 0:.3f})  {floor}  {paper}  max|d uint8| "
                  f"{row['uint8_diff_to_fp32']['max_abs']}  "
                  f"{'n/a' if memory is None else f'{memory:.2f}'} MB/sample", flush=True)
        over = overhead(net, comps, device, args.batch, 1 if quick else args.warmup,
                        overhead_trials)
        print(f"{model:<16} harness overhead: generate_batch {over['generate_batch_overhead']:+.2%}"
              f", timed run {over['timed_run_overhead']:+.2%} over the bare replay "
              f"(target <= 2%)", flush=True)
        models.append({"model": model, "gmacs_per_sample": costs["gmacs_per_sample"],
                       "macs_per_batch": macs_per_batch, "nfe": probe["nfe"],
                       "params": costs["params"], "paths": rows, "overhead": over})
        del net
        if device.type == "cuda":
            torch.cuda.empty_cache()
    inception = inception_section(device, inception_images,
                                  min(args.batch, 100) if quick else 100, 1 if quick else 3)
    result = {
        "what": "benchmarks/gpu.py: DDGAN/WDDGAN/LDDGAN CIFAR-10 generators, random weights",
        "quick": quick, "device": device_name, "torch": torch.__version__,
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "machine": platform.machine(), "threads": torch.get_num_threads(),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "batch": args.batch, "warmup": args.warmup, "trials": args.trials,
        "peak_source": PEAK_SOURCE, "seconds": time.perf_counter() - started,
        "models": models, "inception": inception,
    }
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", device_name) + ("-quick" if quick else "")
    out = Path(args.out) if args.out else HERE / "results" / f"gpu-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"saved {out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
