"""Autoencoder training as VQGAN and LDM train their first stages, and the fitted-autoencoder cache.

Esser et al. 2021 ("Taming transformers for high-resolution image synthesis", VQGAN) and
Rombach et al. 2022 ("High-resolution image synthesis with latent diffusion models", LDM) train
the autoencoders that LDDGAN (Trinh and Hamagami 2024, Sec. 4.2 and 5.1.3) builds on:

* reconstruction: L1 plus the LPIPS perceptual distance (:mod:`genbench.training.lpips`) with
  ``perceptual_weight``, used when its weights are on the machine; otherwise the run says
  ``missing: <why>`` and trains without it;
* a PatchGAN discriminator (:mod:`genbench.backbones.patchgan`) with the hinge loss, switched on
  at step ``disc_start`` and weighted adaptively by the ratio of gradient norms at the decoder's
  last layer (VQGAN Eq. 7, ``lambda = ||grad L_rec|| / (||grad L_GAN|| + 1e-4)``, times
  ``disc_weight``);
* VQ (van den Oord et al. 2017, "Neural discrete representation learning", Eq. 3):
  ``codebook_weight * (||sg[h] - e||^2 + beta ||h - sg[e]||^2)`` with a straight-through
  gradient; taming's quantizer puts beta on the other term (its "legacy" bug), this one does not;
* KL (LDM's ``LPIPSWithDiscriminator``): ``kl_weight`` times the KL of the posterior to N(0, I)
  summed over latent elements per image. LDM sums its reconstruction loss over pixels too; here
  the reconstruction is a per-pixel mean and the KL is divided by C*H*W, which keeps
  ``kl_weight`` LDM's ratio between the two. ``kl_weight = 0`` is LDDGAN's recommended
  autoencoder (Table 7). LDM's learned output log-variance (``logvar_init = 0``) is omitted.

Optimisers: Adam with betas (0.5, 0.9) for autoencoder and discriminator (taming/LDM
``configure_optimizers``). Steps run in the shared loop (:mod:`genbench.training.loop`); initial
weights, posterior samples, flips and dropout come from named streams of the autoencoder's seed
(:mod:`genbench.training.seeding`), so an interrupted run resumes to the same weights.

:func:`fit_autoencoder` trains a latent space's autoencoder or loads it from
``<cache_dir>/autoencoders/<hash>/``, where the hash covers the architecture, the training
settings, the seed, the training images and the LPIPS weights, so every cell that uses the same
autoencoder shares it.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genbench._io import (
    atomic_write_json,
    file_lock,
    json_hash,
    read_json_object,
    recorded_hash_problem,
    remove_stale_temporaries,
    sha256_file,
)
from genbench.backbones.patchgan import NLayerDiscriminator
from genbench.data.base import to_model_range
from genbench.distributed import (
    BatchShard,
    average_gradients,
    average_tensors,
    current,
    main_first,
    main_holds,
    on_main,
)
from genbench.errors import UserError, notice
from genbench.latents.autoencoder import AutoencoderSpace, AutoencoderTrainingConfig
from genbench.precision import FP32, MixedPrecision, compiled
from genbench.training.budget import Consumed, StepCost, measure_step_cost, step_cost_of
from genbench.training.checkpoint import load_weights, save_weights
from genbench.training.loop import LoopConfig, batches_per_epoch, train, training_batch
from genbench.training.lpips import LPIPS, load_lpips, lpips_fingerprint, resolve_lpips
from genbench.training.released import check_fits, is_torch_file, load_converted
from genbench.training.seeding import seeded_global_rng, stream_generator

WEIGHTS = "autoencoder.safetensors"
META = "meta.json"
CHECKPOINT = "checkpoint"
FORMAT_VERSION = 1  # bump when the cached artifact's meaning changes


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss for D: ``(E relu(1 - D(x)) + E relu(1 + D(x_hat))) / 2`` (taming)."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    amp: MixedPrecision = FP32) -> torch.Tensor:
    """VQGAN Eq. 7: ``||grad rec|| / (||grad g|| + 1e-4)`` at the last layer, clamped to 1e4.

    Data parallel: both gradients are averaged over the ranks first, so the norms are those of
    the global batch's gradients. fp16 (``amp``'s scaler): both gradients are taken of the scaled
    losses, so they do not underflow, and divided by the scale before the norms; where they
    overflowed the weight is not finite, and so are the step's scaled gradients, which the
    scaler then skips (:mod:`genbench.precision`)."""
    rec_grad = torch.autograd.grad(amp.scale(rec_loss), last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(amp.scale(g_loss), last_layer, retain_graph=True)[0]
    average_tensors([rec_grad, g_grad])
    rec_grad, g_grad = amp.unscaled(rec_grad), amp.unscaled(g_grad)
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


class AutoencoderTrainer:
    """One autoencoder + PatchGAN discriminator + LPIPS, and their optimisers."""

    def __init__(self, autoencoder: nn.Module, image_channels: int,
                 cfg: AutoencoderTrainingConfig, device: torch.device, seed: int,
                 lpips: LPIPS | None = None) -> None:
        self.ae = autoencoder.to(device)
        self.cfg = cfg
        self.device = device
        self.seed = seed
        with seeded_global_rng(seed, "init/patchgan"):
            self.D = NLayerDiscriminator(image_channels, cfg.disc_channels, cfg.disc_layers)
        self.D.to(device)
        self.lpips = lpips.to(device) if lpips is not None and cfg.perceptual_weight > 0 else None
        self.opt_ae = torch.optim.Adam(self.ae.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        # latent.precision / latent.compile (genbench.precision): one loss scaler for both
        # optimisers under fp16, updated once per step; compiled forwards share the modules
        self.amp = MixedPrecision(cfg.precision, device)
        self.ae_fwd = compiled(self.ae.training_forward, cfg.compile)
        self.D_fwd = compiled(self.D, cfg.compile)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.shard: BatchShard | None = None  # data parallel: this rank's rows (the loop's)

    def loop(self) -> LoopConfig:
        """What the shared loop needs: steps, batches, flips, checkpoints, logging."""
        cfg = self.cfg
        return LoopConfig(batch_size=cfg.batch_size, seed=self.seed, steps=cfg.steps,
                          hflip=cfg.hflip, ckpt_every=cfg.ckpt_every,
                          log_every=max(1, cfg.steps // 200), batch_setting="latent.batch_size",
                          what=f"train {self.ae.kind} AE")

    def modules(self) -> dict[str, nn.Module]:
        return {"autoencoder": self.ae, "discriminator": self.D}

    def cost_probes(self) -> dict[str, int]:
        """Steps whose training MACs tell every step's (:mod:`genbench.training.budget`): an
        autoencoder-only step and, when the run reaches ``disc_start``, one with the
        discriminator (its own step plus the adversarial and adaptive-weight terms)."""
        start, steps = self.cfg.disc_start, self.cfg.steps
        if start <= 0:
            return {"ae+d": 0}
        return {"ae": 0, "ae+d": start} if start < steps else {"ae": 0}

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "opt_ae": self.opt_ae.state_dict(),
                "opt_d": self.opt_d.state_dict(), "history": self.history,
                **self.amp.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.opt_ae.load_state_dict(state["opt_ae"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.history = list(state["history"])
        self.amp.load_state(state)

    def end_epoch(self) -> None:
        """Nothing changes per epoch (constant learning rate, as taming and LDM)."""

    def _reconstruction_loss(self, x: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        loss = (x - rec).abs().mean()
        if self.lpips is not None:
            loss = loss + self.cfg.perceptual_weight * self.lpips(x, rec).mean()
        return loss

    def _regulariser(self, reg: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if "kl" in reg:  # KL summed per image; divide by C*H*W to match the per-pixel L1
            return cfg.kl_weight * reg["kl"] / x[0].numel()
        return cfg.codebook_weight * (reg["codebook"] + cfg.commitment_beta * reg["commitment"])

    def _generator_loss(self, x: torch.Tensor, out: dict[str, float]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction + regulariser (+ the weighted adversarial term from ``disc_start``)."""
        generator = stream_generator(self.seed, "posterior", self.step, device=self.device)
        with self.amp.autocast():  # latent.precision (fp32: nothing)
            rec, reg = self.ae_fwd(x, generator, self.shard)
            rec_loss = self._reconstruction_loss(x, rec)
            loss = rec_loss + self._regulariser(reg, x)
            out.update(rec=rec_loss.item(), **{k: v.item() for k, v in reg.items()})
            if self.step >= self.cfg.disc_start:
                self.D.train()
                g_loss = -self.D_fwd(rec).mean()
                weight = (adaptive_weight(rec_loss, g_loss, self.ae.last_layer(), self.amp)
                          if self.cfg.adaptive_disc_weight
                          else torch.tensor(1.0, device=x.device))
                out.update(g=g_loss.item(), d_weight=self.cfg.disc_weight * weight.item())
                if not torch.isfinite(weight):  # fp16 overflow: this step is skipped
                    weight = torch.zeros_like(weight)
                loss = loss + self.cfg.disc_weight * weight * g_loss
        return loss, rec

    def train_step(self, x: torch.Tensor, epoch: int = 0) -> dict[str, float]:
        """One autoencoder step and, from ``disc_start`` on, one discriminator step."""
        self.ae.train()
        self.amp.begin()
        out: dict[str, float] = {}
        loss, rec = self._generator_loss(x, out)
        self.opt_ae.zero_grad(set_to_none=True)
        self.amp.scale(loss).backward()
        average_gradients(self.ae.parameters())
        self.amp.step(self.opt_ae)
        if self.step >= self.cfg.disc_start:
            with self.amp.autocast():
                d_loss = hinge_d_loss(self.D_fwd(x), self.D_fwd(rec.detach()))
            self.opt_d.zero_grad(set_to_none=True)
            self.amp.scale(d_loss).backward()
            average_gradients(self.D.parameters())
            self.amp.step(self.opt_d)
            # per-rank BatchNorm statistics (as taming/LDM's multi-GPU runs): keep the running
            # ones equal on every rank
            if current().distributed:
                average_tensors(list(self.D.buffers()))
            out["d"] = d_loss.item()
        out["loss"] = loss.item()
        self.step += 1
        return self.amp.end(out)


def check_discriminator_fits(cfg: AutoencoderTrainingConfig, side: int) -> None:
    """A UserError when the PatchGAN has no output for ``side`` px images (too many layers)."""
    if cfg.disc_start <= cfg.steps and NLayerDiscriminator.output_side(side, cfg.disc_layers) < 1:
        raise UserError(f"disc_layers={cfg.disc_layers} leaves no patch logits for {side} px "
                        f"images; lower latent.disc_layers (1 or 2 for 8-16 px)")


# --------------------------------------------------------------------------- fitting


def initialise_autoencoder(space: AutoencoderSpace) -> None:
    """Give the space's autoencoder the initial weights of its seed (the ``init`` stream)."""
    with seeded_global_rng(space.seed, "init/autoencoder"):
        space.reinitialise()


def lpips_status_key(files: list[Path], status: str) -> str:
    """The LPIPS part of the cache key: the weights' hashes, or "missing"/"disabled"."""
    return lpips_fingerprint(files) if files else status.split(":")[0]


def _lpips_files(cfg: AutoencoderTrainingConfig) -> tuple[list[Path], str]:
    if cfg.perceptual_weight > 0:
        return resolve_lpips(cfg.lpips_weights)
    return [], "disabled: perceptual_weight=0"


def fit_autoencoder(space: AutoencoderSpace, images: torch.Tensor, *, cache_dir: Path,
                    device: str | torch.device = "cpu", progress: bool = True,
                    fit: bool = True) -> dict[str, Any]:
    """Train the space's autoencoder on ``images`` or load it from the cache; set its scale.

    Args:
        space: a KL or VQ latent space (``registry.create("latent", "kl", ...)``).
        images: the training set, uint8 ``[N, C, H, W]``, on the CPU.
        cache_dir: the cache root; the artifact goes to ``cache_dir/autoencoders/<hash>/``.
        device: where to train and, afterwards, encode/decode.
        progress: show a progress bar.
        fit: False only loads: an autoencoder missing from the cache is a UserError.

    Returns:
        JSON-safe info: key, folder, source ("trained" or "cache"), steps, seconds,
        scale_factor, latent statistics, final losses and the LPIPS status.
    """
    space.latent_shape(tuple(images.shape[1:]))  # type: ignore[arg-type]
    if space.checkpoint:
        # rank 0 converts (and caches) a released file first; the others then find it
        return main_first(lambda: _load_given(space, images, cache_dir, torch.device(device)))
    files, status = _lpips_files(space.training)
    payload = {"format": FORMAT_VERSION,
               **space.artifact_payload(images, lpips_status_key(files, status))}
    key = json_hash(payload)
    root = Path(cache_dir) / "autoencoders"
    folder = root / key
    device = torch.device(device)
    # data parallel: rank 0 alone locks, decides and writes; every rank trains, then loads
    # what rank 0 wrote (genbench.training.main_rank)
    with main_holds(lambda: file_lock(root / f"{key}.lock")):
        problem = on_main(lambda: _locked_problem(folder))
        if problem is None:
            load_weights(folder / WEIGHTS, {"autoencoder": space.autoencoder})
            info = {**on_main(lambda: read_json_object(folder / META)["fit"]), "source": "cache"}
        else:
            if not fit:
                raise UserError(f"the fitted autoencoder is not in the cache ({problem or 'absent'}"
                                f": {folder}); `genbench run` fits it again")
            if problem and current().is_main:
                notice(f"cached autoencoder not used: {problem}; fitting it again")
            meta = {"key": key, "payload": payload}
            info = _train_and_save(space, images, folder, meta, device, progress, files, status)
    return space.mark_fitted(info, key=key, folder=folder, device=device)


def _locked_problem(folder: Path) -> str | None:
    """In the lock: a killed fit's leftovers removed (a set-aside one put back), then
    :func:`_cache_problem`."""
    remove_stale_temporaries(folder)
    return _cache_problem(folder)


def _load_given(space: AutoencoderSpace, images: torch.Tensor, cache_dir: Path,
                device: torch.device) -> dict[str, Any]:
    """The space's ``checkpoint``: a released LDM autoencoder (a Lightning ``.ckpt``, converted
    by :mod:`genbench.training.released` and cached by its SHA-256) or genbench's own
    safetensors (``genbench import`` output, or a cached ``autoencoder.safetensors``), loaded
    strictly; the scale is then chosen from the training latents as after training."""
    path = Path(space.checkpoint).expanduser()
    if not path.is_file():
        raise UserError(f"latent.checkpoint file not found: {path}")
    info: dict[str, Any] = {"source": "checkpoint", "path": str(path)}
    if is_torch_file(path):
        released, sha = load_converted(path, cache_dir)
        if released.role != "autoencoder":
            raise UserError(f"latent.checkpoint {path} is a generator ({released.format}); pass "
                            f"it as checkpoint={path}")
        settings = ", ".join(f"latent.{k}={v}" for k, v in released.implied.items()
                             if k not in ("kind", "ch"))
        check_fits(released.state, space.autoencoder.model, f"{space.name} autoencoder", path,
                   f"; the file implies {settings}")
        space.autoencoder.model.load_state_dict(released.state, strict=True)
        info.update(format=released.format, dropped_keys=len(released.dropped))
    else:
        sha = sha256_file(path)
        load_weights(path, {"autoencoder": space.autoencoder})
        info["format"] = "genbench safetensors"
    info["sha256"] = sha
    info.update(space.latent_statistics(images, device))
    return space.mark_fitted(info, key=f"sha256:{sha}", folder=path.parent, device=device)


def _cache_problem(folder: Path) -> str | None:
    """"" when nothing is cached, None when ``meta.json`` reads, has the fit and records the
    weights' current SHA-256, else why the cached files cannot be used (naming the file)."""
    if not ((folder / META).is_file() and (folder / WEIGHTS).is_file()):
        return ""
    meta = read_json_object(folder / META)
    if meta is None or not isinstance(meta.get("fit"), dict):
        return f"{folder / META} cannot be read"
    return recorded_hash_problem(folder / WEIGHTS, folder / META)


def _train_and_save(space: AutoencoderSpace, images: torch.Tensor, folder: Path,
                    meta: dict[str, Any], device: torch.device, progress: bool,
                    files: list[Path], status: str) -> dict[str, Any]:
    check_discriminator_fits(space.training, min(images.shape[-2:]))
    initialise_autoencoder(space)
    space.autoencoder.requires_grad_(True)
    trainer = AutoencoderTrainer(space.autoencoder, space.arch.image_channels, space.training,
                                 device, space.seed, load_lpips(files) if files else None)
    cost = _step_cost(space, trainer, images, device)
    consumed = Consumed()
    started = time.perf_counter()
    train(trainer, images, folder / CHECKPOINT, trainer.loop(), progress=progress, cost=cost,
          consumed=consumed)
    decoder = _count(space.decoder_module())
    info = {"steps": trainer.step, "seconds": round(time.perf_counter() - started, 2),
            "consumed": consumed.as_dict(), "step_macs": cost.as_dict(),
            "lpips": status,
            "precision": space.training.precision, "compile": space.training.compile,
            "final_losses": trainer.history[-1] if trainer.history else {},
            "history": trainer.history,
            "params": {"encoder": _count(space.autoencoder) - decoder, "decoder": decoder,
                       "discriminator": _count(trainer.D)}}
    info.update(space.latent_statistics(images, device))

    def write() -> dict[str, Any]:
        save_weights(folder / WEIGHTS, {"autoencoder": space.autoencoder},
                     metadata={"key": meta["key"]})
        atomic_write_json(folder / META, {**meta, "fit": info,
                                          "sha256": {WEIGHTS: sha256_file(folder / WEIGHTS)}})
        shutil.rmtree(folder / CHECKPOINT, ignore_errors=True)
        return info

    info = on_main(write)  # rank 0's (its seconds and statistics), once the files are there
    if not current().is_main:  # every rank continues with the weights rank 0 wrote
        load_weights(folder / WEIGHTS, {"autoencoder": space.autoencoder})
    return {**info, "source": "trained"}


def _step_cost(space: AutoencoderSpace, trainer: AutoencoderTrainer, images: torch.Tensor,
               device: str | torch.device) -> StepCost:
    """Training MACs per step, counted over real steps of a throwaway trainer on a copy of the
    autoencoder (the real one, its optimisers and streams are not touched)."""
    loop = trainer.loop()
    per_epoch = batches_per_epoch(images.shape[0], loop.batch_size, loop.batch_setting)
    first = to_model_range(training_batch(images, loop, 0, per_epoch).to(trainer.device))

    eager = dataclasses.replace(space.training, compile=False)  # MACs are counted eagerly

    def make() -> AutoencoderTrainer:
        return AutoencoderTrainer(copy.deepcopy(space.autoencoder), space.arch.image_channels,
                                  eager, device, space.seed, trainer.lpips)

    macs = measure_step_cost(make, first, trainer.cost_probes())
    return step_cost_of(macs, later_from=space.training.disc_start)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
