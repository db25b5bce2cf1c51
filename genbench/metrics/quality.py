"""Sample-quality metrics, staged as features -> statistics (cached) -> numbers.

* FID, Heusel et al. 2017 ("GANs trained by a two time-scale update rule converge to a local
  Nash equilibrium", Eq. 6): ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)), computed by
  torch-fidelity's ``fid_statistics_to_metric`` (``torch_fidelity/metric_fid.py``), which takes
  Tr((S_r S_g)^(1/2)) as the sum of square roots of the eigenvalues of S_r S_g.
* KID, Binkowski et al. 2018 ("Demystifying MMD GANs"): unbiased MMD^2 with the cubic polynomial
  kernel over random subsets, via torch-fidelity's ``kid_features_to_metric``.
* Precision and recall, Kynkäänniemi et al. 2019 ("Improved precision and recall metric for
  assessing generative models", Sec. 2): k-NN balls (k = 3) around real and generated features;
  precision = share of generated samples inside some real ball, recall = share of real samples
  inside some generated ball. Computed by torch-fidelity's ``prc_features_to_metric``
  (``torch_fidelity/metric_prc.py``), the StyleGAN2-ADA protocol that WaveDiff and LDDGAN report.

The stages are pure functions; reference statistics are cached by :class:`ReferenceStatsCache`.
Each registered metric is a small callable ``(real, fake) -> dict[str, float]`` with the keys
below. As in torch-fidelity's registry, its metadata (read by :func:`metric_spec`) says which
feature extractor it wants (a key of :data:`genbench.metrics.features.PRETRAINED`), which result
keys it returns, and whether it needs the features themselves or only their statistics; the
harness builds extractors and fetches reference data from that metadata alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genbench import _io, registry
from genbench.errors import UserError, notice
from genbench.registry import register

if TYPE_CHECKING:
    from genbench.metrics.features import FeatureExtractor

# Result keys (the keys of records' "metrics").
FID = "fid"
KID = "kid_mean"
KID_STD = "kid_std"
PRECISION = "precision"
RECALL = "recall"
F_SCORE = "f_score"
# Precision/recall on the Inception's pool features (k = 3, the convention of the ADM evaluator,
# Dhariwal and Nichol 2021, openai/guided-diffusion evaluations/evaluator.py): when no VGG16
# weights are present. Never the same numbers as VGG16 precision/recall, so never the same keys.
PRECISION_INCEPTION = "precision[inception]"
RECALL_INCEPTION = "recall[inception]"

# Feature extractors the metrics want (keys of features.PRETRAINED).
INCEPTION = "inception"
VGG16 = "vgg16"

# What a metric takes from each side: the feature sets, or only their mean and covariance.
FEATURES = "features"
STATISTICS = "statistics"


@dataclass(frozen=True)
class Statistics:
    """Mean and covariance of a feature set (float64), and how many samples made them."""

    mu: np.ndarray
    sigma: np.ndarray
    num_samples: int


Features = torch.Tensor | np.ndarray
FeaturesOrStatistics = torch.Tensor | np.ndarray | Statistics


def _as_features(features: Features, what: str = "features") -> torch.Tensor:
    tensor = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if tensor.dim() != 2 or tensor.shape[0] < 2:
        raise UserError(f"{what} must be a [N, D] array with N >= 2, got {tuple(tensor.shape)}")
    return tensor


def statistics(features: Features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``np.cov``, rows = samples) of ``features``, in float64."""
    array = _as_features(features).numpy()
    return array.mean(axis=0), np.cov(array, rowvar=False)


def as_statistics(value: FeaturesOrStatistics) -> Statistics:
    """``value`` itself if it is :class:`Statistics`, else the statistics of a feature array."""
    if isinstance(value, Statistics):
        return value
    mu, sigma = statistics(value)
    return Statistics(mu, sigma, int(np.shape(value)[0]))


def fid_from_statistics(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, Eq. 6).

    Delegates to torch-fidelity's ``fid_statistics_to_metric``; inputs are cast to float64.
    """
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    stats = [np.asarray(a, dtype=np.float64) for a in (mu1, sigma1, mu2, sigma2)]
    mu1, sigma1, mu2, sigma2 = stats
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise UserError(
            f"FID statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} "
            f"vs {sigma2.shape}; were they made by the same feature extractor?"
        )
    out = fid_statistics_to_metric(
        {"mu": mu1, "sigma": sigma1}, {"mu": mu2, "sigma": sigma2}, False
    )
    return float(out[KEY_METRIC_FID])


def fid(real: FeaturesOrStatistics, fake: FeaturesOrStatistics) -> float:
    """FID between two feature sets (or precomputed :class:`Statistics`)."""
    r, g = as_statistics(real), as_statistics(fake)
    return fid_from_statistics(r.mu, r.sigma, g.mu, g.sigma)


def precision_recall(
    real_features: Features,
    fake_features: Features,
    k: int = 3,
    *,
    batch_size: int = 10000,
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with ``k`` nearest neighbours.

    A sample lies in a set's manifold if it is within the distance to the k-th nearest neighbour
    (self excluded) of some member. Uses torch-fidelity's row-batched computation (its
    ``save_cpu_ram`` path), so memory stays bounded by ``batch_size`` rows of distances.
    """
    from torch_fidelity.metric_prc import (
        KEY_METRIC_PRECISION,
        KEY_METRIC_RECALL,
        prc_features_to_metric,
    )

    real = _as_features(real_features, "real features")
    fake = _as_features(fake_features, "fake features")
    _check_same_dims(real, fake)
    if k < 1 or k >= min(real.shape[0], fake.shape[0]):
        raise UserError(f"precision/recall needs 1 <= k < number of samples, got k={k}")
    # torch-fidelity's convention: features_1 = generated, features_2 = real.
    out = prc_features_to_metric(
        fake,
        real,
        prc_neighborhood=k,
        prc_batch_size=batch_size,
        save_cpu_ram=True,
        verbose=False,
    )
    return float(out[KEY_METRIC_PRECISION]), float(out[KEY_METRIC_RECALL])


def kid(
    real_features: Features,
    fake_features: Features,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 2020,
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): mean and std of the unbiased MMD^2 over random subsets.

    Subsets of ``min(subset_size, N)`` samples are drawn by ``numpy.random.RandomState(seed)``
    (torch-fidelity's ``kid_features_to_metric``, cubic polynomial kernel).
    """
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kid_features_to_metric,
    )

    real = _as_features(real_features, "real features")
    fake = _as_features(fake_features, "fake features")
    _check_same_dims(real, fake)
    size = min(subset_size, real.shape[0], fake.shape[0])
    out = kid_features_to_metric(
        fake, real, kid_subsets=subsets, kid_subset_size=size, rng_seed=seed, verbose=False
    )
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


def _check_same_dims(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.shape[1] != fake.shape[1]:
        raise UserError(
            f"real features have {real.shape[1]} dims, fake {fake.shape[1]}; "
            f"use one feature extractor for both"
        )


# --------------------------------------------------------------------------------------------
# Reference statistics cache.


@dataclass(frozen=True)
class ReferenceKey:
    """What reference statistics depend on: data, resolution, extractor, weights, sample count."""

    dataset: str
    split: str
    resolution: int
    extractor: str  # extractor name, e.g. "inception-v3-compat"
    weights_sha256: str
    num_samples: int  # -1: all images of the split
    source: str = ""  # hash of anything else that identifies the data (files, checksums)

    def digest(self) -> str:
        """SHA-256 of the key's fields."""
        return _io.json_hash(asdict(self), length=64)

    def filename(self) -> str:
        """A readable, unique file name for the cache entry."""
        stem = f"{self.dataset}-{self.split}-{self.resolution}px-{self.extractor}"
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{stem}-n{self.num_samples}")
        return f"{stem}-{self.digest()[:12]}.npz"


def _contents_sha256(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array but ``sha256`` itself: name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        if name == "sha256":
            continue
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ReferenceStats:
    """Cached reference statistics, and the features when they were kept."""

    statistics: Statistics
    features: np.ndarray | None
    path: Path


class ReferenceStatsCache:
    """Reference statistics (and optionally features) as ``.npz`` files in ``cache_dir``.

    Files are written atomically (:func:`genbench._io.atomic_write_with`) and carry their key
    and a SHA-256 of their contents (key, statistics, features), both checked on load: a file
    that cannot be read or does not match is computed again, with one line saying so. The files
    are read with ``allow_pickle=False``.
    """

    def __init__(self, cache_dir: str | Path) -> None:
        self.cache_dir = Path(cache_dir)

    def path(self, key: ReferenceKey) -> Path:
        """Where ``key``'s entry lives."""
        return self.cache_dir / key.filename()

    def load(self, key: ReferenceKey) -> ReferenceStats | None:
        """The cached entry for ``key``, or None."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            if str(arrays["key"]) != json.dumps(asdict(key), sort_keys=True):
                return None
            if str(arrays.get("sha256", "")) != _contents_sha256(arrays):
                raise ValueError("its contents do not match the SHA-256 recorded when written")
            stats = Statistics(arrays["mu"], arrays["sigma"], int(arrays["num_samples"]))
        except Exception as exc:  # zip/CRC/format errors of many kinds: numpy, zipfile, zlib
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            notice(f"cached reference statistics {path} cannot be used ({reason}); "
                   f"computing them again")
            return None
        return ReferenceStats(stats, arrays.get("features"), path)

    def save(
        self, key: ReferenceKey, statistics: Statistics, features: np.ndarray | None = None
    ) -> Path:
        """Write ``key``'s entry atomically; return its path."""
        path = self.path(key)
        arrays = {
            "key": np.array(json.dumps(asdict(key), sort_keys=True)),
            "mu": np.asarray(statistics.mu, np.float64),
            "sigma": np.asarray(statistics.sigma, np.float64),
            "num_samples": np.array(statistics.num_samples),
        }
        if features is not None:
            arrays["features"] = np.asarray(features)
        arrays["sha256"] = np.array(_contents_sha256(arrays))
        return _io.atomic_write_with(path, lambda tmp: np.savez(tmp, **arrays))

    def get_or_compute(
        self,
        key: ReferenceKey,
        compute_features: Callable[[], Features],
        *,
        keep_features: bool = False,
    ) -> ReferenceStats:
        """The cached entry, or compute features, cache their statistics and return them.

        With ``keep_features`` (needed for precision/recall and KID) the features are stored too;
        an entry cached without them is recomputed.
        """
        cached = self.load(key)
        if cached is not None and (cached.features is not None or not keep_features):
            return cached
        features = _as_features(compute_features(), "reference features")
        if key.num_samples >= 0 and features.shape[0] != key.num_samples:
            raise UserError(
                f"reference features have {features.shape[0]} samples, key says "
                f"{key.num_samples}; pass the number of reference images in the key"
            )
        stats = as_statistics(features)
        kept = features.numpy().astype(np.float32) if keep_features else None
        return ReferenceStats(stats, kept, self.save(key, stats, kept))

    def features(
        self,
        identity: dict[str, Any],
        extractor: FeatureExtractor,
        limit: int | None,
        compute_features: Callable[[], Features],
    ) -> torch.Tensor:
        """Cached reference features (float64) for a dataset ``identity`` dict.

        ``identity`` is a dataset's ``identity()`` (name, split, resolution, and its source);
        ``limit`` the number of reference images (None: all). The key is built by
        :func:`reference_key`.
        """
        key = reference_key(identity, extractor, limit)
        entry = self.get_or_compute(key, compute_features, keep_features=True)
        return torch.from_numpy(np.asarray(entry.features, dtype=np.float64))


def reference_key(
    identity: dict[str, Any], extractor: FeatureExtractor, limit: int | None
) -> ReferenceKey:
    """A :class:`ReferenceKey` from a dataset identity dict and an extractor."""
    return ReferenceKey(
        dataset=str(identity.get("name", "data")),
        split=str(identity.get("split", "")),
        resolution=int(identity.get("resolution", 0) or 0),
        extractor=extractor.name,
        weights_sha256=str(extractor.recipe.get("sha256", "noweights")),
        num_samples=-1 if limit is None else int(limit),
        source=_io.json_hash(identity, length=64),
    )


# --------------------------------------------------------------------------------------------
# Registered metrics: factories returning (real, fake) -> {key: value}.


def _fid_metric(real: FeaturesOrStatistics, fake: FeaturesOrStatistics) -> dict[str, float]:
    return {FID: fid(real, fake)}


def _prc_metric(real: Features, fake: Features, *, k: int, batch_size: int) -> dict[str, float]:
    precision, recall = precision_recall(real, fake, k, batch_size=batch_size)
    return {PRECISION: precision, RECALL: recall}


def _kid_metric(
    real: Features, fake: Features, *, subsets: int, subset_size: int, seed: int
) -> dict[str, float]:
    mean, std = kid(real, fake, subsets=subsets, subset_size=subset_size, seed=seed)
    return {KID: mean, KID_STD: std}


MetricFn = Callable[..., dict[str, float]]


@register(
    "metric",
    "fid",
    paper="Heusel et al. 2017, Eq. 6",
    description="Frechet distance between Gaussian fits of real and generated features",
    extractor=INCEPTION,
    keys=(FID,),
    needs="statistics",
)
def fid_metric() -> MetricFn:
    """FID: ``(real, fake) -> {"fid": ...}``; each side is features [N, D] or Statistics."""
    return _fid_metric


@register(
    "metric",
    "precision_recall",
    paper="Kynkaanniemi et al. 2019, Sec. 2 (StyleGAN2-ADA protocol, k=3)",
    description="k-NN manifold precision and recall of generated vs real features",
    extractor=VGG16,
    keys=(PRECISION, RECALL),
    needs="features",
    fallback=INCEPTION,  # no VGG16 weights: Inception pool features, as the ADM evaluator does
    fallback_keys=(PRECISION_INCEPTION, RECALL_INCEPTION),
)
def precision_recall_metric(k: int = 3, batch_size: int = 10000) -> MetricFn:
    """Precision/recall: ``(real, fake) -> {"precision": ..., "recall": ...}`` on features."""
    return partial(_prc_metric, k=k, batch_size=batch_size)


@register(
    "metric",
    "kid",
    paper="Binkowski et al. 2018, Sec. 3",
    description="Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel)",
    extractor=INCEPTION,
    keys=(KID, KID_STD),
    needs="features",
)
def kid_metric(subsets: int = 100, subset_size: int = 1000, seed: int = 2020) -> MetricFn:
    """KID: ``(real, fake) -> {"kid_mean": mean, "kid_std": std}`` on features."""
    return partial(_kid_metric, subsets=subsets, subset_size=subset_size, seed=seed)


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric's metadata: which features it needs and which keys it returns."""

    name: str
    extractor: str  # a key of genbench.metrics.features.PRETRAINED
    keys: tuple[str, ...]  # result keys, in the order they are recorded
    needs: str  # FEATURES or STATISTICS
    # Another pretrained extractor to use when ``extractor``'s weights are missing, and the keys
    # (one per key) its numbers are recorded under: they are not the same metric.
    fallback: str | None = None
    fallback_keys: tuple[str, ...] = ()


def metric_spec(name: str) -> MetricSpec:
    """The validated metadata of registered metric ``name`` (unknown names suggest close ones)."""
    entry = registry.get("metric", name)
    extractor, keys = entry.extra.get("extractor"), tuple(entry.extra.get("keys") or ())
    needs = entry.extra.get("needs", FEATURES)
    fallback = entry.extra.get("fallback")
    fallback_keys = tuple(entry.extra.get("fallback_keys") or ())
    if (not isinstance(extractor, str) or not keys or needs not in (FEATURES, STATISTICS)
            or (fallback is not None and (not isinstance(fallback, str)
                                          or len(fallback_keys) != len(keys)
                                          or set(fallback_keys) & set(keys)))):
        raise UserError(
            f"metric {name!r} (from {entry.source}) must be registered with extractor=NAME, "
            f"keys=(...) and needs='{FEATURES}' or '{STATISTICS}' (and a fallback=NAME with "
            f"as many fallback_keys=(...), other than keys)"
        )
    return MetricSpec(name, extractor, keys, needs, fallback, fallback_keys)


def compute(
    name: str, real: FeaturesOrStatistics, fake: FeaturesOrStatistics, **options: Any
) -> dict[str, float]:
    """Build registered metric ``name`` and apply it: ``-> {result key: value}``.

    ``options`` that the metric's factory does not take are ignored, so one evaluation config
    (e.g. ``k`` for precision/recall) can feed every metric.
    """
    spec, entry = metric_spec(name), registry.get("metric", name)
    accepted = set(entry.arguments())
    metric = entry.factory(**{k: v for k, v in options.items() if k in accepted})
    values = metric(real, fake)
    if set(values) != set(spec.keys):
        raise UserError(f"metric {name!r} returned keys {sorted(values)}, its registration "
                        f"declares {list(spec.keys)}")
    return values
