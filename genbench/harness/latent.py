"""Fit a learned latent space (autoencoder) for a cell and measure its reconstruction FID.

The fitted autoencoder is cached by its own config hash under ``<cache>/autoencoders/`` and
shared by every cell that uses it; the denoiser's cache key includes the autoencoder's hash
(through ``latent.identity()``), so a refitted autoencoder never meets a stale denoiser.
Reconstruction FID follows LDDGAN Table 1: FID between decode(encode(x)) and x on held-out
images (the dataset's test split when it has one), with the cell's own FID extractor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from genbench import registry
from genbench._io import atomic_write_text, json_hash, tensor_fingerprint
from genbench.errors import UserError, notice
from genbench.harness.build import Components


def fit_latent(comps: Components, cache_dir: Path, device: torch.device,
               progress: bool, *, fit: bool = True) -> dict[str, Any] | None:
    """Fit (or load) the latent space if it is learned; returns its training info.
    ``fit=False`` only loads (a missing autoencoder is a UserError)."""
    if comps.latent.needs_fit:
        from genbench.data.base import all_images
        from genbench.training.autoencoder import fit_autoencoder

        images, _ = all_images(comps.dataset)
        info = fit_autoencoder(comps.latent, images, cache_dir=cache_dir, device=device,
                               progress=progress, fit=fit)
    else:
        info = None
    comps.latent = comps.latent.to(device)
    return info


def held_out_images(cfg: dict[str, Any], comps: Components) -> tuple[torch.Tensor, str]:
    """The dataset's test split (Table 1 uses validation images), else its training split."""
    from genbench.data.base import all_images

    args = {k: v for k, v in cfg["dataset"].items() if k != "name"}
    if args.get("split") != "test":
        try:
            test = registry.create("dataset", cfg["dataset"]["name"], **{**args, "split": "test"})
            return all_images(test)[0], "test"
        except (UserError, TypeError):
            pass
    return all_images(comps.dataset)[0], str(args.get("split", "train"))


def reconstruction_quality(cfg: dict[str, Any], comps: Components, extractor: Any,
                           device: torch.device, cache_dir: Path | None = None) -> dict[str, Any]:
    """rFID of a learned latent space on held-out images.

    With ``cache_dir`` the result is kept in ``<cache>/rfid/<key>.json``, keyed by the fitted
    autoencoder, the held-out images (their bytes) and the extractor's recipe, so the cells
    that share an autoencoder measure it once.
    """
    from genbench.latents.base import reconstruction_fid

    images, split = held_out_images(cfg, comps)
    path = None
    if cache_dir is not None:
        recipe = {k: v for k, v in extractor.recipe.items() if k != "train_seconds"}  # timing
        key = json_hash({"latent": comps.latent.identity(), "recipe": recipe,
                         "images": tensor_fingerprint(images)["sha256"]})
        path = Path(cache_dir) / "rfid" / f"{key}.json"
        if path.is_file():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # truncated or garbled: measure again
                cached = None
                notice(f"cached rFID {path} cannot be read; measuring it again")
            if isinstance(cached, dict):
                return cached
    batch = int(cfg["eval"].get("batch_size", 100))
    result = reconstruction_fid(comps.latent, images, extractor, batch_size=batch, device=device)
    result = {**result, "split": split}
    if path is not None:
        atomic_write_text(path, json.dumps(result, default=str))  # NaN allowed, as in records
    return result
