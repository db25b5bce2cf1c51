"""Which embedded-default configuration represents each method fairly: a measured search.

The default grid compares DDGAN (Xiao et al. 2022), the wavelet DDGAN (Phung et al. 2023) and an
eps model sampled with DDIM/DDPM at equal training compute (``train.budget=macs:3.65e12``, the
default grid's budget) on the 8x8 digits. One training run of a GAN is one draw from a wide
distribution, so every configuration here is trained under several seeds and judged by the
mean and the range of its FID, never by one run.

Each candidate is one `genbench run` with a few overrides on top of the default grid's cell
(the same command a user would type); every run shares one cache (classifier features and
reference statistics are computed once) and writes its record to a scratch folder. The results
(every run's metrics, training consumption and wall time) are saved after each run to
benchmarks/results/default_search-<device>.json, and a rerun skips the runs already saved, so an
interrupted search resumes.

    python benchmarks/default_search.py                        # every candidate, seeds 0 1
    python benchmarks/default_search.py --seeds 0 1 2 --only pixel_t4_current pixel_t2
    python benchmarks/default_search.py --list                 # the candidates and their overrides
    python benchmarks/default_search.py --table                # print the saved results

Every run is scored with ``eval.feature_extractor=classifier`` (1,000 samples against the 1,437
training digits in the digits classifier's feature space), the extractor the search was made
with, so that a resumed search compares like with like; each record names its extractor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET = "macs:3.65e12"  # the default grid's training budget (registry/grid/default.yaml)



def _with(base: dict[str, str], *overrides: str) -> list[str]:
    settings = dict(base)
    settings.update(o.split("=", 1) for o in overrides)
    return [f"{key}={value}" if value is not None else key for key, value in settings.items()]


# The grid cells as they were when the search began (batch 64, R1 gamma 0.02 for both GANs):
# every candidate states them, so that the search stays what it measured after the cells took
# its result (pixel batch 32, wavelet R1 gamma 0.5).
_PIXEL = {"+grid/cell": "pixel_ddgan_t4", "train.batch_size": "64",
          "train.adversarial.r1_gamma": "0.02"}
_WAVELET = {"+grid/cell": "wavelet_ddgan_t4", "train.batch_size": "64",
            "train.adversarial.r1_gamma": "0.02"}


def _pixel(*overrides: str) -> list[str]:
    return _with(_PIXEL, *overrides)


def _wavelet(*overrides: str) -> list[str]:
    return _with(_WAVELET, *overrides)


# name -> (overrides on top of the default cell, what it tests). Pixel DDGAN candidates change
# one thing at a time from the grid's cell (T = 4, D ngf 16, lr 4e-4/3e-4, R1 0.02 every 4 steps,
# EMA 0.99, batch 64, cosine decay).
CANDIDATES: dict[str, tuple[list[str], str]] = {
    "pixel_t4_current": (_pixel(), "the default grid's DDGAN cell"),
    "pixel_t2": (_pixel("sampler.steps=2"), "T = 2"),
    "pixel_t8": (_pixel("sampler.steps=8"), "T = 8 (NFE 8)"),
    "pixel_t8_r1_0.5": (_pixel("sampler.steps=8",
                         "train.adversarial.r1_gamma=0.5"), "T = 8, R1 gamma 0.5"),
    "pixel_t16": (_pixel("sampler.steps=16"), "T = 16 (NFE 16)"),
    "pixel_t4_d8_bs32": (_pixel("train.adversarial.discriminator.ngf=8",
                          "train.batch_size=32"), "D ngf 8 and batch 32 (about 2.8x the steps)"),
    "pixel_t4_d8_bs32_r1_0.5": (_pixel("train.adversarial.discriminator.ngf=8",
                                       "train.batch_size=32", "train.adversarial.r1_gamma=0.5"),
                                "D ngf 8, batch 32, R1 gamma 0.5"),
    "pixel_t8_d8_bs32": (_pixel("sampler.steps=8",
                          "train.adversarial.discriminator.ngf=8", "train.batch_size=32"),
                         "T = 8, D ngf 8, batch 32"),
    "pixel_t1": (_pixel("sampler.steps=1"),
                 "T = 1: a one-step GAN (diagnostic)"),
    "pixel_t4_r1_0.5": (_pixel("train.adversarial.r1_gamma=0.5"),
                        "R1 gamma 0.5 (25x)"),
    "pixel_t4_d32": (_pixel("train.adversarial.discriminator.ngf=32"),
                     "discriminator twice as wide"),
    "pixel_t4_d8": (_pixel("train.adversarial.discriminator.ngf=8"),
                    "discriminator half as wide (cheaper steps: more of them)"),
    "pixel_t4_lr_half": (_pixel("train.adversarial.lr_g=2e-4",
                          "train.adversarial.lr_d=1.5e-4"), "learning rates halved"),
    "pixel_t4_bs32": (_pixel("train.batch_size=32"),
                      "batch 32: twice the steps"),
    "pixel_t4_ema999": (_pixel("train.ema_decay=0.999"), "EMA 0.999"),
    "pixel_t4_nodecay": (_pixel("train.adversarial.lr_decay=false"),
                         "constant learning rates"),
    "pixel_t4_16px": (_pixel("dataset=digits16"),
                      "16x16 digits (data resolution)"),
    "wavelet_t4_current": (_wavelet(), "the default grid's wavelet cell"),
    "wavelet_t4_d8": (_wavelet("train.adversarial.discriminator.ngf=8"),
                      "wavelet, discriminator half as wide"),
    "wavelet_t8": (_wavelet("sampler.steps=8"), "wavelet, T = 8"),
    "wavelet_t2": (_wavelet("sampler.steps=2"), "wavelet, T = 2"),
    "wavelet_t4_bs32": (_wavelet("train.batch_size=32"),
                        "wavelet, batch 32"),
    "wavelet_t4_r1_0.5": (_wavelet("train.adversarial.r1_gamma=0.5"),
                          "wavelet, R1 gamma 0.5"),
    "wavelet_t4_d32": (_wavelet("train.adversarial.discriminator.ngf=32"),
                       "wavelet, discriminator twice as wide"),
    "eps_ddim1": (["+grid/cell=pixel_ddim_s4", "sampler.steps=1"],
                  "the eps model, DDIM 1 step (reference)"),
    "eps_ddim2": (["+grid/cell=pixel_ddim_s4", "sampler.steps=2"],
                  "the eps model, DDIM 2 steps (reference)"),
    "eps_ddim4": (["+grid/cell=pixel_ddim_s4"], "the eps model, DDIM 4 steps (reference)"),
    "eps_ddim8": (["+grid/cell=pixel_ddim_s4", "sampler.steps=8"],
                  "the eps model, DDIM 8 steps (reference)"),
    "eps_ddim10": (["+grid/cell=pixel_ddim_s10"], "the eps model, DDIM 10 steps (reference)"),
}

# The evaluation the search was measured with (the default evaluation before the Inception became
# its extractor): the digits classifier's features, 1,000 samples against every training digit.
CLASSIFIER_EVAL = ["eval.feature_extractor=classifier", "eval.num_samples=1000",
                   "eval.num_real=null"]

METRICS = ("fid", "precision", "recall", "nfe", "gmacs_per_sample")


def _key(name: str, seed: int, budget: str) -> str:
    return f"{name}|seed={seed}|budget={budget}"


def _load(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {"meta": {}, "runs": {}}


def _save(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(path)


def _run_one(name: str, seed: int, budget: str, where: Path, extra: list[str]) -> dict:
    overrides, _ = CANDIDATES[name]
    cell = f"{name}-seed{seed}-{budget.replace(':', '')}"
    command = [sys.executable, "-m", "genbench", "run", *overrides, f"seed={seed}",
               f"train.budget={budget}", f"cell={cell}", "experiment=search",
               f"results_dir={where / 'results'}", f"cache_dir={where / 'cache'}",
               "progress=false", "report=false", *CLASSIFIER_EVAL, *extra]
    print("$", " ".join(command[2:]), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=where, capture_output=True, text=True)
    wall = time.perf_counter() - started
    record_path = where / "results" / "search" / cell / "result.json"
    run = {"candidate": name, "seed": seed, "budget": budget, "overrides": overrides + extra,
           "exit_status": done.returncode, "wall_s": round(wall, 2)}
    if done.returncode != 0 or not record_path.is_file():
        run["error"] = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return run
    record = json.loads(record_path.read_text())
    metrics, training = record.get("metrics") or {}, record.get("training") or {}
    recipe = (record.get("metric_recipes") or {}).get("fid") or {}
    run.update({k: metrics.get(k) for k in METRICS})
    run["extractor"] = recipe.get("extractor")
    consumed = training.get("consumed") or {}
    run["training"] = {"source": training.get("source"), "steps": training.get("steps"),
                       "seconds": training.get("seconds"), "epochs": training.get("epochs"),
                       "images": consumed.get("images"), "macs": consumed.get("macs")}
    return run


def summarize(runs: dict, budget: str | None = None) -> list[dict]:
    """Per candidate (and budget): the mean, minimum and maximum FID over its seeds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs.values():
        if run.get("fid") is None or (budget and run["budget"] != budget):
            continue
        groups.setdefault((run["candidate"], run["budget"]), []).append(run)
    rows = []
    for (name, run_budget), group in groups.items():
        fids = [r["fid"] for r in group]
        recalls = [r["recall"] for r in group]
        rows.append({"candidate": name, "budget": run_budget, "n": len(group),
                     "seeds": sorted(r["seed"] for r in group),
                     "fid_mean": statistics.fmean(fids), "fid_min": min(fids),
                     "fid_max": max(fids), "recall_mean": statistics.fmean(recalls),
                     "steps": group[0]["training"].get("steps"),
                     "train_seconds_mean": statistics.fmean(
                         r["training"].get("seconds") or 0.0 for r in group),
                     "what": CANDIDATES.get(name, ([], ""))[1]})
    return sorted(rows, key=lambda r: (r["budget"], r["fid_mean"]))


def print_table(rows: list[dict]) -> None:
    print(f"{'candidate':<20} {'budget':<13} {'n':>2} {'FID mean':>9} {'[min, max]':>18} "
          f"{'recall':>7} {'steps':>6} {'train s':>8}  what")
    for r in rows:
        print(f"{r['candidate']:<20} {r['budget']:<13} {r['n']:>2} {r['fid_mean']:9.1f} "
              f"[{r['fid_min']:7.1f}, {r['fid_max']:7.1f}] {r['recall_mean']:7.3f} "
              f"{r['steps'] or 0:>6} {r['train_seconds_mean']:8.1f}  {r['what']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="candidate names")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--budget", default=BUDGET)
    parser.add_argument("--keep", default=None, help="run in this folder and keep its results")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--list", action="store_true", help="list the candidates")
    parser.add_argument("--table", action="store_true", help="print the saved results")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args(argv)

    import torch

    tag = torch.cuda.get_device_name().replace(" ", "_") if torch.cuda.is_available() else "cpu"
    path = Path(args.out) / f"default_search-{tag}.json"
    data = _load(path)
    if args.list:
        for name, (overrides, what) in CANDIDATES.items():
            print(f"{name:<20} {' '.join(overrides):<70} {what}")
        return 0
    if args.table:
        print_table(summarize(data["runs"]))
        return 0
    names = args.only or list(CANDIDATES)
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        print(f"unknown candidates: {', '.join(unknown)}", file=sys.stderr)
        return 2
    data["meta"] = {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "machine": platform.machine(),
                    "updated": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="genbench-search-") as tmp:
        where = Path(args.keep or tmp).absolute()
        where.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            for name in names:
                key = _key(name, seed, args.budget)
                if data["runs"].get(key, {}).get("fid") is not None:
                    continue
                run = _run_one(name, seed, args.budget, where, args.overrides)
                fid = "failed: " + " ".join(run["error"]) if "error" in run else \
                    f"FID {run['fid']:.1f} recall {run['recall']:.3f} " \
                    f"({run['training']['steps']} steps, {run['training']['seconds']} s)"
                print(f"  {name} seed {seed}: {fid}", flush=True)
                data["runs"][key] = run
                _save(path, data)
    print_table(summarize(data["runs"], args.budget))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
