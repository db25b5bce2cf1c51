"""Untrusted files never run code (issue 10, items 1-4).

Each file a user or a results/cache folder can hand genbench that is, or used to be, a pickle is
replaced by one whose unpickling would create a marker file (``untrusted_files.Payload``). The
marker must never appear, and genbench must stop with exit status 2 and one line:

* the training state of a checkpoint (``state.safetensors`` + ``state.json`` now; an older
  genbench's ``state.pt`` is read only with ``torch.load(weights_only=True)``);
* the CIFAR-10 batches and ``batches.meta`` (MD5s of the official release checked first);
* the Inception, VGG16 and LPIPS weights (full SHA-256 checked, then ``weights_only=True``; even
  a file whose hash the user pinned never reaches torch-fidelity's ``torch.load``).
"""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY
from safetensors.torch import load_file
from untrusted_files import crafted_pickle, crafted_torch_file, one_line_error

from genbench._io import sha256_file
from genbench.errors import UserError
from genbench.training.checkpoint import (
    LEGACY_STATE,
    STATE_JSON,
    STATE_TENSORS,
    WEIGHTS,
    decode_state,
    encode_state,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)

# ----------------------------------------------------------------------- the payload works


def test_the_crafted_files_do_run_code_when_unpickled(tmp_path):
    """Without this, the tests below could pass for the wrong reason."""
    marker = tmp_path / "ran"
    with open(crafted_pickle(tmp_path / "batch", marker), "rb") as handle:
        pickle.load(handle)
    assert marker.exists()
    marker.unlink()
    torch.load(crafted_torch_file(tmp_path / "w.pth", marker), weights_only=False)
    assert marker.exists()


# ----------------------------------------------------------------------- training state


def test_state_codec_round_trips_exactly(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.9))
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    schedule.step()
    state = {
        "opt": opt.state_dict(), "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state(),
        "history": [{"loss": 0.1 + 0.2, "nan": float("nan"), "inf": float("-inf")}],
        "odd_keys": {"__tensor__": 1, 7: (1, "a"), (2, 3): None},
        "tensors": [torch.arange(6, dtype=torch.int16).reshape(2, 3),
                    torch.tensor(3.5, dtype=torch.bfloat16), torch.zeros(0, 4)],
        "flag": True, "none": None,
    }
    tree, tensors = encode_state(state)
    text = json.dumps(tree, allow_nan=False)  # pure JSON
    out = decode_state(json.loads(text), tensors)
    assert out["opt"]["param_groups"][0]["betas"] == (0.5, 0.9)
    assert list(out["opt"]["state"]) == [0, 1]  # int keys of an optimizer state
    for key in ("exp_avg", "exp_avg_sq", "step"):
        a, b = state["opt"]["state"][0][key], out["opt"]["state"][0][key]
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    assert out["schedule"] == state["schedule"]
    assert torch.equal(out["torch_rng"], state["torch_rng"])
    assert out["python_rng"] == state["python_rng"]
    assert out["numpy_rng"][0] == "MT19937"
    assert out["numpy_rng"][1].dtype == state["numpy_rng"][1].dtype
    assert (out["numpy_rng"][1] == state["numpy_rng"][1]).all()
    assert out["numpy_rng"][2:] == state["numpy_rng"][2:]
    assert out["history"][0]["loss"] == 0.1 + 0.2 and out["history"][0]["inf"] == float("-inf")
    assert out["history"][0]["nan"] != out["history"][0]["nan"]
    assert out["odd_keys"] == state["odd_keys"]
    for a, b in zip(state["tensors"], out["tensors"]):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    assert out["flag"] is True and out["none"] is None
    new = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    new.load_state_dict(out["opt"])  # loads as the original would
    with pytest.raises(TypeError):
        encode_state({"f": lambda: 0})


def test_checkpoint_holds_no_pickle(tmp_path):
    net = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path / "ckpt", {"net": net}, {"step": 2, "rng": torch.get_rng_state()})
    folder = tmp_path / "ckpt"
    assert sorted(p.name for p in folder.iterdir()) == sorted([WEIGHTS, STATE_TENSORS, STATE_JSON])
    json.loads((folder / STATE_JSON).read_text())
    load_file(str(folder / STATE_TENSORS))
    state = load_checkpoint(find_checkpoint(folder), {"net": torch.nn.Linear(3, 2)})
    assert state["step"] == 2


def _legacy_checkpoint(folder: Path, marker: Path) -> Path:
    save_weights(folder / WEIGHTS, {"net": torch.nn.Linear(3, 2)})
    crafted_torch_file(folder / LEGACY_STATE, marker)
    return folder


def test_crafted_legacy_state_pt_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    folder = _legacy_checkpoint(tmp_path / "ckpt", marker)
    assert find_checkpoint(folder) == folder  # an older genbench's checkpoint is still found
    with pytest.raises(UserError) as info:
        load_checkpoint(folder, {"net": torch.nn.Linear(3, 2)})
    message = str(info.value)
    assert not marker.exists()
    assert "\n" not in message and str(folder) in message and "delete" in message


def test_genuine_legacy_state_pt_still_resumes(tmp_path):
    """A state.pt of plain tensors and containers loads through weights_only=True."""
    folder = tmp_path / "ckpt"
    save_weights(folder / WEIGHTS, {"net": torch.nn.Linear(3, 2)})
    torch.save({"step": 5, "betas": (0.5, 0.9), "rng": torch.get_rng_state()},
               folder / LEGACY_STATE)
    state = load_checkpoint(find_checkpoint(folder), {"net": torch.nn.Linear(3, 2)})
    assert state["step"] == 5 and state["betas"] == (0.5, 0.9)


def test_crafted_state_pt_in_the_model_cache_exits_2(run_cli, tmp_path):
    """Through the CLI: a trained model's cache folder whose checkpoint was replaced."""
    proc = run_cli("run", *TINY, "experiment=a")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (model,) = (tmp_path / "results" / ".cache" / "models").glob("*/")
    (model / "meta.json").unlink()  # the model must be trained (resumed) again
    checkpoint = model / "checkpoint"
    for name in (STATE_TENSORS, STATE_JSON):
        (checkpoint / name).unlink()
    marker = tmp_path / "ran"
    crafted_torch_file(checkpoint / LEGACY_STATE, marker)
    line = one_line_error(run_cli("run", *TINY, "experiment=b"))
    assert not marker.exists()
    assert LEGACY_STATE in line and "delete" in line
    assert not list((tmp_path / "results" / "b").glob("*/result.json"))


# ----------------------------------------------------------------------- CIFAR-10


def _fake_cifar_folder(root: Path, marker: Path, crafted: str) -> Path:
    from genbench.data.datasets import CIFAR10_FOLDER

    folder = root / CIFAR10_FOLDER
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        if name == crafted:
            crafted_pickle(folder / name, marker)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / name, "wb") as handle:
                pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0],
                             "label_names": list("abcdefghij")}, handle)
    return folder


@pytest.mark.parametrize("crafted", ["data_batch_1", "test_batch", "batches.meta"])
def test_crafted_cifar_batch_is_refused_before_unpickling(tmp_path, crafted):
    from genbench.data.datasets import cifar10

    marker = tmp_path / "ran"
    _fake_cifar_folder(tmp_path / "cifar", marker, crafted)
    with pytest.raises(UserError) as info:
        cifar10(root=str(tmp_path / "cifar"), split="test")
    assert not marker.exists()
    assert "MD5" in str(info.value) and "\n" not in str(info.value)


def test_crafted_meta_is_refused_even_when_the_batches_match(tmp_path, monkeypatch):
    """The batches pass their (test-patched) MD5s; batches.meta keeps the official one."""
    import hashlib

    from torchvision.datasets import CIFAR10

    from genbench.data.datasets import cifar10

    marker = tmp_path / "ran"
    folder = _fake_cifar_folder(tmp_path / "cifar", marker, "batches.meta")

    def md5(name):
        return hashlib.md5((folder / name).read_bytes(), usedforsecurity=False).hexdigest()

    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")]
                                                for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    with pytest.raises(UserError, match="batches.meta does not match the official MD5"):
        cifar10(root=str(tmp_path / "cifar"), split="train")
    assert not marker.exists()


def test_crafted_cifar_batch_through_the_cli_exits_2(run_cli, tmp_path):
    marker = tmp_path / "ran"
    _fake_cifar_folder(tmp_path / "cifar", marker, "data_batch_1")
    line = one_line_error(run_cli("run", *TINY, "dataset=cifar10",
                                  f"dataset.root={tmp_path / 'cifar'}"))
    assert not marker.exists()
    assert "data_batch_1 does not match the official MD5" in line
    assert not list(tmp_path.glob("results/*/*/result.json"))


# ----------------------------------------------------------------------- extractor weights


@pytest.mark.parametrize("kind", ["inception", "vgg16"])
def test_crafted_weights_with_a_pinned_hash_run_nothing(tmp_path, kind):
    """Even a file whose SHA-256 the user pinned is read with weights_only=True only."""
    from genbench.metrics.features import inception_extractor, vgg16_extractor

    build = {"inception": inception_extractor, "vgg16": vgg16_extractor}[kind]
    marker = tmp_path / "ran"
    path = crafted_torch_file(tmp_path / f"{kind}.pth", marker)
    with pytest.raises(UserError) as info:
        build(str(path), sha256=sha256_file(path), progress=False)
    assert not marker.exists()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["inception", "vgg16"])
def test_crafted_weights_under_the_official_name_fail_the_full_hash(tmp_path, monkeypatch,
                                                                    kind):
    from genbench.metrics.features import inception_extractor, vgg16_extractor
    from genbench.metrics.weights import INCEPTION_V3, VGG16

    spec = {"inception": INCEPTION_V3, "vgg16": VGG16}[kind]
    build = {"inception": inception_extractor, "vgg16": vgg16_extractor}[kind]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    marker = tmp_path / "ran"
    path = crafted_torch_file(tmp_path / spec.filename, marker)
    with pytest.raises(UserError) as info:
        build(str(path), progress=False)
    assert not marker.exists()
    assert spec.sha256 in str(info.value) and len(spec.sha256) == 64


def test_crafted_lpips_files_run_nothing(tmp_path, monkeypatch):
    from genbench.metrics.weights import VGG16
    from genbench.training.lpips import LPIPS, LPIPS_LIN_FILE, resolve_lpips

    marker = tmp_path / "ran"
    vgg = crafted_torch_file(tmp_path / "w" / VGG16.filename, marker)
    lin = crafted_torch_file(tmp_path / "w" / LPIPS_LIN_FILE, marker)
    with pytest.raises(UserError, match="SHA-256"):  # the full hashes refuse them first
        resolve_lpips(str(tmp_path / "w"))
    for first, second in ((vgg, lin), (lin, vgg)):  # and weights_only=True would too
        with pytest.raises(UserError) as info:
            LPIPS.from_files(first, second)
        assert str(first) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_crafted_inception_weights_through_the_cli_exit_2(run_cli, tmp_path):
    marker = tmp_path / "ran"
    path = crafted_torch_file(tmp_path / "inception.pth", marker)
    line = one_line_error(run_cli(
        "run", *TINY, "eval.feature_extractor=inception", f"eval.inception_weights={path}",
        f"eval.inception_sha256={sha256_file(path)}"))
    assert not marker.exists()
    assert str(path) in line and "cannot be read safely" in line
    assert not list(tmp_path.glob("results/*/*/result.json"))


def test_torch_fidelity_never_opens_the_weights_file(tmp_path, monkeypatch):
    """genbench's own weights_only=True read is the only torch.load of the file."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
    from weights_files import random_weights_file

    from genbench.metrics.features import inception_extractor

    path = random_weights_file("inception", tmp_path / "inception.pth")
    opened = []
    real_load = torch.load

    def spy(source, *args, **kwargs):
        opened.append((source, kwargs.get("weights_only")))
        return real_load(source, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    inception_extractor(str(path), sha256=sha256_file(path), progress=False)
    assert tf_inception.torch.load is spy  # the module torch-fidelity calls through
    on_file = [w for source, w in opened if isinstance(source, (str, Path))
               and Path(source) == path]
    assert on_file == [True]
    assert all(not isinstance(source, (str, Path)) for source, w in opened if w is False)


def test_wrong_pinned_hash_format_is_a_user_error(tmp_path):
    from genbench.metrics.weights import verify_sha256

    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(UserError, match="64 hex digits"):
        verify_sha256(path, sha256="abc", sha256_prefix=None)
