"""Training compute of the default grid's models, and the equal-compute budget it uses.

For each of the default grid's three trained models (DDGAN pixel T=4, DDGAN wavelet T=4, the eps
model of the DDIM/DDPM cells) this measures the training MACs of one step as training measures
them (:func:`genbench.harness.train.training_step_cost`: ``FlopCounterMode`` over one real step,
forward and backward, R1's double backward on lazy steps), and the MACs of the epoch-length run
(``train.epochs`` of the digits_cpu preset). With each model's recorded training time on CPU (the
``training_seconds`` of benchmarks/results/default_grid-cpu.json, an epoch-length grid run on the
2-core machine) it derives seconds per training MAC per model and the one budget B in training
MACs that, given to every model, takes about the same total training time as the epoch-length
grid: B = sum_i seconds_i / sum_i (seconds_i / macs_i).

    python benchmarks/training_cost.py            # prints and writes results/training_cost-cpu.json

Nothing is trained; a few seconds on one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
MODELS = {  # grid cell -> the model it trains (cells that differ only in sampling share one)
    "pixel_ddgan_t4": "DDGAN pixel T=4",
    "wavelet_ddgan_t4": "DDGAN wavelet T=4",
    "pixel_ddim_s4": "eps (DDIM 4/10/50, DDPM 100)",
}
RECORDED_CELL = {"pixel_ddgan_t4": "digits-pixel-ncsnpp_digits-ddgan-s4",
                 "wavelet_ddgan_t4": "digits-wavelet-ncsnpp_digits-ddgan-s4",
                 "pixel_ddim_s4": "digits-pixel-ncsnpp_digits-ddim-s4"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timings", default=str(HERE / "results" / "default_grid-cpu.json"))
    parser.add_argument("--out", default=str(HERE / "results" / "training_cost-cpu.json"))
    args = parser.parse_args(argv)

    import torch
    from omegaconf import OmegaConf

    from genbench.config import compose
    from genbench.harness.train import training_step_cost

    torch.set_num_threads(1)
    recorded = {row["cell"].rsplit("-", 1)[0]: row
                for row in json.loads(Path(args.timings).read_text())["rows"]}
    rows = []
    for cell, label in MODELS.items():
        cfg = OmegaConf.to_container(compose([f"+grid/cell={cell}", "progress=false"]),
                                     resolve=True)
        cost = training_step_cost(cfg)
        steps = cost["epochs"] * cost["steps_per_epoch"]
        macs = cost["step_macs"]["base"] * steps + cost["step_macs"]["extra"] * (
            -(-steps // cost["step_macs"]["every"]))
        seconds = recorded[RECORDED_CELL[cell]]["training_seconds"]
        rows.append({"cell": cell, "model": label, **cost, "epoch_run_steps": steps,
                     "epoch_run_macs": macs, "epoch_run_seconds_cpu": seconds,
                     "seconds_per_tmac": seconds / (macs / 1e12)})
    total_s = sum(r["epoch_run_seconds_cpu"] for r in rows)
    budget = total_s / sum(r["epoch_run_seconds_cpu"] / r["epoch_run_macs"] for r in rows)
    for r in rows:
        r["steps_at_budget"] = None  # filled below
        per = r["step_macs"]
        n = max(1, int(budget // r["macs_per_step"]))
        while per["base"] * n + per["extra"] * (-(-n // per["every"])) < budget:
            n += 1
        r["steps_at_budget"] = n
        r["epochs_at_budget"] = n / r["steps_per_epoch"]
        r["est_seconds_at_budget"] = r["seconds_per_tmac"] * budget / 1e12
    out = {"budget_macs": budget, "total_epoch_run_seconds_cpu": total_s,
           "timings_from": str(Path(args.timings).relative_to(HERE.parent)
                               if Path(args.timings).is_relative_to(HERE.parent)
                               else args.timings),
           "torch": torch.__version__, "models": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"{'model':32s} {'MACs/step':>12s} {'epochs':>6s} {'run TMACs':>10s} {'run s':>7s} "
          f"{'steps@B':>8s} {'epochs@B':>8s} {'est s@B':>8s}")
    for r in rows:
        print(f"{r['model']:32s} {r['macs_per_step']:12.4g} {r['epochs']:6d} "
              f"{r['epoch_run_macs'] / 1e12:10.3f} {r['epoch_run_seconds_cpu']:7.1f} "
              f"{r['steps_at_budget']:8d} {r['epochs_at_budget']:8.1f} "
              f"{r['est_seconds_at_budget']:8.1f}")
    print(f"equal-compute budget B = {budget:.4g} training MACs per model "
          f"(epoch-length grid: {total_s:.0f} s of training on CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
