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
* FID's uncertainty, from the generated features already computed: a 95% interval for the
  sampling of the generated set by half-samples (:func:`fid_interval`, delete-d jackknife with
  d = n/2, Shao and Wu 1989) and FID-infinity, FID extrapolated linearly in 1/N (Chong and
  Forsyth 2020, Sec. 3.1; :func:`fid_infinity`), both on :class:`SubsetFID`, which computes the
  FID of a subset with one symmetric eigenvalue problem and no matrix square root.

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


def sharded_statistics(features: Features) -> Statistics:
    """The :class:`Statistics` of the feature sets of all ranks together (this rank's block
    ``features``; :mod:`genbench.distributed`), equal to those of their concatenation.

    Reduced as float64 sums, never as averaged means or covariances: first the count and
    ``sum x`` (all_reduce) give the mean, then ``sum (x - mu)(x - mu)^T`` (all_reduce) gives
    the unbiased covariance ``/ (n - 1)``, as ``np.cov`` forms it (two passes: no cancellation
    in ``sum x x^T - n mu mu^T``). In a world of one it is :func:`as_statistics`.
    """
    from genbench import distributed

    if not distributed.current().distributed:
        return as_statistics(features)
    x = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if x.dim() != 2:
        raise UserError(f"features must be a [N, D] array, got {tuple(x.shape)}")
    head = torch.cat([torch.tensor([float(x.shape[0])], dtype=torch.float64), x.sum(dim=0)])
    head = distributed.all_reduce_sum(head)
    n = int(head[0])
    if n < 2:
        raise UserError(f"features of all ranks must number N >= 2, got {n}")
    mu = head[1:] / n
    centred = x - mu
    scatter = distributed.all_reduce_sum(centred.T @ centred)
    return Statistics(mu.numpy(), (scatter / (n - 1)).numpy(), n)


def gathered_features(features: Features) -> torch.Tensor | None:
    """The feature sets of all ranks concatenated in rank order (the sample order, with
    :meth:`genbench.distributed.Context.shard`'s blocks; no padding), on rank 0; None on the
    other ranks. In a world of one, ``features`` itself."""
    from genbench import distributed

    if not distributed.current().distributed:
        return torch.as_tensor(features)
    blocks = distributed.gather_objects(torch.as_tensor(features).detach().cpu(),
                                        to_main_only=True)
    return None if blocks is None else torch.cat(blocks)


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


# --------------------------------------------------------------------------------------------
# Uncertainty of FID: subsets of the generated features against fixed reference statistics.

FID_CI = "fid_ci"
FID_INFINITY = "fid_infinity"
FID_AT_N = "fid_at_n"
CI_LEVEL = 0.95
CI_MIN_SAMPLES = 4  # two half-samples of at least two samples each (a covariance needs two)
CI_MIN_RESAMPLES = 20  # the 2.5th and 97.5th percentiles of fewer values are the extremes
INFINITY_MIN_SAMPLES = 10
OFFICIAL_INFINITY_MIN_N = 5000  # FID_IS_infinity score_infinity.py: linspace(5000, num_im, 15)


class SubsetFID:
    """FID of subsets (rows repeated or not) of one generated feature set against fixed
    reference statistics, each far cheaper than the standard formula.

    Heusel et al. 2017, Eq. 6: ``||mu_r - mu_g||^2 + Tr S_r + Tr S_g - 2 Tr (S_r S_g)^(1/2)``.
    ``Tr (S_r S_g)^(1/2)`` is the sum of the square roots of the eigenvalues of ``S_r S_g``
    (torch-fidelity's ``fid_statistics_to_metric`` computes it so). For a subset with
    multiplicities ``c`` (n = sum c rows), centred rows ``Z`` and ``W = diag(c)``,
    ``S_g = Z^T W Z / (n - 1)``, and the nonzero eigenvalues of ``S_r S_g`` are those of the
    symmetric PSD matrices

    * ``W^1/2 Z S_r Z^T W^1/2 / (n - 1)`` (one row and column per distinct row of the subset),
      built from the Gram matrix ``G = X S_r X^T`` of the whole set (computed once), or
    * ``S_r^1/2 S_g S_r^1/2`` (d x d, with ``S_r^1/2`` from one ``eigh``),

    whichever is smaller; each subset then costs one ``eigvalsh`` of that size and no matrix
    square root. Eigenvalues below zero (rounding) count as zero. The arithmetic is float64, on
    ``device`` (a GPU makes 50,000 x 2048-d subsets cheap).
    """

    def __init__(self, reference: Statistics, features: Features,
                 device: str | torch.device | None = None) -> None:
        fake = _as_features(features, "generated features")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        mu_r = torch.as_tensor(np.asarray(reference.mu, np.float64), device=self.device)
        sigma_r = torch.as_tensor(np.asarray(reference.sigma, np.float64), device=self.device)
        if mu_r.shape != (fake.shape[1],) or sigma_r.shape != (fake.shape[1],) * 2:
            raise UserError(
                f"reference statistics have {tuple(mu_r.shape)} / {tuple(sigma_r.shape)}, the "
                f"generated features {fake.shape[1]} dims; use one feature extractor for both")
        fake = fake.to(self.device)
        self.n, self.dims = fake.shape
        mean = fake.mean(dim=0)
        self._x = fake - mean  # centred once: better conditioned Gram matrices
        self._offset = mean - mu_r  # mu_g - mu_r = offset + (subset mean of the centred rows)
        self._norms = (self._x * self._x).sum(dim=1)
        self._trace_r = float(torch.trace(sigma_r))
        self._sigma_r = sigma_r
        self._gram: torch.Tensor | None = None  # X S_r X^T
        self._y: torch.Tensor | None = None  # X S_r^1/2

    def _gram_matrix(self) -> torch.Tensor:
        if self._gram is None:
            self._gram = self._x @ self._sigma_r @ self._x.T
        return self._gram

    def _whitened(self) -> torch.Tensor:
        if self._y is None:
            values, vectors = torch.linalg.eigh(self._sigma_r)
            root = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
            self._y = self._x @ root
        return self._y

    def __call__(self, index: np.ndarray | torch.Tensor) -> float:
        """FID of the rows ``index`` (repeats count as multiplicities) of the generated set."""
        index = torch.as_tensor(np.asarray(index), dtype=torch.long, device=self.device)
        rows, counts = torch.unique(index, return_counts=True)
        c = counts.to(torch.float64)
        n = float(c.sum())
        if n < 2:
            raise UserError(f"FID of a subset needs at least 2 samples, got {int(n)}")
        x = self._x[rows]
        shift = (c @ x) / n  # subset mean - whole-set mean
        diff = self._offset + shift
        trace_g = (float(c @ self._norms[rows]) - n * float(shift @ shift)) / (n - 1)
        if len(rows) <= self.dims:
            gram = self._gram_matrix()[rows][:, rows]
            a = (gram @ c) / n
            centred = gram - a[:, None] - a[None, :] + float(c @ a) / n
            root_c = c.sqrt()
            matrix = root_c[:, None] * centred * root_c[None, :] / (n - 1)
        else:
            y = self._whitened()[rows]
            y_mean = (c @ y) / n
            matrix = ((y * c[:, None]).T @ y - n * torch.outer(y_mean, y_mean)) / (n - 1)
        eigenvalues = torch.linalg.eigvalsh(0.5 * (matrix + matrix.T))
        trace_root = float(eigenvalues.clamp(min=0).sqrt().sum())
        return float(diff @ diff) + self._trace_r + trace_g - 2.0 * trace_root


def _rng(seed: int, stream: int) -> np.random.Generator:
    """numpy's generator for ``(eval.seed, stream)``: 1 = FID interval, 2 = FID-infinity."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


@dataclass(frozen=True)
class FidInterval:
    """A 95% interval of FID over the sampling of the generated set (:func:`fid_interval`)."""

    fid: float  # the FID of the whole generated set
    low: float
    high: float
    half_sample_fids: np.ndarray  # the FID of each half-sample, in draw order
    recipe: dict[str, Any]


def fid_interval(reference: Statistics, features: Features, *, resamples: int, seed: int,
                 level: float = CI_LEVEL, device: str | torch.device | None = None,
                 subset_fid: SubsetFID | None = None) -> FidInterval:
    """A ``level`` interval of FID for the sampling uncertainty of the generated set, by
    half-sampling, the reference statistics held fixed.

    ``resamples`` half-samples (n // 2 rows without replacement, drawn by numpy's generator
    seeded with ``(seed, 1)``) each give an FID; the interval is the FID of the whole set plus
    the 2.5th and 97.5th percentiles (``level`` = 0.95) of the half-sample FIDs' deviations
    from their mean. This is the delete-d jackknife with d = n/2, whose variance factor
    (n - d)/d is 1 (Shao and Wu 1989, "A general theory for jackknife variance estimation",
    Ann. Statist. 17(3)): the half-samples' spread estimates the spread of FID over fresh sets
    of n generated samples.

    A percentile bootstrap (rows drawn with replacement) is not used: FID falls with the number
    of distinct samples (Chong and Forsyth 2020, Sec. 3), and a bootstrap resample holds about
    63% distinct rows, so its FIDs sit above the FID of the set (by more than their spread; on
    Gaussian features with d = 256, n = 128, by 67 FID points with a spread six times the true
    one). Centring on the set's FID removes the shift the half-samples share.
    """
    if resamples < 1:
        raise UserError(f"the FID interval needs resamples >= 1, got {resamples}")
    subset_fid = subset_fid or SubsetFID(reference, features, device)
    n = subset_fid.n
    if n < CI_MIN_SAMPLES:
        raise UserError(f"the FID interval needs at least {CI_MIN_SAMPLES} generated samples "
                        f"(two half-samples of two), got {n}")
    whole = subset_fid(np.arange(n))
    rng = _rng(seed, 1)
    half = n // 2
    fids = np.array([subset_fid(rng.permutation(n)[:half]) for _ in range(resamples)])
    tail = 100 * (1 - level) / 2
    low, high = whole + np.percentile(fids - fids.mean(), [tail, 100 - tail])
    recipe = {
        "method": "half-sampling (delete-n/2 jackknife, Shao and Wu 1989): FID of the whole "
                  "set + percentiles of the half-sample FIDs' deviations from their mean",
        "level": level, "resamples": int(resamples), "half_size": int(half), "seed": int(seed),
        "rng": "numpy default_rng(SeedSequence([eval.seed, 1]))",
        "reference_statistics": "held fixed (mean and covariance of the reference set)",
        "half_sample_fid_mean": float(fids.mean()), "half_sample_fid_std": float(fids.std()),
    }
    return FidInterval(whole, float(low), float(high), fids, recipe)


def interval_of_mean(fids: list[float], half_sample_fids: list[np.ndarray],
                     level: float = CI_LEVEL) -> tuple[float, float]:
    """The interval of the mean FID of several generated sets (one per training seed), from
    each set's half-sample FIDs drawn with the same index patterns (:func:`fid_interval` with
    one seed and sample count): the mean FID plus the percentiles of the mean deviation."""
    deviations = np.mean([h - h.mean() for h in half_sample_fids], axis=0)
    tail = 100 * (1 - level) / 2
    low, high = float(np.mean(fids)) + np.percentile(deviations, [tail, 100 - tail])
    return float(low), float(high)


def infinity_sizes(n: int, points: int) -> list[int]:
    """Subset sizes for FID-infinity: ``points`` sizes linearly spaced from the lowest to n.

    The official code (github.com/mchong6/FID_IS_infinity, ``score_infinity.py``) spaces 15
    sizes from 5,000 to 50,000. The lowest size here is 5,000 or n/5, whichever is smaller:
    FID at a few hundred samples in 2,048 dimensions (n/10 of 1,000) is far from the regime
    where FID is linear in 1/N. Repeated sizes (small n) are dropped.
    """
    lowest = max(2, min(OFFICIAL_INFINITY_MIN_N, n // 5))
    return sorted({int(s) for s in np.linspace(lowest, n, points).astype(np.int64)})


def infinity_fit(sizes: list[int], fids: list[float]) -> dict[str, float]:
    """Least squares of ``FID_N = intercept + slope / N`` (Chong and Forsyth 2020, Sec. 3.1):
    ``{"intercept", "slope", "r2"}``; the intercept is FID-infinity."""
    x = 1.0 / np.asarray(sizes, dtype=np.float64)
    y = np.asarray(fids, dtype=np.float64)
    design = np.stack([np.ones_like(x), x], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - (intercept + slope * x)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual ** 2).sum()) / total if total > 0 else 1.0
    return {"intercept": float(intercept), "slope": float(slope), "r2": r2}


@dataclass(frozen=True)
class FidInfinity:
    """FID extrapolated to infinitely many generated samples (:func:`fid_infinity`)."""

    value: float
    fid_at_n: dict[int, float]
    fit: dict[str, float]
    recipe: dict[str, Any]


def fid_infinity(reference: Statistics, features: Features, *, points: int = 15, seed: int = 0,
                 device: str | torch.device | None = None,
                 subset_fid: SubsetFID | None = None) -> FidInfinity:
    """FID-infinity (Chong and Forsyth 2020, "Effectively unbiased FID and Inception Score and
    where to find them", CVPR, Sec. 3.1): FID_N at ``points`` subset sizes N
    (:func:`infinity_sizes`), each a fresh random subset without replacement as in the official
    ``calculate_FID_infinity`` (shuffle, take the first N; numpy's generator seeded with
    ``(seed, 2)``), a least-squares line FID_N = a + b/N (:func:`infinity_fit`), FID-infinity =
    a. The reference statistics are fixed.

    The extrapolation assumes FID_N is linear in 1/N, which Chong and Forsyth show for N in the
    thousands; with 1,000 samples in 2,048 dimensions it is rough (the fit's ``r2`` is
    recorded), and it says nothing about the uncertainty of the extrapolated value.
    """
    subset_fid = subset_fid or SubsetFID(reference, features, device)
    n = subset_fid.n
    sizes = infinity_sizes(n, points)
    if n < INFINITY_MIN_SAMPLES or len(sizes) < 2:
        raise UserError(f"FID-infinity needs at least {INFINITY_MIN_SAMPLES} generated samples "
                        f"and 2 subset sizes, got {n} samples and sizes {sizes}")
    rng = _rng(seed, 2)
    fids = [subset_fid(rng.permutation(n)[:size]) for size in sizes]
    fit = infinity_fit(sizes, fids)
    recipe = {
        "method": "Chong and Forsyth 2020, Sec. 3.1: least squares of FID_N = a + b/N over "
                  "random subsets without replacement; FID-infinity = a",
        "points": int(points), "sizes": sizes, "seed": int(seed),
        "rng": "numpy default_rng(SeedSequence([eval.seed, 2]))", "fit": fit,
    }
    return FidInfinity(fit["intercept"], dict(zip(sizes, fids)), fit, recipe)


def kid_subset_size(num_real: int, num_fake: int, requested: int = 1000) -> int:
    """The KID subset size used: ``min(requested, num_real, num_fake)`` (torch-fidelity needs
    subset size <= both counts; StyleGAN2-ADA's ``kernel_inception_distance.py`` and clean-fid
    take the same minimum)."""
    return min(int(requested), int(num_real), int(num_fake))
