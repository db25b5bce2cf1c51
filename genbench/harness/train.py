"""Train or load the denoiser of a cell, through the artifact cache.

The sampler says which objective it needs; this module trains that objective (or loads a given
checkpoint) and returns the network to sample with: the EMA weights, as the official DDGAN code
releases them (``NVlabs/denoising-diffusion-gan train_ddgan.py`` saves ``netG_*.pth`` after
swapping in the EMA parameters) and as DDPM samples them (Ho et al. 2020, Sec. 4).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genbench import registry
from genbench._io import (
    atomic_write_json,
    json_hash,
    read_json_object,
    remove_stale_temporaries,
    sha256_file,
)
from genbench.distributed import current, main_first, main_holds, on_main
from genbench.errors import UserError, notice
from genbench.harness.artifacts import GENERATOR, ModelCache, training_payload
from genbench.harness.build import Components, build_backbone
from genbench.harness.released import is_released_file, load_generator
from genbench.training.budget import (
    Consumed,
    StepCost,
    budget_steps,
    measure_step_cost,
    step_cost_of,
)
from genbench.training.checkpoint import load_weights, save_weights
from genbench.training.seeding import seeded_global_rng


def _setup_adversarial(cfg: dict[str, Any], comps: Components, G: torch.nn.Module,
                       device: torch.device) -> tuple[Callable[[Any, bool], Any], Any, dict]:
    """(make trainer, settings, discriminator info); ``make(settings, True)`` builds a throwaway
    trainer on copies of the networks (to measure a step's cost)."""
    from genbench.training.adversarial import AdversarialConfig, AdversarialTrainer

    train_cfg = comps.train
    disc_cfg = dict(train_cfg.get("discriminator") or {"kind": "small"})
    kind = disc_cfg.pop("kind", "small")
    with seeded_global_rng(cfg["seed"], "init/discriminator"):
        D = registry.create("discriminator", kind, in_channels=comps.latent_shape[0],
                            **disc_cfg).to(device)
    adv_cfg = AdversarialConfig.from_section(train_cfg, cfg["seed"])

    def make(c: AdversarialConfig, probe: bool) -> AdversarialTrainer:
        g, d = (copy.deepcopy(G), copy.deepcopy(D)) if probe else (G, D)
        c = dataclasses.replace(c, compile=False) if probe else c  # MACs are counted eagerly
        return AdversarialTrainer(g, d, comps.sampler.schedule, c, device)

    info = {"discriminator": {"kind": kind, **disc_cfg,
                              "params": sum(p.numel() for p in D.parameters())}}
    return make, adv_cfg, info


def _setup_eps(cfg: dict[str, Any], comps: Components, net: torch.nn.Module,
               device: torch.device) -> tuple[Callable[[Any, bool], Any], Any, dict]:
    """(make trainer, settings, {}), as :func:`_setup_adversarial`."""
    from genbench.training.eps import EpsConfig, EpsTrainer

    eps_cfg = EpsConfig.from_section(comps.train, cfg["seed"])

    def make(c: EpsConfig, probe: bool) -> EpsTrainer:
        c = dataclasses.replace(c, compile=False) if probe else c  # MACs are counted eagerly
        return EpsTrainer(copy.deepcopy(net) if probe else net, comps.sampler.schedule, c, device)

    return make, eps_cfg, {}


_SETUPS = {"adversarial": _setup_adversarial, "eps": _setup_eps}


def _train_objective(cfg: dict[str, Any], comps: Components, net: torch.nn.Module,
                     folder: Path, device: torch.device, progress: bool) -> dict[str, Any]:
    """Train the sampler's objective; ``net`` ends with the EMA weights (the ones sampled)."""
    make, obj_cfg, extra = _SETUPS[comps.sampler.objective](cfg, comps, net, device)
    trainer, info = _run_objective(make, obj_cfg, comps, folder, device, progress)
    ema = trainer.G_ema if hasattr(trainer, "G_ema") else trainer.net_ema
    net.load_state_dict(ema.module.state_dict())
    return {**info, **extra,
            "final_losses": trainer.history[-1] if trainer.history else {}}


def training_step_cost(cfg: dict[str, Any], device: torch.device | None = None
                       ) -> dict[str, Any]:
    """The training cost of a composed configuration's model, measured as training measures it
    (:func:`genbench.training.budget.measure_step_cost` on the first batch), without training:
    ``step_macs`` (a :class:`~genbench.training.budget.StepCost` as a dict), ``macs_per_step``
    (their mean over a lazy-regularisation period), ``batch_size``, ``steps_per_epoch`` and the
    ``epochs`` configured."""
    from genbench.harness.build import build_components
    from genbench.training.loop import _model_input, batches_per_epoch, training_batch

    device = torch.device("cpu") if device is None else device
    comps = build_components(cfg)
    net = _new_backbone(cfg, comps, comps.sampler.objective).to(device)
    make, obj_cfg, _ = _SETUPS[comps.sampler.objective](cfg, comps, net, device)
    loop_cfg = obj_cfg.loop()
    images = _training_images(comps)
    per_epoch = batches_per_epoch(images.shape[0], loop_cfg.batch_size, loop_cfg.batch_setting)
    first = _model_input(training_batch(images, loop_cfg, 0, per_epoch), device,
                         comps.latent.encode)
    every = int(getattr(obj_cfg, "lazy_reg", 1))
    cost = step_cost_of(measure_step_cost(lambda: make(obj_cfg, True), first,
                                          obj_cfg.cost_probes()), every)
    return {"objective": comps.sampler.objective, "step_macs": cost.as_dict(),
            "macs_per_step": cost.total(cost.every) / cost.every,
            "batch_size": loop_cfg.batch_size, "steps_per_epoch": per_epoch,
            "epochs": obj_cfg.epochs}


STEP_COST = "step_cost.json"  # the objective's measured training MACs per step, in the model folder


def _step_cost(make: Callable[[Any, bool], Any], obj_cfg: Any, x: torch.Tensor,
               folder: Path) -> StepCost:
    """The objective's training MACs per step, measured once per model (one real training step
    of each kind on copies of the networks) and kept in the model's folder for resumes."""
    probes = obj_cfg.cost_probes()
    every = int(getattr(obj_cfg, "lazy_reg", 1))

    def cached() -> dict[str, int] | None:
        found = read_json_object(folder / STEP_COST)
        if found is not None and found.get("probes") == probes:
            macs = found.get("macs")
            if isinstance(macs, dict) and set(macs) == set(probes) and all(
                    isinstance(v, int) and v >= 0 for v in macs.values()):
                return macs
        return None

    # rank 0 reads the file for every rank: the probe steps average gradients over the ranks,
    # so either all ranks measure or none does
    macs = on_main(cached)
    if macs is not None:
        return step_cost_of(macs, every)
    macs = measure_step_cost(lambda: make(obj_cfg, True), x, probes)

    def write() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / STEP_COST, {"probes": probes, "macs": macs,
                                               "counter": "genbench.metrics.cost.measure_flops"})

    on_main(write)
    return step_cost_of(macs, every)


def _run_objective(make: Callable[[Any, bool], Any], obj_cfg: Any, comps: Components,
                   folder: Path, device: torch.device, progress: bool) -> tuple[Any, dict]:
    """Train an objective through the shared loop, to its epochs or its ``train.budget``.

    With an images or MACs budget the run's length is the budget's (the steps after which it is
    reached), and the schedules that span the run (the cosine learning-rate decay, LDDGAN's
    weighted learning) span that many epochs instead of ``train.epochs``; a seconds budget stops
    when the device seconds reach it, or at ``train.epochs``, whichever comes first.
    """
    from genbench.training.loop import _model_input, batches_per_epoch, train, training_batch

    images = _training_images(comps)
    loop_cfg = obj_cfg.loop()
    per_epoch = batches_per_epoch(images.shape[0], loop_cfg.batch_size, loop_cfg.batch_setting)
    first = _model_input(training_batch(images, loop_cfg, 0, per_epoch), device,
                         comps.latent.encode)
    cost = _step_cost(make, obj_cfg, first, folder)
    budget = loop_cfg.budget
    steps = None if budget is None else budget_steps(budget, loop_cfg.batch_size, cost)
    if steps is not None:
        obj_cfg = dataclasses.replace(obj_cfg, epochs=-(-steps // per_epoch))
        loop_cfg = obj_cfg.loop()
    trainer = make(obj_cfg, False)
    consumed = Consumed()
    started = time.perf_counter()
    train(trainer, images, folder / "checkpoint", loop_cfg, encode=comps.latent.encode,
          progress=progress, cost=cost, consumed=consumed)
    return trainer, {
        "steps": trainer.step,
        "seconds": round(time.perf_counter() - started, 2),
        "budget": None if budget is None else str(budget),
        "epochs": obj_cfg.epochs,
        "batch_size": loop_cfg.batch_size,
        "consumed": consumed.as_dict(),
        "step_macs": cost.as_dict(),
        "precision": obj_cfg.precision,  # train.precision and train.compile, as trained
        "compile": obj_cfg.compile,
    }


def _training_images(comps: Components) -> torch.Tensor:
    """The training split as uint8 (the loop maps each batch to [-1, 1])."""
    from genbench.data.base import all_images

    return all_images(comps.dataset)[0]


_OBJECTIVES = {"adversarial": _train_objective, "eps": _train_objective}


def train_or_load(cfg: dict[str, Any], comps: Components, cache: ModelCache,
                  device: torch.device, progress: bool = True, *, train: bool = True
                  ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained network for this cell (eval mode, on ``device``) and how it was obtained;
    ``train=False`` only loads (a model missing from the cache is a UserError)."""
    objective = comps.sampler.objective
    G = _new_backbone(cfg, comps, objective).to(device)
    if cfg.get("checkpoint"):
        path = Path(str(cfg["checkpoint"])).expanduser()
        if is_released_file(path):  # an official netG_*.pth / U-ViT .pth, converted and cached
            info = main_first(lambda: load_generator(path, G, cfg, comps.latent_shape,
                                                     cache.root.parent))
            return G.eval(), info
        load_weights(path, {"G_ema": G})
        return G.eval(), {"source": "checkpoint", "path": str(path), "sha256": sha256_file(path)}
    payload = training_payload(cfg, comps.train, comps.dataset.identity(),
                               comps.latent.identity(), cfg["backbone"],
                               comps.sampler.training_key, objective)
    key = json_hash(payload)
    folder = cache.folder(key)
    if objective not in _OBJECTIVES:
        raise UserError(f"no trainer for objective {objective!r}; known: {', '.join(_OBJECTIVES)}")
    # Data parallel (torchrun, srun): rank 0 alone takes the lock, decides train-or-load and
    # writes; every rank trains (the loop splits the global batch) and then loads what rank 0
    # wrote, so all ranks sample with the same weights.
    with main_holds(lambda: cache.lock(key)):
        problem = on_main(lambda: _cache_problem(cache, key, folder))
        if problem is not None:
            if not train:
                raise UserError(f"the trained model is not in the cache ({problem or 'absent'}: "
                                f"{folder}); `genbench run` trains it again")
            if problem and current().is_main:
                notice(f"cached model not used: {problem}; training it again")
            info = _OBJECTIVES[objective](cfg, comps, G, folder, device, progress)

            def write() -> dict[str, Any]:
                save_weights(folder / GENERATOR, {"G_ema": G}, metadata={"key": key})
                cache.write_meta(key, {"key": key, "payload": payload, "training": info})
                return info

            info = on_main(write)  # rank 0's (its seconds), once the files are there
            if not current().is_main:
                load_weights(folder / GENERATOR, {"G_ema": G})
            return G.eval(), {"source": "trained", "key": key, "folder": str(folder), **info}
        load_weights(folder / GENERATOR, {"G_ema": G})
        meta = on_main(lambda: cache.meta(key))
    return G.eval(), {"source": "cache", "key": key, "folder": str(folder),
                      **meta.get("training", {})}


def _cache_problem(cache: ModelCache, key: str, folder: Path) -> str | None:
    """In the model's lock: a killed run's staging folders removed (a checkpoint it left aside
    put back), then why the cached model cannot be used ("" absent, None usable)."""
    remove_stale_temporaries(folder)
    return cache.problem(key)


def _new_backbone(cfg: dict[str, Any], comps: Components, objective: str) -> torch.nn.Module:
    with seeded_global_rng(cfg["seed"], "init/generator"):  # initial weights follow the seed
        return build_backbone(cfg, comps.latent_shape, objective)
