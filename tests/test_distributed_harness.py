"""The harness's training under torch.distributed (gloo, 2 CPU processes).

A tiny KL-autoencoder cell with an adversarially trained denoiser (the autoencoder's PatchGAN
off: its per-rank BatchNorm statistics are the one intended difference to one process, see
tests/test_distributed_training.py): ``fit_latent`` and ``train_or_load`` run on both ranks of
one group; rank 0 alone locks the caches, decides, writes the weights, meta and step cost, and
both ranks end with identical weights equal (to float32 tolerance) to the one-process result.
Rank 1 writes nothing (every file creation, rename, removal and folder creation of its process
under the test folder is watched by an audit hook). A second call finds both models cached on
every rank.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from gloo_group import join, spawn

from genbench import distributed

OVERRIDES = ["latent=kl_tiny", "latent.steps=4", "latent.batch_size=8", "latent.disc_start=100",
             "latent.perceptual_weight=0", "backbone=ncsnpp_tiny", "train=tiny",
             "train.batch_size=16", "train.budget=images:32", "train.adversarial.lazy_reg=2"]

_WRITE_EVENTS = ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree",
                 "os.truncate", "os.chmod")


def _watch_writes(root: str, seen: list[str]) -> None:
    """Record every write-like operation of this process on a path under ``root``."""

    def under(path) -> bool:
        try:
            full = os.path.abspath(os.fsdecode(path))
            return full == root or full.startswith(root + os.sep)
        except TypeError:  # a file descriptor
            return False

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and under(args[0]):
                seen.append(f"open {args[0]}")
        elif event in _WRITE_EVENTS and args and under(args[0]):
            seen.append(f"{event} {args[0]}")

    sys.addaudithook(hook)


def _cell(cache: Path) -> dict:
    """Fit the latent and train (or load) the denoiser; the weights and what each call said."""
    from genbench.config import compose_plain
    from genbench.harness.artifacts import ModelCache
    from genbench.harness.build import build_components
    from genbench.harness.latent import fit_latent
    from genbench.harness.train import train_or_load

    cfg = compose_plain(OVERRIDES)
    out: dict = {"weights": {}, "info": []}
    for attempt in ("first", "again"):
        comps = build_components(cfg)
        latent_info = fit_latent(comps, cache, torch.device("cpu"), progress=False)
        net, info = train_or_load(cfg, comps, ModelCache(cache), torch.device("cpu"),
                                  progress=False)
        ae = comps.latent.autoencoder
        out["weights"].update({f"{attempt}/G/{k}": v.detach().clone()
                               for k, v in net.state_dict().items()})
        out["weights"].update({f"{attempt}/AE/{k}": v.detach().clone()
                               for k, v in ae.state_dict().items()})
        out["info"].append({"latent": latent_info["source"], "model": info["source"],
                            "steps": info.get("steps"), "latent_steps": latent_info.get("steps"),
                            "scale": latent_info.get("scale_factor")})
    return out


def _worker(rank: int, world: int, port: int, root: str) -> None:
    join(rank, world, port)
    writes: list[str] = []
    if rank == 1:
        _watch_writes(os.path.abspath(root), writes)
    out = _cell(Path(root) / "cache")
    result = {"info": out["info"], "writes": list(writes)}
    distributed.barrier()
    # outside the watched folder: rank 1's own result files are not the cell's writes
    out_dir = os.path.abspath(root) + "-out"
    os.makedirs(out_dir, exist_ok=True)
    torch.save(out["weights"], os.path.join(out_dir, f"rank{rank}.pt"))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(result, fh)
    distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp-harness")
    root = base / "run"
    root.mkdir()
    spawn(_worker, 2, str(root))
    out = base / "run-out"
    weights = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    logs = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return root, weights, logs


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    torch.set_num_threads(1)
    return _cell(tmp_path_factory.mktemp("single") / "cache")


def _close(a: dict, b: dict, atol: float = 5e-5) -> None:
    """float32 tolerance. An attention layer's key bias has a zero gradient in exact arithmetic
    (softmax does not change when q.b_k is added to every logit of a row): its gradient is
    rounding noise, which Adam's first steps scale to the learning rate, so the two runs'
    rounding orders leave it up to ~2e-4 apart; it is checked at 5e-4."""
    assert a.keys() == b.keys()
    for k in a:
        tol = 5e-4 if k.endswith("to_k.bias") else atol
        torch.testing.assert_close(a[k], b[k], atol=tol, rtol=1e-4, msg=k)


def test_ranks_identical_and_equal_to_one_process(two_ranks, one_rank):
    _, weights, logs = two_ranks
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k  # rank 1 loaded rank 0's files
    _close(weights[0], one_rank["weights"])
    trained, cached = logs[0]["info"]
    assert trained["latent"] == trained["model"] == "trained"
    assert cached["latent"] == cached["model"] == "cache"
    assert trained["steps"] == 2 and trained["latent_steps"] == 4
    assert logs[1]["info"] == logs[0]["info"]  # rank 0's info, broadcast
    assert [(i["latent"], i["model"], i["steps"]) for i in one_rank["info"]] == [
        (i["latent"], i["model"], i["steps"]) for i in logs[0]["info"]]


def test_perturbed_weight_is_detected(two_ranks, one_rank):
    """The comparison can fail: one weight of the one-process denoiser moved by 2e-4."""
    _, weights, _ = two_ranks
    single = dict(one_rank["weights"])
    key = next(k for k in single if k.startswith("first/G/") and k.endswith("weight"))
    single[key] = single[key] + 2e-4
    with pytest.raises(AssertionError):
        _close(weights[0], single)


def test_rank_one_writes_nothing(two_ranks):
    root, _, logs = two_ranks
    assert logs[1]["writes"] == []
    cache = root / "cache"
    assert any((cache / "models").glob("*/generator.safetensors"))
    assert any((cache / "models").glob("*/step_cost.json"))
    assert any((cache / "autoencoders").glob("*/autoencoder.safetensors"))
    assert not list(root.glob("**/*.tmp*"))


def test_watcher_sees_writes(tmp_path):
    """The audit hook used for rank 1 does see this process's writes (in a subprocess: a hook
    cannot be removed)."""
    import subprocess

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from test_distributed_harness import _watch_writes; seen = []; "
            f"_watch_writes({str(tmp_path)!r}, seen); "
            f"from genbench._io import atomic_write_json; "
            f"atomic_write_json({str(tmp_path / 'a' / 'b.json')!r}, {{}}); print(len(seen))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert int(done.stdout.strip().splitlines()[-1]) >= 3  # mkdir, create, rename
