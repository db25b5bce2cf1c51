"""Measure a cell: quality of its samples and cost of producing them.

Quality (torch-fidelity protocol, staged): uint8 samples -> features -> statistics -> numbers.
FID uses the TF-compatible Inception when its weights are found, precision/recall VGG16 (k = 3);
offline, both fall back to a classifier trained on the dataset's own labels, named as such in
the recipe. A metric that cannot be computed is ``None`` with its reason under ``missing``.

Cost: NFE as counted by a wrapper around the denoiser during sampling; parameters of denoiser
and decoder; MACs per forward (torch's FLOP counter, fvcore's multiply-add convention); peak
memory for one sample; time per batch with warm-up, synchronisation and repeated trials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genbench.errors import MissingWeightsError, UserError
from genbench.harness.build import Components
from genbench.harness.generate import generate_batch, to_uint8
from genbench.samplers.noise import BatchRNG, PerSampleRNG

EXTRACTOR_CHOICES = ("auto", "inception", "classifier")


@dataclass
class Measurements:
    metrics: dict[str, Any] = field(default_factory=dict)
    recipes: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- quality


def _classifier(comps: Components, cache_dir: Path, progress: bool):
    from genbench.data.base import all_images
    from genbench.metrics.features import classifier_extractor

    dataset = comps.dataset
    if not getattr(dataset, "num_classes", None):
        raise MissingWeightsError(
            f"no Inception/VGG16 weights and dataset {dataset.name!r} has no labels to train a "
            f"feature classifier on; supply eval.inception_weights=PATH"
        )
    images, labels = all_images(dataset)
    return classifier_extractor(images, labels, int(dataset.num_classes),
                                cache_dir=cache_dir / "extractors",
                                dataset_key=str(dataset.name), progress=progress)


def choose_extractors(eval_cfg: dict[str, Any], comps: Components, cache_dir: Path,
                      device: torch.device, progress: bool) -> tuple[dict[str, Any], list[str]]:
    """Extractors for "fid" and "precision_recall", and notes on fallbacks taken."""
    from genbench.metrics.features import inception_extractor, vgg16_extractor

    choice = eval_cfg.get("feature_extractor", "auto")
    if choice not in EXTRACTOR_CHOICES:
        raise UserError(f"eval.feature_extractor={choice!r}; use one of "
                        f"{', '.join(EXTRACTOR_CHOICES)}")
    allow = bool(eval_cfg.get("allow_download", False))
    wanted = {"fid": (inception_extractor, eval_cfg.get("inception_weights")),
              "precision_recall": (vgg16_extractor, eval_cfg.get("vgg16_weights"))}
    chosen: dict[str, Any] = {}
    notes: list[str] = []
    for metric, (make, weights) in wanted.items():
        if choice == "classifier":
            chosen[metric] = None
            continue
        try:
            chosen[metric] = make(weights_path=weights, allow_download=allow, device=device,
                                  progress=progress)
        except MissingWeightsError as exc:
            if choice == "inception":
                raise
            notes.append(f"{metric}: {exc}; fell back to the dataset classifier")
            chosen[metric] = None
    if any(v is None for v in chosen.values()):
        clf = _classifier(comps, cache_dir, progress)
        chosen = {k: (v if v is not None else clf) for k, v in chosen.items()}
    return chosen, notes


def _real_features(extractor, comps: Components, eval_cfg: dict[str, Any], cache_dir: Path):
    from genbench.data.base import all_images
    from genbench.metrics.quality import ReferenceStatsCache

    limit = eval_cfg.get("num_real")
    identity = comps.dataset.identity()
    cache = ReferenceStatsCache(cache_dir / "reference")

    def compute() -> torch.Tensor:
        images, _ = all_images(comps.dataset, limit=limit)
        return extractor(images)

    return cache.features(identity, extractor, limit, compute)


def measure_quality(samples: torch.Tensor, comps: Components, eval_cfg: dict[str, Any],
                    cache_dir: Path, extractors: tuple[dict[str, Any], list[str]],
                    out: Measurements) -> None:
    """FID / precision / recall of ``samples`` (uint8) against the dataset's split.

    ``extractors`` comes from :func:`choose_extractors`, called before training so that missing
    weights stop a run before it spends time.
    """
    from genbench.metrics import quality

    extractors, notes = extractors
    fake_cache: dict[str, torch.Tensor] = {}
    for metric in eval_cfg.get("metrics", ["fid", "precision_recall"]):
        extractor = extractors.get(metric)
        if extractor is None:
            out.missing[metric] = f"no extractor is configured for metric {metric!r}"
            continue
        real = _real_features(extractor, comps, eval_cfg, cache_dir)
        if extractor.name not in fake_cache:
            fake_cache[extractor.name] = extractor(samples)
        fake = fake_cache[extractor.name]
        values = quality.compute(metric, real, fake, k=int(eval_cfg.get("pr_k", 3)))
        for key, value in values.items():
            out.metrics[key] = value
            out.recipes[key] = {**extractor.recipe, "extractor": extractor.name,
                                "num_fake": int(fake.shape[0]), "num_real": int(real.shape[0]),
                                "reference": comps.dataset.identity(), "notes": notes}


# --------------------------------------------------------------------------- cost


def _probe_inputs(net: torch.nn.Module, latent_shape, batch: int, device: torch.device):
    x = torch.zeros(batch, *latent_shape, device=device)
    t = torch.zeros(batch, dtype=torch.long, device=device)
    z = torch.zeros(batch, net.z_dim, device=device) if net.z_dim > 0 else None
    return x, t, z


def probe_sampling(net: torch.nn.Module, comps: Components, seed: int,
                   device: torch.device) -> dict[str, Any]:
    """NFE and peak memory of drawing one sample, noise to decoded uint8 image.

    NFE is counted by a wrapper around the denoiser (:class:`~genbench.metrics.cost.NFECounter`)
    during one run; peak memory is measured around a second run of the bare denoiser, so the
    counter's bookkeeping is not in it. Keys: ``nfe``, ``peak_memory_mb``, ``peak_memory_method``.
    """
    from genbench.metrics import cost

    def one_sample(denoiser: torch.nn.Module) -> None:
        generate_batch(denoiser, comps.latent, comps.sampler, comps.latent_shape, seed, 0, 1,
                       device)

    counter = cost.NFECounter(net)
    with torch.no_grad():
        one_sample(counter)
    mem_mb, method = cost.peak_memory(lambda: one_sample(net), device)
    return {"nfe": counter.calls, "peak_memory_mb": mem_mb, "peak_memory_method": method}


def measure_cost(net: torch.nn.Module, comps: Components, eval_cfg: dict[str, Any],
                 device: torch.device, out: Measurements) -> None:
    """NFE, parameters, MACs, peak memory and time per batch of this cell's generator."""
    probe = probe_sampling(net, comps, int(eval_cfg.get("seed", 0)), device)
    out.metrics.update(profile_costs(net, comps, device, probe["nfe"]))
    out.metrics["peak_memory_mb"] = probe["peak_memory_mb"]
    out.memory = {"method": probe["peak_memory_method"], "batch_size": 1}
    out.timing = time_sampling(net, comps, eval_cfg, device)
    out.metrics["time_per_batch_s"] = out.timing["median_s"]
    out.metrics["time_per_batch_iqr_s"] = out.timing.get("iqr_s")


def profile_costs(net: torch.nn.Module, comps: Components, device: torch.device,
                  nfe: int) -> dict[str, Any]:
    """Parameters and MACs (batch 1) of denoiser and decoder; MACs per sample = NFE * G + D."""
    from genbench.metrics import cost

    x, t, z = _probe_inputs(net, comps.latent_shape, 1, device)
    with torch.no_grad():
        macs_g = cost.count_macs(lambda: net(x, t, z))
    decoder = comps.latent.decoder_module()
    params_d, macs_d = 0, 0
    if decoder is not None:
        params_d = cost.count_parameters(decoder)
        with torch.no_grad():
            macs_d = cost.count_macs(lambda: comps.latent.decode(x))
    params_g = cost.count_parameters(net)
    return {
        "nfe": nfe,
        "params": params_g + params_d,
        "params_denoiser": params_g,
        "params_decoder": params_d,
        "gmacs_denoiser": macs_g / 1e9,
        "gmacs_decoder": macs_d / 1e9,
        "gmacs_per_sample": (nfe * macs_g + macs_d) / 1e9,
        "gflops_per_sample": 2 * (nfe * macs_g + macs_d) / 1e9,
    }


def time_sampling(net: torch.nn.Module, comps: Components, eval_cfg: dict[str, Any],
                  device: torch.device) -> dict[str, Any]:
    """Time one batch of ``eval.time_batch_size`` from noise to decoded uint8 images."""
    from genbench.metrics import cost

    batch = int(eval_cfg.get("time_batch_size", 100))
    seed = int(eval_cfg.get("seed", 0))
    warmup = int(eval_cfg.get("time_warmup", 10))
    trials = int(eval_cfg.get("time_trials", 300))
    # As the official --measure_time: x_T is fixed before timing; z and the posterior noise are
    # drawn inside the timed span with one call per step; the decode is inside the span.
    x_T = PerSampleRNG.for_range(seed, 0, batch, device).randn(*comps.latent_shape)
    rng = BatchRNG(batch, seed, device)

    def run() -> None:
        to_uint8(comps.latent.decode(comps.sampler.sample(net, x_T, rng)))

    with torch.no_grad():
        timing = cost.time_per_batch(run, device, warmup=warmup, trials=trials)
    return {**timing, "batch_size": batch}
