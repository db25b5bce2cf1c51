"""Train or load the denoiser of a cell, through the artifact cache.

The sampler says which objective it needs; this module trains that objective (or loads a given
checkpoint) and returns the network to sample with: the EMA weights, as the official DDGAN code
releases them (``NVlabs/denoising-diffusion-gan train_ddgan.py`` saves ``netG_*.pth`` after
swapping in the EMA parameters) and as DDPM samples them (Ho et al. 2020, Sec. 4).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from genbench import registry
from genbench._io import json_hash, remove_stale_temporaries
from genbench.errors import UserError, notice
from genbench.harness.artifacts import GENERATOR, ModelCache, training_payload
from genbench.harness.build import Components, build_backbone
from genbench.training.checkpoint import load_weights, save_weights
from genbench.training.seeding import seeded_global_rng


def _train_adversarial(cfg: dict[str, Any], comps: Components, G: torch.nn.Module,
                       folder: Path, device: torch.device, progress: bool) -> dict[str, Any]:
    from genbench.training.adversarial import AdversarialConfig, AdversarialTrainer
    from genbench.training.loop import train

    train_cfg = comps.train
    disc_cfg = dict(train_cfg.get("discriminator") or {"kind": "small"})
    kind = disc_cfg.pop("kind", "small")
    with seeded_global_rng(cfg["seed"], "init/discriminator"):
        D = registry.create("discriminator", kind, in_channels=comps.latent_shape[0],
                            **disc_cfg).to(device)
    adv_cfg = AdversarialConfig.from_section(train_cfg, cfg["seed"])
    trainer = AdversarialTrainer(G, D, comps.sampler.schedule, adv_cfg, device)
    started = time.perf_counter()
    train(trainer, _training_images(comps), folder / "checkpoint", adv_cfg.loop(),
          encode=comps.latent.encode, progress=progress)
    G.load_state_dict(trainer.G_ema.module.state_dict())
    return {
        "steps": trainer.step,
        "seconds": round(time.perf_counter() - started, 2),
        "discriminator": {"kind": kind, **disc_cfg,
                          "params": sum(p.numel() for p in D.parameters())},
        "final_losses": trainer.history[-1] if trainer.history else {},
    }


def _train_eps(cfg: dict[str, Any], comps: Components, net: torch.nn.Module,
               folder: Path, device: torch.device, progress: bool) -> dict[str, Any]:
    from genbench.training.eps import EpsConfig, EpsTrainer
    from genbench.training.loop import train

    eps_cfg = EpsConfig.from_section(comps.train, cfg["seed"])
    trainer = EpsTrainer(net, comps.sampler.schedule, eps_cfg, device)
    started = time.perf_counter()
    train(trainer, _training_images(comps), folder / "checkpoint", eps_cfg.loop(),
          encode=comps.latent.encode, progress=progress)
    net.load_state_dict(trainer.net_ema.module.state_dict())
    return {
        "steps": trainer.step,
        "seconds": round(time.perf_counter() - started, 2),
        "final_losses": trainer.history[-1] if trainer.history else {},
    }


def _training_images(comps: Components) -> torch.Tensor:
    """The training split as uint8 (the loop maps each batch to [-1, 1])."""
    from genbench.data.base import all_images

    return all_images(comps.dataset)[0]


_OBJECTIVES = {"adversarial": _train_adversarial, "eps": _train_eps}


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
                               comps.latent.identity(), cfg["backbone"],
                               comps.sampler.training_key, objective)
    key = json_hash(payload)
    folder = cache.folder(key)
    if objective not in _OBJECTIVES:
        raise UserError(f"no trainer for objective {objective!r}; known: {', '.join(_OBJECTIVES)}")
    with cache.lock(key):
        # a killed run's staging folders; a checkpoint it left aside is put back (in the lock)
        remove_stale_temporaries(folder)
        problem = cache.problem(key)
        if problem is not None:
            if problem:
                notice(f"cached model not used: {problem}; training it again")
            info = _OBJECTIVES[objective](cfg, comps, G, folder, device, progress)
            save_weights(folder / GENERATOR, {"G_ema": G}, metadata={"key": key})
            cache.write_meta(key, {"key": key, "payload": payload, "training": info})
            return G.eval(), {"source": "trained", "key": key, "folder": str(folder), **info}
        load_weights(folder / GENERATOR, {"G_ema": G})
        meta = cache.meta(key)
    return G.eval(), {"source": "cache", "key": key, "folder": str(folder),
                      **meta.get("training", {})}


def _new_backbone(cfg: dict[str, Any], comps: Components, objective: str) -> torch.nn.Module:
    with seeded_global_rng(cfg["seed"], "init/generator"):  # initial weights follow the seed
        return build_backbone(cfg, comps.latent_shape, objective)
