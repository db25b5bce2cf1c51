"""Train or load the denoiser of a cell, through the artifact cache.

The sampler says which objective it needs; this module trains that objective (or loads a given
checkpoint) and returns the network to sample with: for the adversarial objective, the EMA
generator, as the official DDGAN code releases EMA weights (REFERENCE.md B.3).
"""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from genbench.errors import UserError
from genbench.harness.artifacts import GENERATOR, META, ModelCache, config_hash, training_payload
from genbench.harness.build import Components, build_backbone
from genbench.training.checkpoint import atomic_write_bytes, load_weights, save_weights


def _adversarial_config(train_cfg: dict[str, Any], seed: int):
    from genbench.training.adversarial import AdversarialConfig

    known = {f.name for f in fields(AdversarialConfig)}
    args = {k: v for k, v in train_cfg.items() if k in known}
    return AdversarialConfig(**{**args, "seed": seed})


def _train_adversarial(cfg: dict[str, Any], comps: Components, G: torch.nn.Module,
                       folder: Path, device: torch.device, progress: bool) -> dict[str, Any]:
    from genbench.backbones.discriminator import make_discriminator
    from genbench.training.adversarial import AdversarialTrainer, train_adversarial

    train_cfg = comps.train
    disc_cfg = dict(train_cfg.get("discriminator") or {"kind": "small"})
    kind = disc_cfg.pop("kind", "small")
    torch.manual_seed(cfg["seed"] + 1)  # discriminator initialisation
    D = make_discriminator(kind, in_channels=comps.latent_shape[0], **disc_cfg).to(device)
    trainer = AdversarialTrainer(G, D, comps.sampler.schedule,
                                 _adversarial_config(train_cfg, cfg["seed"]), device)
    images = _training_images(comps)
    started = time.perf_counter()
    train_adversarial(trainer, images, comps.latent.encode, folder / "checkpoint",
                      progress=progress)
    G.load_state_dict(trainer.G_ema.state_dict())
    history = trainer.history
    return {
        "steps": trainer.step,
        "seconds": round(time.perf_counter() - started, 2),
        "discriminator": {"kind": kind, **disc_cfg,
                          "params": sum(p.numel() for p in D.parameters())},
        "final_losses": history[-1] if history else {},
    }


def _train_eps(cfg: dict[str, Any], comps: Components, net: torch.nn.Module,
               folder: Path, device: torch.device, progress: bool) -> dict[str, Any]:
    from genbench.training.eps import EpsTrainer, eps_config, train_eps

    train_cfg = comps.train
    trainer = EpsTrainer(net, comps.sampler.schedule, eps_config(train_cfg, cfg["seed"]), device)
    images = _training_images(comps)
    started = time.perf_counter()
    train_eps(trainer, images, comps.latent.encode, folder / "checkpoint", progress=progress)
    net.load_state_dict(trainer.net_ema.state_dict())
    history = trainer.history
    return {
        "steps": trainer.step,
        "seconds": round(time.perf_counter() - started, 2),
        "final_losses": history[-1] if history else {},
    }


def _training_images(comps: Components) -> torch.Tensor:
    from genbench.data.base import all_images, to_model_range

    images, _ = all_images(comps.dataset)
    return to_model_range(images)


def _objective_trainers():
    return {"adversarial": _train_adversarial, "eps": _train_eps}


def train_or_load(cfg: dict[str, Any], comps: Components, cache: ModelCache,
                  device: torch.device, progress: bool = True
                  ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained network for this cell (eval mode, on ``device``) and how it was obtained."""
    objective = comps.sampler.objective
    G = _new_backbone(cfg, comps, objective).to(device)
    if cfg.get("checkpoint"):
        path = Path(str(cfg["checkpoint"])).expanduser()
        load_weights(path, {"G_ema": G})
        return G.eval(), {"source": "checkpoint", "path": str(path)}
    payload = training_payload(cfg, comps.train, comps.dataset.identity(),
                               _latent_identity(cfg, comps), cfg["backbone"],
                               comps.sampler.training_key, objective)
    key = config_hash(payload)
    folder = cache.folder(key)
    trainers = _objective_trainers()
    if objective not in trainers:
        raise UserError(f"no trainer for objective {objective!r}; known: {', '.join(trainers)}")
    with cache.lock(key):
        if not cache.is_complete(key):
            info = trainers[objective](cfg, comps, G, folder, device, progress)
            save_weights(folder / GENERATOR, {"G_ema": G}, metadata={"key": key})
            meta = {"key": key, "payload": payload, "training": info}
            atomic_write_bytes(folder / META, json.dumps(meta, indent=2, default=str).encode())
            return G.eval(), {"source": "trained", "key": key, "folder": str(folder), **info}
    load_weights(folder / GENERATOR, {"G_ema": G})
    return G.eval(), {"source": "cache", "key": key, "folder": str(folder),
                      **cache.meta(key).get("training", {})}


def _new_backbone(cfg: dict[str, Any], comps: Components, objective: str) -> torch.nn.Module:
    torch.manual_seed(cfg["seed"])  # generator initialisation is part of the seed
    return build_backbone(cfg, comps.latent_shape, objective)


def _latent_identity(cfg: dict[str, Any], comps: Components) -> dict[str, Any]:
    identity = getattr(comps.latent, "identity", None)
    return identity() if callable(identity) else dict(cfg["latent"])
