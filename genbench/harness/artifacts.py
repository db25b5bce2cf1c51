"""The artifact cache: trained denoisers keyed by the hash of everything that affects training.

Two cells that differ only in sampling settings (DDIM steps, eta, the number of samples) hash to
the same key and share one trained model; cells that differ in data, latent space, backbone,
objective, training settings or seed do not. A model folder is complete once ``meta.json`` is
there; training in progress keeps its resumable checkpoint in ``checkpoint/``. A file lock keeps
two processes (grid workers) from training the same model at once.

``meta.json`` records the SHA-256 of ``generator.safetensors`` when it is written, and
:meth:`ModelCache.problem` checks it before the model is used: a file changed on disk since (or
a ``meta.json`` that cannot be read) makes the model be trained again, with one line saying so,
instead of a different FID with status ok.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genbench import _io
from genbench.precision import without_defaults

GENERATOR = "generator.safetensors"
META = "meta.json"


def training_payload(cfg: dict[str, Any], train_settings: dict[str, Any],
                     dataset_identity: dict[str, Any], latent_identity: dict[str, Any],
                     backbone_args: dict[str, Any], sampler_training_key: dict[str, Any],
                     objective: str) -> dict[str, Any]:
    """Everything that changes the trained weights, and nothing else (hashed by
    :func:`genbench._io.json_hash` into the model's key).

    ``train_settings`` are the objective's settings only, so editing the eps section of a train
    preset does not invalidate adversarially trained models and vice versa.
    """
    train = {k: v for k, v in train_settings.items() if k not in ("ckpt_every",)
             and not (k == "budget" and v is None)}  # no budget: the keys of before budgets
    # train.precision=fp32 and train.compile=false (the defaults): the keys of before them
    train = without_defaults(train)
    return {
        "dataset": dataset_identity,
        "latent": latent_identity,
        "backbone": backbone_args,
        "objective": objective,
        "sampler": sampler_training_key,
        "train": train,
        "seed": cfg["seed"],
    }


class ModelCache:
    """``<cache_dir>/models/<key>/``: one trained model per training hash."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = Path(cache_dir) / "models"

    def folder(self, key: str) -> Path:
        return self.root / key

    def is_complete(self, key: str) -> bool:
        folder = self.folder(key)
        return (folder / META).is_file() and (folder / GENERATOR).is_file()

    def meta(self, key: str) -> dict[str, Any]:
        with open(self.folder(key) / META) as fh:
            return json.load(fh)

    def problem(self, key: str) -> str | None:
        """Why model ``key`` cannot be used as cached ("" when it is simply not there yet), or
        None when ``meta.json`` reads and ``generator.safetensors`` has the SHA-256 recorded in
        it."""
        if not self.is_complete(key):
            return ""
        return _io.recorded_hash_problem(self.folder(key) / GENERATOR, self.folder(key) / META)

    def write_meta(self, key: str, meta: dict[str, Any]) -> None:
        """Write ``meta.json`` (after the generator), recording the generator's SHA-256."""
        folder = self.folder(key)
        _io.atomic_write_json(folder / META, {
            **meta, "sha256": {GENERATOR: _io.sha256_file(folder / GENERATOR)}})

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """An exclusive lock for training model ``key`` (blocks while another process holds it,
        on this machine or another that shares the cache folder: :func:`genbench._io.file_lock`)."""
        with _io.file_lock(self.root / f"{key}.lock"):
            yield


