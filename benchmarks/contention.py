"""How much one competing busy torch process slows a small training workload, with and without
genbench's thread setup (:mod:`genbench.process`).

The workload is a fixed small convolutional network's training step (batch 8, 3 x 32 x 32, eleven
3 x 3 convolutions of 32 channels with GroupNorm and SiLU, Adam), many short operators per step as
in the default grid's CPU models. Each setting runs it in a fresh subprocess for ``--seconds``
after a warm-up, first alone, then while another subprocess runs the same workload in a busy loop
with torch's defaults (the competitor: a second ``genbench run``, a test run, any torch program).
The settings of the measured process:

* ``torch-default``: no OpenMP variables (libgomp's workers spin before they sleep);
* ``genbench``: :func:`genbench.process.setup_threads` before ``import torch``, as the ``genbench``
  command does (``OMP_WAIT_POLICY=PASSIVE``);
* ``one-thread``: ``OMP_NUM_THREADS=1`` (no thread pool, nothing to wait for; slower alone).

It prints steps/s alone and under contention and the slowdown (alone / contended; 2 is the
fair share of two processes on the cores), and writes JSON to
``benchmarks/results/contention-cpu.json``. About a minute with the defaults on an idle machine;
``--quick`` (for the tests) takes a few seconds and writes nothing unless ``--out`` is given.
The numbers mean something only on an otherwise idle machine (the load average before and after
each run is recorded):

    python benchmarks/contention.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
SETTINGS = ("torch-default", "genbench", "one-thread")
_OMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
        "OMP_PROC_BIND", "GOMP_CPU_AFFINITY")


def _clean_env(setting: str) -> dict[str, str]:
    """The subprocess's environment: no OpenMP variables of ours, then the setting's."""
    env = {k: v for k, v in os.environ.items() if k not in _OMP}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE.parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if setting == "one-thread":
        env["OMP_NUM_THREADS"] = "1"
    return env


def _workload(size: int):
    """(step function, torch) for the fixed training workload; ``size`` scales the channels."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    width = 8 * size
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1)]
    for _ in range(9):
        layers += [nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1)]
    net = nn.Sequential(*layers, nn.Conv2d(width, 3, 3, padding=1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(8, 3, 32, 32)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = (net(x) - x).square().mean()
        loss.backward()
        opt.step()

    return step, torch


def worker(setting: str, seconds: float, warmup: float, size: int) -> None:
    """Run the workload for ``warmup`` then ``seconds`` and print one JSON line."""
    if setting == "genbench":
        from genbench.process import setup_threads

        setup_threads()
    step, torch = _workload(size)
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({"steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed,
                      "threads": torch.get_num_threads(),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}), flush=True)


def competitor(size: int) -> None:
    """The workload in a busy loop with torch's defaults; prints ``ready`` after warming up."""
    step, _ = _workload(size)
    step()
    print("ready", flush=True)
    while True:
        step()


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _measure(setting: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--role", "worker", "--setting", setting,
           "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--size", str(args.size)]
    load_before = _load()
    out = subprocess.run(cmd, env=_clean_env(setting), check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1]) | {"load_1m_before": load_before,
                                                        "load_1m_after": _load()}


def _contended(setting: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--role", "competitor",
           "--size", str(args.size)]
    rival = subprocess.Popen(cmd, env=_clean_env("torch-default"), stdout=subprocess.PIPE,
                             text=True)
    try:
        if rival.stdout is None or rival.stdout.readline().strip() != "ready":
            raise RuntimeError("the competing process did not start")
        return _measure(setting, args)
    finally:
        rival.terminate()
        rival.wait()


def run(args: argparse.Namespace) -> dict:
    rows = []
    for setting in args.settings:
        alone = _measure(setting, args)
        loaded = _contended(setting, args)
        rows.append({"setting": setting, "alone": alone, "contended": loaded,
                     "slowdown": alone["steps_per_s"] / max(loaded["steps_per_s"], 1e-9)})
        print(f"{setting:14s} threads {alone['threads']}  alone {alone['steps_per_s']:8.2f} "
              f"steps/s  with one competitor {loaded['steps_per_s']:8.2f} steps/s  slowdown "
              f"{rows[-1]['slowdown']:6.2f}x  (load {alone['load_1m_before']} -> "
              f"{loaded['load_1m_after']})", flush=True)
    import torch

    return {"workload": f"conv training step, batch 8, 3x32x32, width {8 * args.size}",
            "seconds_per_run": args.seconds, "warmup_s": args.warmup,
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "parallel": torch.__config__.parallel_info().splitlines()[:4], "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("main", "worker", "competitor"), default="main")
    parser.add_argument("--setting", choices=SETTINGS, default="genbench")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=4, help="width / 8 (channels)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny runs (0.5 s each, width 8) that only check the script works")
    parser.add_argument("--out", help="JSON file to write (default: results/contention-cpu.json; "
                                      "with --quick: none)")
    args = parser.parse_args(argv)
    if args.role == "worker":
        worker(args.setting, args.seconds, args.warmup, args.size)
        return 0
    if args.role == "competitor":
        competitor(args.size)
        return 0
    if args.quick:
        args.seconds, args.warmup, args.size = 0.5, 0.2, 1
    out = args.out or (None if args.quick else str(HERE / "results" / "contention-cpu.json"))
    result = run(args)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
