"""Measure a cell: quality of its samples and cost of producing them.

Quality (torch-fidelity protocol, staged): uint8 samples -> features -> statistics -> numbers,
for the registered metrics ``eval.metrics`` names (FID, Heusel et al. 2017; precision/recall,
Kynkäänniemi et al. 2019, k = 3; KID, Binkowski et al. 2018). Each metric's registry metadata
says which extractor it wants (FID and KID the TF-compatible Inception, precision/recall VGG16)
and whether it takes features or statistics. The Inception is always there (its weights are
packaged, :mod:`genbench.metrics.weights`); without VGG16 weights, precision/recall run on the
Inception's pool features under keys of their own (``precision[inception]``,
``recall[inception]``: the metric's registered fallback). Only when a pretrained extractor has no
weights at all does ``eval.feature_extractor=auto`` fall back to a classifier trained on the
dataset's own labels, named as such in the recipe; ``classifier`` uses it for every metric.
Every fallback is said on the console and kept in the recipes. A metric that cannot be computed
is ``None`` with its reason under ``missing``.

Beside FID, from the same features (no further sampling): ``fid_ci``, a 95% interval for the
sampling uncertainty of the generated set (``eval.fid_ci_resamples`` half-samples), and
``fid_infinity`` with ``fid_at_n``, FID extrapolated to infinitely many samples
(``eval.fid_infinity_points`` subset sizes; Chong and Forsyth 2020), see
:mod:`genbench.metrics.quality`.

Cost: NFE as counted by a wrapper around the denoiser during sampling; parameters of denoiser
and decoder; MACs per forward (torch's FLOP counter, fvcore's multiply-add convention); peak
memory for one sample; time per batch with warm-up, synchronisation and repeated trials.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from genbench.errors import MissingWeightsError, UserError, notice
from genbench.harness.build import Components
from genbench.harness.fastpath import FastPath, Prepared, prepare, uint8_difference
from genbench.harness.generate import generate_batch, to_uint8
from genbench.samplers.noise import BatchRNG, PerSampleRNG

EXTRACTOR_CHOICES = ("auto", "inception", "classifier")
DEFAULT_METRICS = ("fid", "precision_recall")
FID_KEY = "fid"  # the result key whose uncertainty is measured (quality.FID)


@dataclass
class Measurements:
    metrics: dict[str, Any] = field(default_factory=dict)
    recipes: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    # not recorded: each half-sample's FID, to combine the intervals of several training seeds
    half_sample_fids: np.ndarray | None = None


# --------------------------------------------------------------------------- quality


def requested_metrics(eval_cfg: dict[str, Any]) -> list[str]:
    """Registered metric names of ``eval.metrics`` (default: fid and precision_recall)."""
    return list(eval_cfg.get("metrics") or DEFAULT_METRICS)


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


def _pretrained(name: str, eval_cfg: dict[str, Any], device: torch.device, progress: bool):
    """Pretrained extractor ``name`` (a key of ``features.PRETRAINED``), weights from
    ``eval.<name>_weights``, verified against ``eval.<name>_sha256`` when set (else the
    built-in full SHA-256 of the official file); ``eval.resize`` for a builder that takes it."""
    from genbench.metrics.features import PRETRAINED

    if name not in PRETRAINED:
        raise UserError(f"a metric wants feature extractor {name!r}, which genbench does not "
                        f"know; known: {', '.join(PRETRAINED)}")
    build = PRETRAINED[name]
    options: dict[str, Any] = {}
    pinned = eval_cfg.get(f"{name}_sha256")  # only passed when set: builders may not take it
    if pinned:
        options["sha256"] = str(pinned)
    if "resize" in inspect.signature(build).parameters:
        options["resize"] = str(eval_cfg.get("resize", "tf1"))
    return build(eval_cfg.get(f"{name}_weights"), bool(eval_cfg.get("allow_download", False)),
                 device, progress=progress, **options)


class ChosenExtractors(NamedTuple):
    """What :func:`choose_extractors` chose for a run."""

    by_metric: dict[str, Any]  # registered metric name -> its FeatureExtractor
    notes: list[str]  # the fallbacks taken, one line each (printed, and kept in the recipes)
    substituted: dict[str, str]  # metric -> its registered fallback extractor, when used


def choose_extractors(eval_cfg: dict[str, Any], comps: Components, cache_dir: Path,
                      device: torch.device, progress: bool) -> ChosenExtractors:
    """The extractor of every metric of ``eval.metrics`` and of "fid", and the fallbacks taken.

    Each metric's extractor is the one its registry metadata names (:func:`metric_spec`); each
    distinct extractor is built once. When its weights are missing and were not configured, a
    metric with a registered ``fallback`` (precision/recall: the Inception) uses that extractor
    and records its numbers under its ``fallback_keys``. ``eval.feature_extractor``: ``auto``
    falls back to the dataset classifier when a pretrained extractor is still missing,
    ``inception`` insists on pretrained ones, ``classifier`` uses the classifier for every
    metric. A configured weights path that does not exist is an error in every mode. FID's
    extractor is always resolved: the rFID of a learned latent space uses it. Each fallback is
    printed as one loud line before anything is trained.
    """
    from genbench.metrics.quality import metric_spec

    choice = eval_cfg.get("feature_extractor", "auto")
    if choice not in EXTRACTOR_CHOICES:
        raise UserError(f"eval.feature_extractor={choice!r}; use one of "
                        f"{', '.join(EXTRACTOR_CHOICES)}")
    specs = [metric_spec(name) for name in dict.fromkeys([*requested_metrics(eval_cfg), "fid"])]
    built: dict[str, Any] = {}
    missing: dict[str, MissingWeightsError] = {}

    def pretrained(name: str) -> Any:
        if name not in built and name not in missing:
            try:
                built[name] = _pretrained(name, eval_cfg, device, progress)
            except MissingWeightsError as exc:
                if eval_cfg.get(f"{name}_weights") is not None:
                    raise  # a configured file that is not there: never a silent substitute
                missing[name] = exc
        return built.get(name)

    chosen: dict[str, Any] = {}
    notes: list[str] = []
    substituted: dict[str, str] = {}
    for spec in specs:
        if choice == "classifier":
            continue
        chosen[spec.name] = pretrained(spec.extractor)
        if chosen[spec.name] is None and spec.fallback is not None:
            chosen[spec.name] = pretrained(spec.fallback)
            if chosen[spec.name] is not None:
                substituted[spec.name] = spec.fallback
                notes.append(
                    f"{spec.name}: {missing[spec.extractor]}; measured on the "
                    f"{chosen[spec.name].name} features instead (k={eval_cfg.get('pr_k', 3)}) "
                    f"and recorded as {'/'.join(spec.fallback_keys)}, not comparable with "
                    f"{'/'.join(spec.keys)} on {spec.extractor}")
        if chosen[spec.name] is None:
            if choice == "inception":
                raise missing[spec.extractor]
            notes.append(f"{spec.name}: {missing[spec.extractor]}; fell back to the dataset "
                         f"classifier")
    if choice == "classifier" or any(chosen.get(spec.name) is None for spec in specs):
        clf = _classifier(comps, cache_dir, progress)
        chosen = {spec.name: chosen.get(spec.name) or clf for spec in specs}
    for line in notes:
        notice(f"FALLBACK: {line}")
    return ChosenExtractors(chosen, notes, substituted)


def _weights_summary(recipe: dict[str, Any]) -> str:
    if recipe.get("weights_source"):  # a pretrained network
        return (f"weights {recipe.get('weights_file')} ({recipe['weights_source']}, SHA-256 "
                f"{str(recipe.get('sha256', ''))[:12]}...), {recipe.get('input_resize')}")
    return f"weights {recipe.get('weights_file')} (trained on the dataset's labels, cached)"


def extractor_lines(out: Measurements) -> list[str]:
    """One console line per extractor that measured something: the result keys it gave, its
    weights file and where that came from (the fallbacks say so, loudly)."""
    by_extractor: dict[str, list[str]] = {}
    recipes: dict[str, dict[str, Any]] = {}
    for key, recipe in out.recipes.items():
        if key == "rfid" or not isinstance(recipe, dict):
            continue
        by_extractor.setdefault(str(recipe.get("extractor")), []).append(key)
        recipes.setdefault(str(recipe.get("extractor")), recipe)
    lines = []
    for name, keys in by_extractor.items():
        recipe = recipes[name]
        tag = "" if recipe.get("is_inception") or name == "vgg16" else "NOT Inception: "
        lines.append(f"{', '.join(keys)}: {tag}{name} features, {_weights_summary(recipe)}")
    for line in dict.fromkeys(n for r in recipes.values() for n in r.get("notes") or []):
        lines.append(f"FALLBACK: {line}")
    return lines


def _references(specs: list, extractors: dict[str, Any], comps: Components,
                eval_cfg: dict[str, Any], cache_dir: Path) -> dict[str, Any]:
    """Cached reference statistics per extractor name, with the features when a metric that
    uses the extractor needs them (so the reference images pass each extractor once)."""
    from genbench.data.base import all_images
    from genbench.metrics.quality import FEATURES, ReferenceStatsCache, reference_key

    limit = eval_cfg.get("num_real")
    cache = ReferenceStatsCache(cache_dir / "reference")
    users: dict[str, list] = {}
    for spec in specs:
        users.setdefault(extractors[spec.name].name, []).append(spec)
    found = {}
    for name, its_specs in users.items():
        extractor = extractors[its_specs[0].name]
        key = reference_key(comps.dataset.identity(), extractor, limit)
        found[name] = cache.get_or_compute(
            key, lambda e=extractor: e(all_images(comps.dataset, limit=limit)[0]),
            keep_features=any(spec.needs == FEATURES for spec in its_specs))
    return found


def _real_side(spec, reference) -> Any:
    """What metric ``spec`` takes from the reference: its features or its cached statistics."""
    from genbench.metrics.quality import STATISTICS

    if spec.needs == STATISTICS:
        return reference.statistics
    return torch.from_numpy(np.asarray(reference.features, dtype=np.float64))


def _fid_uncertainty_on(eval_cfg: dict[str, Any]) -> bool:
    """Whether FID's interval or FID-infinity is asked for (they need the generated features)."""
    return (int(eval_cfg.get("fid_ci_resamples", 200)) > 0
            or int(eval_cfg.get("fid_infinity_points", 15)) > 0)


def measure_quality(samples: torch.Tensor, comps: Components, eval_cfg: dict[str, Any],
                    cache_dir: Path, extractors: tuple[dict[str, Any], list[str]],
                    out: Measurements) -> None:
    """The metrics of ``eval.metrics`` for ``samples`` (uint8) against the dataset's split.

    Staged as torch-fidelity does: images -> features (once per extractor) -> statistics ->
    numbers, each metric's registry metadata saying which extractor and stage it takes.
    ``extractors`` comes from :func:`choose_extractors`, called before training so that missing
    weights stop a run before it spends time.

    Under torch.distributed (:mod:`genbench.distributed`) ``samples`` is this rank's block of
    the run (:func:`genbench.harness.generate.generate` shards it): each rank extracts the
    features of its block; the statistics FID takes are reduced over ranks as float64 sums
    (:func:`genbench.metrics.quality.sharded_statistics`), and the feature sets that
    precision/recall, KID and FID's interval / FID-infinity take are gathered to rank 0 in
    sample order (:func:`genbench.metrics.quality.gathered_features`). Rank 0 alone computes (and
    caches) the reference statistics and the numbers: the other ranks return with ``out`` as it
    was. The numbers equal those of one process over the same samples.
    """
    from genbench import distributed
    from genbench.metrics import quality

    chosen, notes, substituted = extractors
    specs = [quality.metric_spec(name) for name in requested_metrics(eval_cfg)]
    fid_spec = next((spec for spec in specs if FID_KEY in spec.keys), None)
    num_fake = int(distributed.all_reduce_sum(torch.tensor([samples.shape[0]]))[0])
    local: dict[str, torch.Tensor] = {}  # this rank's features, per extractor name
    needs: dict[str, set[str]] = {}  # extractor name -> what its metrics take
    for spec in specs:
        extractor = chosen[spec.name]
        if extractor.name not in local:
            local[extractor.name] = extractor(samples)
        needs.setdefault(extractor.name, set()).add(spec.needs)
    if fid_spec is not None and _fid_uncertainty_on(eval_cfg):
        needs[chosen[fid_spec.name].name].add(quality.FEATURES)
    # collectives in the same order on every rank (dicts keep the order of the specs)
    fake_statistics = {name: quality.sharded_statistics(local[name])
                       for name in local if quality.STATISTICS in needs[name]}
    fake_features = {name: quality.gathered_features(local[name])
                     for name in local if quality.FEATURES in needs[name]}
    if not distributed.current().is_main:
        return
    references = _references(specs, chosen, comps, eval_cfg, cache_dir)
    for spec in specs:
        extractor = chosen[spec.name]
        reference = references[extractor.name]
        fake = (fake_statistics[extractor.name] if spec.needs == quality.STATISTICS
                else fake_features[extractor.name])
        values = quality.compute(spec.name, _real_side(spec, reference), fake,
                                 k=int(eval_cfg.get("pr_k", 3)))
        recipe = _metric_recipe(extractor, spec, num_fake, reference, comps, notes)
        if distributed.current().distributed:
            recipe["sharded"] = (f"samples and features split over "
                                 f"{distributed.current().world_size} ranks; statistics reduced "
                                 f"as float64 sums, features gathered in sample order")
        keys = dict(zip(spec.keys, spec.keys))
        if spec.name in substituted:  # measured on the fallback extractor: keys of its own
            keys = dict(zip(spec.keys, spec.fallback_keys))
            recipe["k"] = int(eval_cfg.get("pr_k", 3))
            recipe["instead_of"] = f"{'/'.join(spec.keys)} on {spec.extractor} (no weights)"
        for key, recorded in keys.items():
            out.metrics[recorded] = values[key]
            out.recipes[recorded] = recipe
            if recorded != key:
                out.missing[key] = (f"no {spec.extractor} weights; measured on {extractor.name} "
                                    f"features as {recorded}")
        if spec.name == "kid":  # the recipe object is every KID key's: updated in place
            recipe.update(_kid_recipe(recipe["num_real"], recipe["num_fake"], out))
    if fid_spec is not None:
        extractor = chosen[fid_spec.name]
        measure_fid_uncertainty(references[extractor.name].statistics,
                                fake_features.get(extractor.name), eval_cfg,
                                out.recipes[FID_KEY], out,
                                device=getattr(extractor, "device", None))


def _metric_recipe(extractor: Any, spec: Any, num_fake: int, reference: Any, comps: Components,
                   notes: list[str]) -> dict[str, Any]:
    """How metric ``spec`` was measured: the extractor's recipe, the sample counts, the
    reference data and the extractor notes."""
    return {**extractor.recipe, "extractor": extractor.name, "metric": spec.name,
            "num_fake": num_fake, "num_real": int(reference.statistics.num_samples),
            "reference": comps.dataset.identity(), "notes": notes}


FID_FP32 = "fid_fp32"  # FID of the same seeds sampled with the plain fp32 path
FID_DELTA_FP32 = "fid_delta_fp32"  # fid - fid_fp32 (the fast path's FID minus fp32's)
UINT8_DIFF_FP32 = "uint8_diff_fp32"  # the samples' pixel differences to fp32's (0..255)


def measure_fp32_reference(samples: torch.Tensor, reference_samples: torch.Tensor,
                           comps: Components, eval_cfg: dict[str, Any], cache_dir: Path,
                           extractors: tuple[dict[str, Any], list[str]], out: Measurements,
                           settings: dict[str, Any]) -> None:
    """What a fast path cost in quality: ``samples`` (fast path) against ``reference_samples``
    (the same seeds and ``eval.rng``, plain fp32 path), into ``out``.

    ``fid_fp32`` is the FID of the fp32 samples on FID's extractor against the same cached
    reference statistics, ``fid_delta_fp32`` = ``fid`` - ``fid_fp32`` (``out.metrics['fid']``
    must be the fast samples' FID: call after :func:`measure_quality`), and ``uint8_diff_fp32``
    the pixel differences (:func:`genbench.harness.fastpath.uint8_difference`). The price is
    one extra sampling pass and one extra feature pass of FID's extractor, said in the recipe;
    the other metrics are not measured again.
    """
    from genbench import distributed
    from genbench.metrics import quality

    chosen, notes, _ = extractors
    spec = quality.metric_spec(FID_KEY)
    extractor = chosen[spec.name]
    # under torch.distributed each rank holds its block of both sample sets: the pixel
    # differences are combined over the blocks, FID's statistics reduced as float64 sums
    # (collectives in the same order on every rank); rank 0 computes the numbers
    blocks = distributed.gather_objects(
        (int(samples.shape[0]), uint8_difference(samples, reference_samples)))
    statistics = quality.sharded_statistics(extractor(reference_samples))
    num_fake = sum(n for n, _ in blocks)
    if not distributed.current().is_main:
        return
    out.metrics[UINT8_DIFF_FP32] = _combined_difference(blocks)
    reference = _references([spec], chosen, comps, eval_cfg, cache_dir)[extractor.name]
    values = quality.compute(spec.name, _real_side(spec, reference), statistics)
    fid_fp32 = values[FID_KEY]
    fid = out.metrics.get(FID_KEY)
    out.metrics[FID_FP32] = fid_fp32
    out.metrics[FID_DELTA_FP32] = fid - fid_fp32 if _finite(fid) and _finite(fid_fp32) else None
    if out.metrics[FID_DELTA_FP32] is None:
        out.missing[FID_DELTA_FP32] = f"fid={fid!r} and fid_fp32={fid_fp32!r}: no difference"
    recipe = {**_metric_recipe(extractor, spec, num_fake, reference, comps, notes),
              "fast_path": settings,
              "protocol": "the same samples (seeds, eval.rng, batch size) drawn again with "
                          "eval.precision=fp32, compile and channels_last off; cost: one extra "
                          "sampling pass and one extra feature pass of FID's extractor"}
    for key in (FID_FP32, FID_DELTA_FP32, UINT8_DIFF_FP32):
        out.recipes[key] = recipe


def _combined_difference(blocks: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """:func:`~genbench.harness.fastpath.uint8_difference` of the whole sample sets from those
    of their blocks (``(samples in the block, its difference)``, equal-sized samples)."""
    total = sum(n for n, _ in blocks)
    if total == 0:
        return blocks[0][1]

    def mean(key: str) -> float:
        return sum(n * d[key] for n, d in blocks) / total

    return {"max_abs": max(d["max_abs"] for _, d in blocks), "mean_abs": mean("mean_abs"),
            "mean_per_sample_max_abs": mean("mean_per_sample_max_abs"),
            "identical_fraction": mean("identical_fraction")}


def _kid_recipe(num_real: int, num_fake: int, out: Measurements) -> dict[str, Any]:
    """KID's subsets as computed (:func:`genbench.metrics.quality.kid`): 100 subsets of
    ``min(1000, num_real, num_fake)`` samples. When every subset is the whole of both sets, the
    spread over subsets is 0 by construction: ``kid_std`` is missing, with that reason."""
    from genbench.metrics import quality

    size = quality.kid_subset_size(num_real, num_fake)
    if size == num_real == num_fake:
        out.metrics[quality.KID_STD] = None
        out.missing[quality.KID_STD] = (
            f"every KID subset is the whole of both feature sets ({num_fake} generated, "
            f"{num_real} reference samples <= subset size 1000), so their spread is 0 by "
            f"construction")
    note = ("subset size = min(1000, generated, reference) (torch-fidelity needs it <= both; "
            "StyleGAN2-ADA and clean-fid take the same minimum)")
    return {"kid_subsets": 100, "kid_subset_size": size, "kid_subset_rule": note}


def measure_fid_uncertainty(reference: Any, features: torch.Tensor, eval_cfg: dict[str, Any],
                            fid_recipe: dict[str, Any], out: Measurements,
                            device: torch.device | None = None) -> None:
    """``fid_ci`` ([low, high]) and ``fid_infinity``/``fid_at_n`` ({N: FID}) of the generated
    ``features`` against the ``reference`` statistics (the FID's own), into ``out``.

    ``eval.fid_ci_resamples`` (0: off) half-samples give the interval
    (:func:`genbench.metrics.quality.fid_interval`), ``eval.fid_infinity_points`` (0: off)
    subset sizes FID-infinity (:func:`genbench.metrics.quality.fid_infinity`); both seeded by
    ``eval.seed``. Their recipes are FID's (extractor, sample counts, reference) with the
    method under ``interval`` / ``extrapolation``. One that is off or cannot be computed is None
    with its reason in ``out.missing``.
    """
    from genbench.metrics import quality

    resamples = int(eval_cfg.get("fid_ci_resamples", 200))
    points = int(eval_cfg.get("fid_infinity_points", 15))
    seed = int(eval_cfg.get("seed", 0))
    subset_fid: quality.SubsetFID | None = None

    def subsets() -> quality.SubsetFID:
        nonlocal subset_fid
        if subset_fid is None:
            subset_fid = quality.SubsetFID(reference, features, device)
        return subset_fid

    out.metrics[quality.FID_CI] = None
    if resamples == 0:
        out.missing[quality.FID_CI] = "off (eval.fid_ci_resamples=0)"
    else:
        try:
            found = quality.fid_interval(reference, features, resamples=resamples, seed=seed,
                                         subset_fid=subsets())
        except UserError as exc:
            out.missing[quality.FID_CI] = str(exc)
        else:
            out.metrics[quality.FID_CI] = [found.low, found.high]
            out.recipes[quality.FID_CI] = {**fid_recipe, "interval": found.recipe}
            out.half_sample_fids = found.half_sample_fids
    out.metrics[quality.FID_INFINITY] = out.metrics[quality.FID_AT_N] = None
    if points == 0:
        reason = "off (eval.fid_infinity_points=0)"
        out.missing[quality.FID_INFINITY] = out.missing[quality.FID_AT_N] = reason
        return
    try:
        extrapolated = quality.fid_infinity(reference, features, points=points, seed=seed,
                                            subset_fid=subsets())
    except UserError as exc:
        out.missing[quality.FID_INFINITY] = out.missing[quality.FID_AT_N] = str(exc)
        return
    out.metrics[quality.FID_INFINITY] = extrapolated.value
    out.metrics[quality.FID_AT_N] = {str(n): v for n, v in extrapolated.fid_at_n.items()}
    out.recipes[quality.FID_INFINITY] = {**fid_recipe, "extrapolation": extrapolated.recipe}


def combine_seed_uncertainty(per_seed: list[Measurements]
                             ) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """``(metrics, recipes, missing)`` of FID's uncertainty for the mean over training seeds.

    ``fid_ci``: the interval of the mean FID from each seed's half-sample FIDs (the same index
    patterns for every seed: one ``eval.seed``, one sample count;
    :func:`genbench.metrics.quality.interval_of_mean`); ``fid_at_n``: the mean FID at each N, and
    ``fid_infinity`` the intercept of the line through those means (the mean of the seeds'
    intercepts: least squares is linear in the FIDs). What cannot be combined is None with the
    first seed's reason, or with one saying that not every seed has it.
    """
    from genbench.metrics import quality

    metrics: dict[str, Any] = {}
    recipes: dict[str, Any] = {}
    missing: dict[str, str] = {}
    first, n = per_seed[0], len(per_seed)
    halves = [m.half_sample_fids for m in per_seed]
    fids = [m.metrics.get(FID_KEY) for m in per_seed]
    if all(h is not None for h in halves) and all(_finite(f) for f in fids):
        metrics[quality.FID_CI] = list(quality.interval_of_mean(fids, halves))
        recipes[quality.FID_CI] = {
            **first.recipes[quality.FID_CI],
            "over_seeds": f"interval of the mean FID over {n} training seeds: each seed's "
                          f"half-sample FIDs (same index patterns) averaged, draw by draw"}
    else:
        metrics[quality.FID_CI] = None
        missing[quality.FID_CI] = first.missing.get(
            quality.FID_CI, f"not every one of the {n} training seeds has a finite FID and "
                            f"half-sample FIDs")
    curves = [m.metrics.get(quality.FID_AT_N) for m in per_seed]
    if (all(isinstance(c, dict) and c for c in curves)
            and all(c.keys() == curves[0].keys() for c in curves)
            and all(_finite(v) for c in curves for v in c.values())):
        mean_curve = {size: float(np.mean([c[size] for c in curves])) for size in curves[0]}
        fit = quality.infinity_fit([int(size) for size in mean_curve], list(mean_curve.values()))
        metrics[quality.FID_AT_N] = mean_curve
        metrics[quality.FID_INFINITY] = fit["intercept"]
        recipe = first.recipes[quality.FID_INFINITY]
        recipes[quality.FID_INFINITY] = {
            **recipe, "extrapolation": {**recipe["extrapolation"], "fit": fit},
            "over_seeds": f"line through the mean FID_N over {n} training seeds"}
    else:
        metrics[quality.FID_AT_N] = metrics[quality.FID_INFINITY] = None
        reason = first.missing.get(quality.FID_INFINITY,
                                   f"not every one of the {n} training seeds has finite FID_N")
        missing[quality.FID_AT_N] = missing[quality.FID_INFINITY] = reason
    return metrics, recipes, missing


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


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
                 device: torch.device, out: Measurements, progress: bool = False,
                 prepared: Prepared | None = None) -> None:
    """NFE, parameters, MACs, peak memory and time per batch of this cell's generator; the time
    with the fast path of ``eval`` (``prepared``, when the caller has built it already)."""
    probe = probe_sampling(net, comps, int(eval_cfg.get("seed", 0)), device)
    out.metrics.update(profile_costs(net, comps, device, probe["nfe"]))
    out.metrics["peak_memory_mb"] = probe["peak_memory_mb"]
    out.memory = {"method": probe["peak_memory_method"], "batch_size": 1}
    out.timing = time_sampling(net, comps, eval_cfg, device, progress=progress,
                               prepared=prepared)
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


def timed_batch(net: torch.nn.Module, comps: Components, eval_cfg: dict[str, Any],
                device: torch.device, prepared: Prepared | None = None
                ) -> tuple[Callable[[], None], int]:
    """(the timed call, its batch size): one batch of ``eval.time_batch_size`` from noise to
    decoded uint8 images (call it under ``torch.no_grad()``). As the official ``--measure_time``:
    x_T is fixed before timing; z and the posterior noise are drawn inside the timed span with
    one call per step; the decode is inside the span. The networks run with the fast path of
    ``eval`` (:mod:`genbench.harness.fastpath`), or as ``prepared`` when given."""
    batch = int(eval_cfg.get("time_batch_size", 100))
    seed = int(eval_cfg.get("seed", 0))
    x_T = PerSampleRNG.for_range(seed, 0, batch, device).randn(*comps.latent_shape)
    rng = BatchRNG(batch, seed, device)
    if prepared is None:
        prepared = prepare(net, comps.latent, FastPath.from_eval(eval_cfg), device)

    def run() -> None:
        to_uint8(prepared.latent.decode(comps.sampler.sample(prepared.net, x_T, rng)))

    return run, batch


def time_sampling(net: torch.nn.Module, comps: Components, eval_cfg: dict[str, Any],
                  device: torch.device, progress: bool = False,
                  prepared: Prepared | None = None) -> dict[str, Any]:
    """Time one batch of ``eval.time_batch_size`` from noise to decoded uint8 images; with
    ``progress``, a bar over the warm-ups and trials (updated between runs, never inside one).

    The networks run with the fast path of ``eval`` (``eval.precision``, ``eval.compile``,
    ``eval.channels_last``; :mod:`genbench.harness.fastpath`), or with ``prepared``; the
    result's ``fast_path`` says which. Compilation happens in the warm-ups.
    """
    from genbench.metrics import cost
    from genbench.progress import bar

    warmup = int(eval_cfg.get("time_warmup", 10))
    trials = int(eval_cfg.get("time_trials", 300))
    if prepared is None:
        prepared = prepare(net, comps.latent, FastPath.from_eval(eval_cfg), device)
    run, batch = timed_batch(net, comps, eval_cfg, device, prepared=prepared)
    with torch.no_grad(), bar(total=warmup + trials, desc=f"time (batch of {batch})",
                              unit="batch", disable=not progress) as timed:
        timing = cost.time_per_batch(run, device, warmup=warmup, trials=trials,
                                     on_run=timed.update)
    return {**timing, "batch_size": batch, "fast_path": prepared.settings()}
