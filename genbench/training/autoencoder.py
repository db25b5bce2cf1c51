"""Autoencoder training as VQGAN and LDM train their first stages.

Esser et al. 2021 ("Taming transformers for high-resolution image synthesis", VQGAN) and
Rombach et al. 2022 ("High-resolution image synthesis with latent diffusion models", LDM) train
the autoencoders that LDDGAN (Trinh & Hy, seeds/lddgan-paper.txt, Sec. 4.2 and 5.1.3) builds on:

* reconstruction: L1 plus the LPIPS perceptual distance (Zhang et al. 2018, "The unreasonable
  effectiveness of deep features as a perceptual metric") with ``perceptual_weight``, used when
  its weights are on the machine; otherwise the run says ``missing: <why>`` and trains without it;
* a PatchGAN discriminator (``NLayerDiscriminator``, Isola et al. 2017, "Image-to-image
  translation with conditional adversarial networks") with the hinge loss, switched on at step
  ``disc_start`` and weighted adaptively by the ratio of gradient norms at the decoder's last
  layer (VQGAN Eq. 7, ``lambda = ||grad L_rec|| / (||grad L_GAN|| + 1e-4)``, times
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
``configure_optimizers``). Every random draw is seeded by (seed, step): data order, flips,
posterior samples and dropout, so an interrupted run resumes to the same weights.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from genbench.errors import MissingWeightsError, UserError
from genbench.training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint

LPIPS_CHANNELS = (64, 128, 256, 512, 512)  # VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # torchvision vgg16().features
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # LPIPS ScalingLayer (inputs in [-1, 1])
_LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_LIN_FILE = "vgg.pth"  # richzhang/PerceptualSimilarity lpips/weights/v0.1/vgg.pth
LPIPS_MIN_SIDE = 16  # smallest side at which all five VGG16 stages keep a pixel


# --------------------------------------------------------------------------- LPIPS


class LPIPS(nn.Module):
    """LPIPS with VGG16 features (Zhang et al. 2018), as taming's ``lpips.py`` uses it.

    Inputs in [-1, 1]; grey images are repeated to RGB; images smaller than 16 px are enlarged
    by nearest-neighbour upsampling so that every VGG stage keeps at least one pixel. Frozen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg16_features()
        self.lin = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in LPIPS_CHANNELS)
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # always eval: LPIPS' linear-layer dropout stays off

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        side = min(x.shape[-2:])
        if side < LPIPS_MIN_SIDE:
            x = F.interpolate(x, scale_factor=math.ceil(LPIPS_MIN_SIDE / side), mode="nearest")
        return (x - self.shift) / self.scale

    def _stages(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        for start, stop in _VGG_SLICES:
            x = self.features[start:stop](x)
            yield x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image distance [N, 1, 1, 1]."""
        total = 0.0
        for lin, fx, fy in zip(self.lin, self._stages(self._prepare(x)),
                               self._stages(self._prepare(y))):
            total = total + lin((fx - fy) ** 2).mean(dim=(2, 3), keepdim=True)
        return total  # type: ignore[return-value]

    @classmethod
    def from_files(cls, vgg16_path: Path, lin_path: Path) -> LPIPS:
        """torchvision's VGG16 file (``features.*`` keys are used) + LPIPS' ``vgg.pth``."""
        module = cls()
        vgg = _torch_load(vgg16_path)
        feats = {k[len("features."):]: v for k, v in vgg.items() if k.startswith("features.")}
        lin = {}
        for key, value in _torch_load(lin_path).items():  # "lin{k}.model.{i}.weight"
            if key.startswith("lin") and key.endswith(".weight"):
                lin[f"{int(key[3])}.weight"] = value
        _strict_load(module.features, feats, vgg16_path)
        _strict_load(module.lin, lin, lin_path)
        return module

    @classmethod
    def from_safetensors(cls, path: Path) -> LPIPS:
        """A genbench LPIPS state dict (``features.*``, ``lin.*``) in one safetensors file."""
        module = cls()
        state = {k: v for k, v in load_file(str(path)).items() if k not in ("shift", "scale")}
        _strict_load(module, {**state, "shift": module.shift, "scale": module.scale}, path)
        return module


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` up to relu5_3 (same layer indices, same state keys)."""
    layers: list[nn.Module] = []
    channels = 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                  512, 512, 512):
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers += [nn.Conv2d(channels, int(width), 3, padding=1), nn.ReLU()]
        channels = int(width)
    return nn.Sequential(*layers)


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of many kinds
        raise UserError(f"weights file {path} cannot be read ({exc}); replace it") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _strict_load(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"weights file {path} does not fit LPIPS/VGG16 ({first})") from None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_lpips(weights: str | None) -> tuple[list[Path], str]:
    """The LPIPS weights files and a status: ``"used"`` or ``"missing: <why>"``.

    ``weights``: a genbench ``.safetensors`` LPIPS file, or a folder holding torchvision's
    ``vgg16-397923af.pth`` and LPIPS' ``vgg.pth``, or None to look in the torch-hub checkpoint
    folder and ``$GENBENCH_WEIGHTS``. A configured path that does not exist is an error; nothing
    found without one is reported as missing (nothing is downloaded).
    """
    from genbench.metrics.weights import VGG16, resolve_spec, resolve_weights

    if weights is not None and Path(weights).expanduser().is_file():
        return [Path(weights).expanduser()], "used"
    try:
        vgg = resolve_spec(replace(VGG16, config_key="latent.lpips_weights"), path=weights)
        lin = resolve_weights("LPIPS linear layers", LPIPS_LIN_FILE, path=weights,
                              config_key="latent.lpips_weights")
    except MissingWeightsError as exc:
        if weights is not None:
            raise
        return [], f"missing: {exc}"
    return [vgg, lin], "used"


def load_lpips(files: list[Path]) -> LPIPS:
    """The LPIPS module for files from :func:`resolve_lpips`."""
    if len(files) == 1:
        return LPIPS.from_safetensors(files[0])
    return LPIPS.from_files(files[0], files[1])


def lpips_fingerprint(files: list[Path]) -> str:
    """SHA-256 of the LPIPS weights files (part of an autoencoder's cache key)."""
    return ",".join(_file_sha256(p) for p in files) if files else "none"


# --------------------------------------------------------------------------- discriminator


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017) as VQGAN/LDM configure it.

    4x4 convolutions: ``ndf`` channels at stride 2, then ``n_layers - 1`` stride-2 layers doubling
    the width (capped at 8 ndf) with BatchNorm, one stride-1 layer, and a 1-channel stride-1
    output: one logit per patch. LeakyReLU 0.2. Weights ~ N(0, 0.02), BatchNorm scales ~ N(1, 0.02)
    (taming ``weights_init``).
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.n_layers = n_layers
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    @staticmethod
    def output_side(side: int, n_layers: int) -> int:
        """Side of the logit map for a ``side`` x ``side`` input."""
        for _ in range(n_layers):
            side = (side + 2 - 4) // 2 + 1
        return side - 2  # two 4x4 stride-1 convolutions with padding 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss for D: ``(E relu(1 - D(x)) + E relu(1 + D(x_hat))) / 2`` (taming)."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor,
                    last_layer: torch.Tensor) -> torch.Tensor:
    """VQGAN Eq. 7: ``||grad rec|| / (||grad g|| + 1e-4)`` at the last layer, clamped to 1e4."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


# --------------------------------------------------------------------------- trainer


class TrainableAutoencoder(Protocol):
    """What the trainer needs from an autoencoder (genbench.latents.autoencoder.Autoencoder)."""

    kind: str

    def training_forward(self, x: torch.Tensor, generator: torch.Generator
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def last_layer(self) -> torch.Tensor: ...


@dataclass(frozen=True)
class AutoencoderTrainingConfig:
    """Training settings (LDM ``lossconfig`` and optimiser; defaults: LDDGAN's CIFAR yaml)."""

    steps: int = 1000  # optimiser steps of the autoencoder
    batch_size: int = 32  # LDDGAN CIFAR AE: 32
    lr: float = 1.44e-4  # LDM: base_learning_rate 4.5e-6 x batch 32
    kl_weight: float = 1.0e-6  # KL only; 0 = LDDGAN's no-KL autoencoder (Table 7)
    codebook_weight: float = 1.0  # VQ only: weight of the whole VQ term
    commitment_beta: float = 0.25  # VQ only: beta of the commitment term
    perceptual_weight: float = 1.0  # LPIPS weight (0 disables)
    lpips_weights: str | None = None  # see resolve_lpips
    disc_start: int = 50001  # first step with the adversarial loss
    disc_weight: float = 0.5  # LDM/LDDGAN CIFAR 0.5; VQ-f4 0.75
    disc_layers: int = 3  # NLayerDiscriminator n_layers
    disc_channels: int = 64  # NLayerDiscriminator ndf
    adaptive_disc_weight: bool = True  # VQGAN Eq. 7
    hflip: bool = True  # LDDGAN CIFAR AE data: flip_p 0.5
    ckpt_every: int = 1000  # steps between resumable checkpoints (not part of the cache key)

    def __post_init__(self) -> None:
        checks = {"steps": self.steps >= 0, "batch_size": self.batch_size >= 1,
                  "lr": self.lr > 0, "kl_weight": self.kl_weight >= 0,
                  "codebook_weight": self.codebook_weight >= 0,
                  "commitment_beta": self.commitment_beta >= 0,
                  "perceptual_weight": self.perceptual_weight >= 0,
                  "disc_weight": self.disc_weight >= 0, "disc_layers": self.disc_layers >= 1,
                  "disc_channels": self.disc_channels >= 1, "ckpt_every": self.ckpt_every >= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise UserError(f"invalid autoencoder training setting(s) {', '.join(bad)}: "
                            f"{ {k: getattr(self, k) for k in bad} }")

    def cache_key(self) -> dict[str, Any]:
        """The settings that change the trained weights."""
        return {k: v for k, v in asdict(self).items() if k not in ("ckpt_every", "lpips_weights")}


@contextmanager
def _seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    # Dropout inside diffusers' ResnetBlock2D and module initialisation draw from the global
    # generators; fork them and seed them per use so training is deterministic and resumable
    # without touching the caller's random state.
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def step_seed(seed: int, step: int, stream: int) -> int:
    """A seed for random stream ``stream`` at ``step`` of run ``seed``."""
    return (seed * 1_000_003 + step * 7919 + stream * 104_729) % (2**63)


class AutoencoderTrainer:
    """One autoencoder + PatchGAN discriminator + LPIPS, and their optimisers."""

    def __init__(self, autoencoder: nn.Module, image_channels: int,
                 cfg: AutoencoderTrainingConfig, device: torch.device, seed: int,
                 lpips: LPIPS | None = None) -> None:
        self.ae = autoencoder.to(device)
        self.cfg = cfg
        self.device = device
        self.seed = seed
        with _seeded_global_rng(step_seed(seed, 0, 99), device):
            self.D = NLayerDiscriminator(image_channels, cfg.disc_channels, cfg.disc_layers)
        self.D.to(device)
        self.lpips = lpips.to(device) if lpips is not None and cfg.perceptual_weight > 0 else None
        self.opt_ae = torch.optim.Adam(self.ae.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.step = 0
        self.history: list[dict[str, float]] = []

    def modules(self) -> dict[str, nn.Module]:
        return {"autoencoder": self.ae, "discriminator": self.D}

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "opt_ae": self.opt_ae.state_dict(),
                "opt_d": self.opt_d.state_dict(), "history": self.history}

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.opt_ae.load_state_dict(state["opt_ae"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.history = list(state["history"])

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

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        """One autoencoder step and, from ``disc_start`` on, one discriminator step."""
        cfg = self.cfg
        adversarial = self.step >= cfg.disc_start
        generator = torch.Generator(self.device).manual_seed(step_seed(self.seed, self.step, 1))
        self.ae.train()
        with _seeded_global_rng(step_seed(self.seed, self.step, 2), self.device):
            rec, reg = self.ae.training_forward(x, generator)
            rec_loss = self._reconstruction_loss(x, rec)
            loss = rec_loss + self._regulariser(reg, x)
            out = {"rec": rec_loss.item(), **{k: v.item() for k, v in reg.items()}}
            if adversarial:
                self.D.train()
                g_loss = -self.D(rec).mean()
                weight = (adaptive_weight(rec_loss, g_loss, self.ae.last_layer())
                          if cfg.adaptive_disc_weight else torch.tensor(1.0, device=x.device))
                loss = loss + cfg.disc_weight * weight * g_loss
                out.update(g=g_loss.item(), d_weight=cfg.disc_weight * weight.item())
            self.opt_ae.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_ae.step()
            if adversarial:
                d_loss = hinge_d_loss(self.D(x), self.D(rec.detach()))
                self.opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                self.opt_d.step()
                out["d"] = d_loss.item()
        out["loss"] = loss.item()
        self.step += 1
        return out


def check_discriminator_fits(cfg: AutoencoderTrainingConfig, side: int) -> None:
    """A UserError when the PatchGAN has no output for ``side`` px images (too many layers)."""
    if cfg.disc_start <= cfg.steps and NLayerDiscriminator.output_side(side, cfg.disc_layers) < 1:
        raise UserError(f"disc_layers={cfg.disc_layers} leaves no patch logits for {side} px "
                        f"images; lower latent.disc_layers (1 or 2 for 8-16 px)")


def _batch(images: torch.Tensor, order: torch.Tensor, index: int, cfg: AutoencoderTrainingConfig,
           seed: int, step: int, device: torch.device) -> torch.Tensor:
    from genbench.latents.base import as_model_range

    batch = as_model_range(images[order[index * cfg.batch_size:(index + 1) * cfg.batch_size]])
    if cfg.hflip:
        draws = torch.rand(batch.shape[0], generator=torch.Generator().manual_seed(
            step_seed(seed, step, 3)))
        batch = torch.where(draws.view(-1, 1, 1, 1) < 0.5, batch.flip(-1), batch)
    return batch.to(device)


def train_autoencoder(trainer: AutoencoderTrainer, images: torch.Tensor, ckpt_dir: Path, *,
                      progress: bool = True, stop_after: int | None = None) -> bool:
    """Train to ``cfg.steps`` steps, resuming from ``ckpt_dir`` if it holds a checkpoint.

    ``images``: the training set, uint8 or float in [-1, 1], on the CPU. ``stop_after``: leave
    after that many total steps, as an interruption would (tests). Returns True when complete.
    """
    from genbench.training.adversarial import batches_per_epoch, check_finite, epoch_order

    cfg = trainer.cfg
    steps_per_epoch = batches_per_epoch(images.shape[0], cfg.batch_size, "latent.batch_size")
    found = find_checkpoint(ckpt_dir)
    if found is not None:
        trainer.load_state(load_checkpoint(found, trainer.modules()))
    log_every = max(1, cfg.steps // 200)
    bar = tqdm(total=cfg.steps, initial=trainer.step, desc=f"train {trainer.ae.kind} AE",
               disable=not progress, unit="step", dynamic_ncols=True)
    try:
        while trainer.step < cfg.steps:
            if stop_after is not None and trainer.step >= stop_after:
                save_checkpoint(ckpt_dir, trainer.modules(), trainer.state())
                return False
            epoch, index = divmod(trainer.step, steps_per_epoch)
            order = epoch_order(images.shape[0], trainer.seed, epoch)
            x = _batch(images, order, index, cfg, trainer.seed, trainer.step, trainer.device)
            losses = trainer.train_step(x)
            check_finite(losses, trainer.step, "autoencoder training")
            if trainer.step % log_every == 0 or trainer.step == cfg.steps:
                trainer.history.append({"step": trainer.step, **losses})
            bar.update(1)
            bar.set_postfix(rec=f"{losses['rec']:.4f}")
            if trainer.step % cfg.ckpt_every == 0 and trainer.step < cfg.steps:
                save_checkpoint(ckpt_dir, trainer.modules(), trainer.state())
    except KeyboardInterrupt:
        save_checkpoint(ckpt_dir, trainer.modules(), trainer.state())
        raise
    finally:
        bar.close()
    return True
