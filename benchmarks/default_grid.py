"""Wall time of the default grid (`genbench run --grid`) from nothing: prints and saves numbers.

The target (issue 5): the default grid's cells (training included, with an empty cache) finish
within 25 minutes on a 2-core CPU. This runs the real command in a fresh temporary folder, so
nothing is loaded from an earlier run, and records the total wall time, each cell's own time
(``seconds`` of its record), its training time and its metrics.

    python benchmarks/default_grid.py                 # the default grid
    python benchmarks/default_grid.py --keep DIR      # keep the grid's results in DIR

Results go to benchmarks/results/default_grid-<device>.json (and are printed as a table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 25 * 60


def _records(experiment: Path) -> list[dict]:
    paths = sorted(p for p in experiment.glob("*/result.json") if not p.parent.name.startswith("."))
    return [json.loads(p.read_text()) for p in paths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="default", help="a named grid (registry/grid/)")
    parser.add_argument("--keep", default=None, help="run in this folder and keep its results")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("overrides", nargs="*", help="extra overrides, e.g. device=cuda")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="genbench-grid-") as tmp:
        where = Path(args.keep or tmp).absolute()
        where.mkdir(parents=True, exist_ok=True)
        results = where / "results"
        command = [sys.executable, "-m", "genbench", "run", "--grid", args.grid,
                   f"results_dir={results}", f"cache_dir={where / 'cache'}", "progress=false",
                   *args.overrides]
        print("$", " ".join(command), flush=True)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=where, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = time.perf_counter() - started
        experiment = next((p for p in results.iterdir() if p.is_dir() and p.name != ".cache"),
                          None) if results.is_dir() else None
        records = _records(experiment) if experiment else []

    rows = []
    for r in records:
        m, training = r.get("metrics") or {}, r.get("training") or {}
        fid_recipe = (r.get("metric_recipes") or {}).get("fid") or {}
        rows.append({"cell": r["cell"], "status": r["status"], "error": r.get("error"),
                     "cell_seconds": r.get("seconds"),
                     "training_source": training.get("source"),
                     "training_seconds": training.get("seconds"),
                     **{k: m.get(k) for k in ("fid", "precision", "recall", "nfe",
                                              "time_per_batch_s", "gmacs_per_sample")},
                     "extractor": fid_recipe.get("extractor")})
    for row in rows:
        fid = "missing" if row["fid"] is None else f"{row['fid']:8.2f}"
        print(f"{row['cell']:<50} {row['status']:<7} cell {row['cell_seconds'] or 0:7.1f}s  "
              f"training {row['training_seconds'] or 0:7.1f}s ({row['training_source']})  "
              f"FID {fid}  NFE {row['nfe']}")
    verdict = "within" if wall <= TARGET_S else "OVER"
    print(f"grid {args.grid!r}: exit {done.returncode}, {len(rows)} cells, wall {wall:.1f}s "
          f"({wall / 60:.1f} min; {verdict} the {TARGET_S // 60}-minute target)")

    import torch

    gpu = torch.cuda.is_available() and not any(o in ("device=cpu",) for o in args.overrides)
    tag = torch.cuda.get_device_name().replace(" ", "_") if gpu else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.grid}_grid-{tag}.json"
    meta = {"grid": args.grid, "overrides": args.overrides, "exit_status": done.returncode,
            "wall_s": round(wall, 2), "target_s": TARGET_S, "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(), "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp_path = path.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")
    tmp_path.replace(path)
    print(f"saved {path}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
