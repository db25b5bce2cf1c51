"""One benchmark cell: build -> train or load -> sample -> measure -> record.

``run_cell(cfg)`` takes the resolved configuration as plain containers (Hydra stays in the CLI)
and returns the record it wrote. A user error (unknown component, impossible shape, missing
file) raises :class:`~genbench.errors.UserError` before anything is written; a cell that breaks
for another reason can be recorded as failed by :func:`record_failure`.

Under torch.distributed (``torchrun``, SLURM's ``srun``, submitit tasks;
:mod:`genbench.distributed`) every rank runs the cell: sampling and feature extraction are
split across the ranks (:func:`genbench.harness.generate.generate`,
:func:`genbench.harness.evaluate.measure_quality`); rank 0 alone measures the cost (timing stays
a one-device measurement, as the papers' batch of 100 on one GPU: ``timing.scope`` says so),
writes the record and hands it to the other ranks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from genbench import distributed
from genbench._io import json_hash, remove_stale_temporaries, remove_stale_temporaries_below
from genbench.errors import UserError, notice
from genbench.harness import record as rec
from genbench.harness.artifacts import ModelCache
from genbench.harness.build import build_components
from genbench.harness.evaluate import (
    Measurements,
    choose_extractors,
    combine_seed_uncertainty,
    extractor_lines,
    measure_cost,
    measure_fp32_reference,
    measure_quality,
)
from genbench.harness.fastpath import DEFAULTS as FAST_PATH_DEFAULTS
from genbench.harness.fastpath import FastPath, Prepared, prepare
from genbench.harness.generate import check_rng, first_samples, generate, sample_grid_png
from genbench.harness.latent import fit_latent, reconstruction_quality
from genbench.harness.system import hardware, package_versions, resolve_device
from genbench.harness.train import train_or_load
from genbench.report.replicates import (
    SEED_METRICS,
    SEED_RULE,
    SPREAD,
    aggregate_metrics,
    replicate_config,
    replicate_seeds,
)
from genbench.schema import validate

# Settings that say where a cell is written or how it talks, not what it measures: the same
# cell under another results folder, cache or experiment keeps its name (and is found as done).
NOT_IN_CELL_IDENTITY = ("progress", "report", "presets", "results_dir", "cache_dir", "experiment",
                        "cell")


def cell_name(cfg: dict[str, Any]) -> str:
    """``<dataset>-<latent>-<backbone preset>-<sampler>-s<steps>-<hash>`` unless ``cell`` is set
    (a plain name either way: :func:`genbench.harness.record.check_name`)."""
    if cfg.get("cell") not in (None, ""):
        return rec.check_name(cfg["cell"], "cell")
    presets = cfg.get("presets", {})
    parts = [
        presets.get("dataset") or cfg["dataset"]["name"],
        presets.get("latent") or cfg["latent"]["name"],
        presets.get("backbone") or cfg["backbone"]["name"],
        cfg["sampler"]["name"],
        f"s{cfg['sampler'].get('steps', 'x')}",
    ]
    hashed = {k: v for k, v in cfg.items() if k not in NOT_IN_CELL_IDENTITY}
    if isinstance(hashed.get("train"), dict):
        # no budget (the presets' null) and train.seeds=1 (the default) name the same cells as
        # before those settings existed
        defaults = {"budget": None, "seeds": 1}
        hashed["train"] = {k: v for k, v in hashed["train"].items()
                           if not (k in defaults and v == defaults[k])}
    if isinstance(hashed.get("eval"), dict):
        # likewise eval.rng=per_sample and the fast path's defaults (fp32, no compile, default
        # layout): the cells named before those settings existed
        defaults = {"rng": "per_sample", **FAST_PATH_DEFAULTS}
        hashed["eval"] = {k: v for k, v in hashed["eval"].items()
                          if not (k in defaults and v == defaults[k])}
    name = "-".join(str(p) for p in parts) + "-" + json_hash(hashed, 8)
    try:
        return rec.check_name(name, "cell")
    except UserError as exc:  # e.g. dataset.name=a/b: the derived name is not a folder name
        raise UserError(f"the cell name derived from the configuration is not a plain name "
                        f"({exc}); set cell=NAME") from None


def paths(cfg: dict[str, Any]) -> tuple[Path, Path, Path]:
    """(experiment folder, cell folder, cache folder); ``experiment`` and ``cell`` must be plain
    names (one folder each), else :class:`~genbench.errors.UserError`."""
    results = Path(str(cfg.get("results_dir") or "results")).expanduser()
    experiment = cfg.get("experiment")
    experiment_dir = results / rec.check_name("default" if experiment in (None, "") else
                                              experiment, "experiment")
    cache = Path(str(cfg["cache_dir"])).expanduser() if cfg.get("cache_dir") else results / ".cache"
    return experiment_dir, experiment_dir / cell_name(cfg), cache


def _provenance(cfg: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The record sections that say how a cell was run: seeds, package versions, hardware."""
    seeds = replicate_seeds(cfg)
    return {
        "seeds": {"train": cfg["seed"], "sampling": cfg["eval"].get("seed"),
                  "sampling_rng": cfg["eval"].get("rng", "per_sample")}  # eval.rng
        | ({"train_replicates": seeds} if len(seeds) > 1 else {}),
        "versions": package_versions(),
        "hardware": hardware(device),
    }


def run_cell(cfg: dict[str, Any], *, overwrite: bool = False,
             announce: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one cell and write its record; an existing record is returned as it is.

    ``announce`` is called with a one-line description once the configuration has been
    validated (components built), before the long steps start. The configuration is checked
    against :mod:`genbench.schema` first: a bad type, value or key stops here, before anything
    is built, trained or written.
    """
    validate(cfg)
    experiment_dir, cell_dir, cache_dir = paths(cfg)
    # what an earlier killed run left (live writers' temporaries are kept; see genbench._io)
    remove_stale_temporaries(experiment_dir)
    remove_stale_temporaries_below(cache_dir)
    if rec.is_done(cell_dir) and not overwrite:
        return {**rec.read_record(cell_dir), "_skipped": True}
    if cell_dir.exists() or cell_dir.is_symlink():
        why = rec.not_a_cell(cell_dir)
        if why is not None:  # said before anything runs, not after the training
            raise UserError(f"{cell_dir} {why}; genbench replaces only its own folders: move it "
                            f"away or choose another cell=NAME")
    stage: dict[str, Any] = {}  # how far it got, for the Ctrl-C message
    try:
        return _run_cell(cfg, cell_dir, cache_dir, overwrite, announce, stage)
    except KeyboardInterrupt as exc:
        exc.genbench_resume = _resume_hint(cell_dir, exc, stage, overwrite)  # read by the CLI
        raise


def _resume_hint(cell_dir: Path, exc: BaseException, stage: dict[str, Any],
                 overwrite: bool) -> str:
    """What running the same command again will do after an interruption (Ctrl-C)."""
    written = stage.get("record")
    if rec.is_done(cell_dir):
        if not overwrite or (written is not None and
                             (cell_dir / rec.RESULT).read_text() == rec.dumps(written)):
            return f"the record is complete ({cell_dir}); nothing to resume"
        prefix = f"the earlier record is kept unchanged ({cell_dir}); "
    else:
        prefix = ""
    done = stage.get("seeds_done", 0)
    if stage.get("seeds", 1) > 1:  # train.seeds=N: the finished seeds' models are cached
        prefix += (f"{done} of {stage['seeds']} seeds finished (their models are cached and "
                   f"are not trained again); ")
    loop = getattr(exc, "genbench_training", None)  # set by genbench.training.loop.train
    if loop is not None:
        what, step, saved = loop["what"], loop["step"], loop["checkpoint_step"]
        if saved is None:
            return prefix + (f"{what} at step {step}, before its first checkpoint: running the "
                             f"same command again starts {what} from the beginning")
        return prefix + (f"{what} at step {step}: running the same command again resumes it "
                         f"from its checkpoint at step {saved}")
    if stage.get("trained"):
        return prefix + ("after training, while sampling or measuring: the trained model is "
                         "kept in the cache, so running the same command again samples and "
                         "measures without training")
    return prefix + ("before training started: running the same command again starts from the "
                     "beginning (models and checkpoints already in the cache are reused)")


def _run_cell(cfg: dict[str, Any], cell_dir: Path, cache_dir: Path, overwrite: bool,
              announce: Callable[[str], None] | None, stage: dict[str, Any]) -> dict[str, Any]:
    if cfg.get("checkpoint") and not Path(str(cfg["checkpoint"])).expanduser().is_file():
        raise UserError(f"checkpoint file not found: {cfg['checkpoint']}; pass checkpoint=PATH to "
                        f"a generator .safetensors file, or leave it unset to train")
    if cfg.get("checkpoint") and len(replicate_seeds(cfg)) > 1:
        raise UserError(f"checkpoint= evaluates one given model; train.seeds="
                        f"{len(replicate_seeds(cfg))} trains several: drop one of the two")
    device = resolve_device(str(cfg.get("device", "auto")))
    ctx = distributed.init(device.type)
    if ctx.distributed and device.type == "cuda":
        device = torch.device("cuda", distributed.gpu_index(ctx.local_rank))  # one GPU per rank
    check_rng(str(cfg["eval"].get("rng", "per_sample")), ctx.world_size)
    progress = bool(cfg.get("progress", True)) and ctx.is_main
    comps = build_components(cfg)
    # rank 0 fetches or trains what the others then find cached
    extractors = distributed.main_first(
        lambda: choose_extractors(cfg["eval"], comps, cache_dir, device, progress))
    if not ctx.is_main:
        announce = None
    if announce is not None:
        announce(f"cell {cell_dir.name} -> {cell_dir} ({device})")
    started = time.perf_counter()
    latent_info = fit_latent(comps, cache_dir, device, progress)
    eval_cfg = cfg["eval"]
    seeds = replicate_seeds(cfg)
    stage["seeds"] = len(seeds)
    per_seed: list[dict[str, Any]] = []
    measured: list[Measurements] = []
    first: tuple[torch.nn.Module, torch.Tensor, Measurements, Prepared] | None = None
    fast = FastPath.from_eval(eval_cfg)  # eval.precision, eval.compile, eval.channels_last
    for seed in seeds:  # each seed's model is cached apart: a rerun trains the unfinished ones
        if len(seeds) > 1 and announce is not None:
            announce(f"  seed {seed} ({len(per_seed) + 1} of {len(seeds)})")
        net, training = train_or_load(replicate_config(cfg, seed), comps, ModelCache(cache_dir),
                                      device, progress)
        stage["trained"] = True  # a rerun samples without training (this seed)
        prepared = prepare(net, comps.latent, fast, device)
        samples = _sample(prepared.net, prepared.latent, comps, eval_cfg, device, progress)
        m = Measurements()
        measure_quality(samples, comps, eval_cfg, cache_dir, extractors, m)
        per_seed.append({"seed": seed, "metrics": dict(m.metrics), "training": training})
        measured.append(m)
        if first is None:
            # the sample grid's images: the first of the run (rank 0's block may be shorter)
            if fast.active:  # the same seeds once more in fp32: the fast path's quality cost
                _fp32_reference(net, samples, comps, eval_cfg, cache_dir, extractors, m,
                                prepared, device, progress, seed if len(seeds) > 1 else None)
            first = (net, first_samples(samples, int(eval_cfg.get("grid_size", 10)) ** 2), m,
                     prepared)
            for line in extractor_lines(m):  # which features and weights each metric used
                notice(line)
        stage["seeds_done"] = len(per_seed)
    # rank 0 measures the cost and writes the record; the others receive it (or rank 0's error)
    return distributed.on_main(lambda: _measure_and_record(
        cfg, cell_dir, cache_dir, overwrite, stage, comps, extractors, latent_info, device,
        progress, seeds, per_seed, measured, first, started, ctx))


def _measure_and_record(cfg: dict[str, Any], cell_dir: Path, cache_dir: Path, overwrite: bool,
                        stage: dict[str, Any], comps: Any, extractors: Any, latent_info: Any,
                        device: torch.device, progress: bool, seeds: list[int],
                        per_seed: list[dict[str, Any]], measured: list[Measurements],
                        first: Any, started: float,
                        ctx: distributed.Context) -> dict[str, Any]:
    """Rank 0's part after sampling and measuring quality: cost, record, files."""
    eval_cfg = cfg["eval"]
    net, samples, m, prepared = first  # (seeds is never empty)
    training = per_seed[0]["training"]
    if len(seeds) > 1:  # the record's metrics are the means; per seed and spread beside them
        aggregate = aggregate_metrics([p["metrics"] for p in per_seed])
        # FID's sampling interval and FID-infinity of the mean, not of the first seed (from the
        # seeds' own FIDs: before the first seed's metrics become the means below)
        metrics, recipes, missing = combine_seed_uncertainty(measured)
        m.metrics.update({k: aggregate[k]["mean"] if k in aggregate else None
                          for k in m.metrics if k in SEED_METRICS})
        m.metrics.update(metrics)
        m.recipes.update(recipes)
        m.missing.update(missing)
        training = {"replicates": len(seeds), "per_seed": [p["training"] for p in per_seed]}
    # cost: NFE, parameters, MACs and memory follow from the architecture, the same for every
    # seed; sampling time is measured once, on the first seed's model
    measure_cost(net, comps, eval_cfg, device, m, progress=progress, prepared=prepared)
    m.timing["scope"] = (f"one device (rank 0 of {ctx.world_size})" if ctx.distributed
                         else "one device")
    if len(seeds) > 1:
        m.timing["measured_on_seed"] = seeds[0]
    if latent_info is not None:
        rq = reconstruction_quality(cfg, comps, extractors[0]["fid"], device, cache_dir)
        m.metrics["rfid"] = rq["rfid"]
        m.recipes["rfid"] = {**rq["recipe"], "extractor": rq["extractor"],
                             "num_real": rq["num_images"], "split": rq["split"],
                             "protocol": "LDDGAN Table 1: FID(decode(encode(x)), x), held out"}
    record = rec.new_record(cfg.get("experiment") or "default", cell_dir.name, cfg,
                            **_provenance(cfg, device))
    record.update(
        metrics={key: m.metrics.get(key) for key in rec.METRIC_KEYS} | m.metrics,
        metric_recipes=m.recipes,
        missing=m.missing | {k: "not measured" for k in ("fid", "precision", "recall", "fid_ci",
                                                         "fid_infinity", "fid_at_n")
                             if m.metrics.get(k) is None and k not in m.missing},
        timing=m.timing,
        memory=m.memory,
        training=training,
        latent={"identity": _identity(comps.latent), "fit": latent_info},
        sampler=comps.sampler.options | {"name": comps.sampler.name,
                                         "objective": comps.sampler.objective},
        shapes={"image": list(comps.image_shape), "latent": list(comps.latent_shape)},
        denoiser={"class": type(net.backbone).__name__, "output": net.output, "z_dim": net.z_dim},
        seconds=round(time.perf_counter() - started, 2),
        artifacts={"samples": rec.SAMPLES, "config": rec.CONFIG},
    )
    if ctx.distributed:
        record["distributed"] = {
            "world_size": ctx.world_size, "backend": ctx.backend,
            "sharded": "sampling and feature extraction (contiguous blocks of the samples in "
                       "rank order; FID statistics reduced as float64 sums, features gathered "
                       "in sample order)",
            "rank_0_only": "reference statistics, metrics, cost and timing, record"}
    if len(seeds) > 1:
        record["replicates"] = {
            "n": len(seeds), "seeds": seeds, "seed_rule": SEED_RULE, "spread": SPREAD,
            "samples_of_seed": seeds[0],
            "per_seed": [{"seed": p["seed"], "metrics": p["metrics"]} for p in per_seed],
            "aggregate": aggregate,
        }
    files = {
        rec.SAMPLES: sample_grid_png(samples, int(eval_cfg.get("grid_size", 10))),
        rec.CONFIG: yaml.safe_dump(cfg, sort_keys=False).encode(),
    }
    stage["record"] = record
    rec.write_cell(cell_dir, record, files, overwrite=overwrite)
    return record


def _sample(net: torch.nn.Module, latent: Any, comps: Any, eval_cfg: dict[str, Any],
            device: torch.device, progress: bool) -> torch.Tensor:
    """The cell's ``eval.num_samples`` uint8 samples drawn through ``net`` and ``latent``."""
    return generate(net, latent, comps.sampler, comps.latent_shape,
                    num_samples=int(eval_cfg["num_samples"]),
                    batch_size=int(eval_cfg["batch_size"]), seed=int(eval_cfg["seed"]),
                    device=device, progress=progress, rng=str(eval_cfg.get("rng", "per_sample")))


def _fp32_reference(net: torch.nn.Module, samples: torch.Tensor, comps: Any,
                    eval_cfg: dict[str, Any], cache_dir: Path, extractors: Any,
                    m: Measurements, prepared: Prepared, device: torch.device, progress: bool,
                    seed: int | None) -> None:
    """``fid_fp32``, ``fid_delta_fp32`` and ``uint8_diff_fp32`` of a cell sampled with a fast
    path: the same seeds drawn with the plain fp32 networks (one extra sampling pass and one
    extra FID feature pass; :func:`genbench.harness.evaluate.measure_fp32_reference`). With
    ``train.seeds`` > 1, on the first training seed's model (``seed``) only."""
    notice(f"fast path {prepared.fast}: sampling the same seeds again in fp32 for fid_fp32")
    reference = _sample(net, comps.latent, comps, eval_cfg, device, progress)
    measure_fp32_reference(samples, reference, comps, eval_cfg, cache_dir, extractors, m,
                           prepared.settings())
    if seed is not None:
        for key in ("fid_fp32", "fid_delta_fp32", "uint8_diff_fp32"):
            m.recipes[key] = {**m.recipes[key], "training_seed": seed,
                              "over_seeds": "on the first training seed's model only: "
                                            "fid_delta_fp32 is that seed's FID minus fid_fp32"}


def _identity(latent: Any) -> dict[str, Any]:
    identity = getattr(latent, "identity", None)
    return identity() if callable(identity) else {"name": getattr(latent, "name", "?")}


def record_failure(cfg: dict[str, Any], error: BaseException) -> dict[str, Any]:
    """Record a cell that could not finish, with its reason (grids go on after it)."""
    _, cell_dir, _ = paths(cfg)
    device_name = str(cfg.get("device", "auto"))
    try:
        device = resolve_device(device_name)
    except UserError:
        device = torch.device("cpu")
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    record = rec.failed_record(cfg.get("experiment") or "default", cell_dir.name, cfg,
                               f"{type(error).__name__}: {reason}",
                               "the cell failed before it was measured",
                               **_provenance(cfg, device))
    files = {rec.CONFIG: yaml.safe_dump(cfg, sort_keys=False).encode()}
    rec.write_cell(cell_dir, record, files, overwrite=False)
    return record
