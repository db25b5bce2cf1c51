"""Autoencoder latent spaces (KL and VQ), the first stage of LDDGAN (Trinh and Hamagami 2024).

LDDGAN (Sec. 4.2 and 5.1.3, Tables 1 and 7) runs DDGAN in the latent space of a pretrained
autoencoder: LDM's ``AutoencoderKL`` (Rombach et al. 2022) for CIFAR-10 and LSUN Church, the
VQGAN-style ``VQModel`` (Esser et al. 2021) for CelebA-HQ. The architectures here are diffusers'
``AutoencoderKL`` and ``VQModel``, which build the same encoder/decoder as LDM's
``CompVis/latent-diffusion ldm/modules/diffusionmodules/model.py``: with LDDGAN's CIFAR-10
configuration (ch 128, ch_mult [1, 2], 2 res blocks, attention at 16 px, 4 latent channels;
``registry/latent/kl_f2.yaml``) the decode path (post_quant_conv + decoder) has the 8,631,575
parameters and 3.613 GMACs per 32 px image of the official autoencoder built from LDDGAN's
configuration; with the official 33,329,668-parameter generator they make the 41.97 M that
LDDGAN's Table 2 reports for the generator including the decoder.

Conventions, following the official LDDGAN code (``thanhluantrinh/LDDGAN train_ldgan.py``):

* the generator sees ``z / scale_factor`` and ``decode`` multiplies back (a division, unlike
  LDM's multiplication by 1/std), so that latents fit the generator's tanh range [-1, 1];
  ``scale_factor="auto"`` takes max |z| over the training set and its mirror images (the
  denoiser's training flips), rounded up to 3 significant digits, as the official 105.0, 6.0
  and 60.0 do for their autoencoders; a fixed number is checked on the training set the same way;
* KL: ``encode`` returns the posterior mode (mean), deterministic; the official GAN training
  draws ``posterior.sample()`` instead, which with kl_weight 1e-6 (and certainly with 0, where
  the variance collapses) differs from the mode by little;
* VQ: the generator's latent is the pre-quantisation encoder output h, and ``decode`` quantises
  it before decoding: "the integration of a quantization layer within the decoder" (Sec. 4.2).

Differences from LDM's code that diffusers cannot express: dropout is set on diffusers'
``ResnetBlock2D`` modules after construction (same place in the block as LDM's), and
``tanh_out`` is a tanh applied to the decoder output (no parameters, no MACs).

Fitting (training the autoencoder, or loading it from the cache) is
:func:`genbench.training.autoencoder.fit_autoencoder`; this module describes the space, what
identifies a fitted artifact (:meth:`AutoencoderSpace.artifact_payload`) and how the fitted scale
is chosen.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genbench._io import tensor_fingerprint
from genbench.data.base import to_model_range
from genbench.distributed import BatchShard, global_shape, take
from genbench.errors import UserError
from genbench.latents.base import check_image_shape
from genbench.registry import register

_ENCODE_BATCH = 128


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture, in diffusers' terms (LDM's in brackets)."""

    kind: str  # "kl" (AutoencoderKL) or "vq" (VQModel)
    image_channels: int = 3  # [in_channels, out_ch]
    block_out_channels: tuple[int, ...] = (128, 256)  # [ch * ch_mult]; f = 2 ** (levels - 1)
    layers_per_block: int = 2  # [num_res_blocks]; the decoder has one more per level
    latent_channels: int = 4  # [z_channels, embed_dim for KL]
    attn_levels: tuple[int, ...] = (1,)  # levels with attention (0 = full resolution)
    mid_attention: bool = True  # LDM always has the middle attention block
    norm_num_groups: int = 32
    dropout: float = 0.0  # LDDGAN CIFAR: 0.2
    tanh_out: bool = False  # LDDGAN CIFAR: true
    num_vq_embeddings: int = 8192  # VQ [n_embed]
    vq_embed_dim: int | None = None  # VQ [embed_dim]; default latent_channels

    def __post_init__(self) -> None:
        if self.kind not in ("kl", "vq"):
            raise UserError(f"autoencoder kind must be 'kl' or 'vq', got {self.kind!r}")
        levels = len(self.block_out_channels)
        if levels < 1 or min(self.block_out_channels) < 1:
            raise UserError(f"block_out_channels must list positive widths, got "
                            f"{list(self.block_out_channels)}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise UserError(f"every width in block_out_channels {list(self.block_out_channels)} "
                            f"must be divisible by norm_num_groups={self.norm_num_groups}")
        if any(not 0 <= level < levels for level in self.attn_levels):
            raise UserError(f"attn_levels {list(self.attn_levels)} must lie in 0..{levels - 1}")
        if not 0.0 <= self.dropout < 1.0 or self.layers_per_block < 1 or self.latent_channels < 1:
            raise UserError("dropout must be in [0, 1), layers_per_block and latent_channels >= 1")

    @property
    def factor(self) -> int:
        """Downsampling factor f."""
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def generator_channels(self) -> int:
        """Channels of the latent the generator sees."""
        if self.kind == "vq":
            return self.vq_embed_dim or self.latent_channels
        return self.latent_channels

    def cache_key(self) -> dict[str, Any]:
        key = asdict(self)
        if self.kind == "kl":
            key.pop("num_vq_embeddings")
            key.pop("vq_embed_dim")
        return key


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
    lpips_weights: str | None = None  # see genbench.training.lpips.resolve_lpips
    disc_start: int = 50001  # first step with the adversarial loss
    disc_weight: float = 0.5  # LDM/LDDGAN CIFAR 0.5; VQ-f4 0.75
    disc_layers: int = 3  # NLayerDiscriminator n_layers
    disc_channels: int = 64  # NLayerDiscriminator ndf
    adaptive_disc_weight: bool = True  # VQGAN Eq. 7
    hflip: bool = True  # LDDGAN CIFAR AE data: flip_p 0.5
    ckpt_every: int = 1000  # steps between resumable checkpoints (not part of the cache key)
    precision: str = "fp32"  # fp32 | bf16 | fp16: the step under autocast (latent.precision)
    compile: bool = False  # torch.compile of the autoencoder's and discriminator's forward

    def __post_init__(self) -> None:
        from genbench.precision import check_precision

        check_precision(self.precision, "latent.precision")
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
        """The settings that change the trained weights (precision and compile only when not
        at their defaults, so autoencoders fitted before these settings keep their keys)."""
        from genbench.precision import without_defaults

        return without_defaults({k: v for k, v in asdict(self).items()
                                 if k not in ("ckpt_every", "lpips_weights")})


class Autoencoder(nn.Module):
    """A diffusers ``AutoencoderKL`` or ``VQModel`` behind the interface genbench needs."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.kind = cfg.kind
        self.model = _build_diffusers(cfg)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Unscaled latents: the KL posterior mode, or VQ's pre-quantisation h."""
        if self.kind == "kl":
            return self.model.encode(x).latent_dist.mode()
        return self.model.encode(x).latents

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latents -> images (VQ: replaced by their nearest codes first)."""
        if self.kind == "kl":
            return self._decode_quantised(z)
        return self._decode_quantised(self.quantize(z)[0])

    def quantize(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codebook vectors of h [N, D, H, W] (Euclidean, as diffusers' quantizer) and
        their indices [N*H*W]. The codes are looked up, not formed as ``h + (e - h)``, so latents
        with the same codes decode to identical images."""
        codes = self.model.quantize.embedding.weight
        flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        index = torch.cdist(flat.detach(), codes.detach()).argmin(dim=1)
        e = codes[index].view(h.shape[0], h.shape[2], h.shape[3], -1).permute(0, 3, 1, 2)
        return e, index

    def _decode_quantised(self, z_q: torch.Tensor) -> torch.Tensor:
        out = self.model.decoder(self.model.post_quant_conv(z_q))
        return torch.tanh(out) if self.cfg.tanh_out else out

    def training_forward(self, x: torch.Tensor, generator: torch.Generator,
                         shard: BatchShard | None = None
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruction and regulariser terms for one training step.

        KL: decode a posterior sample (LDM ``forward(sample_posterior=True)``); ``kl`` is the KL
        to N(0, I) summed over latent elements, averaged over the batch. VQ: the codebook term
        ``||sg[h] - e||^2`` and the commitment term ``||h - sg[e]||^2`` (van den Oord et al.
        2017 Eq. 3, means over elements) with a straight-through gradient to the encoder.
        """
        if self.kind == "kl":
            posterior = self.model.encode(x).latent_dist
            # mean + std * eps, as the posterior's own sample(); eps drawn for the whole global
            # batch under data parallel, keeping this rank's rows
            mean = posterior.mean
            eps = torch.randn(global_shape(shard, mean.shape), generator=generator,
                              device=mean.device, dtype=mean.dtype)
            rec = self.decode_latent(mean + posterior.std * take(shard, eps))
            return rec, {"kl": posterior.kl().mean()}
        h = self.model.encode(x).latents
        e, _ = self.quantize(h)
        terms = {"codebook": F.mse_loss(e, h.detach()), "commitment": F.mse_loss(h, e.detach())}
        rec = self._decode_quantised(h + (e - h).detach())
        return rec, terms

    def last_layer(self) -> torch.Tensor:
        """The decoder's output convolution weight (VQGAN Eq. 7's adaptive weight)."""
        return self.model.decoder.conv_out.weight

    def decode_path(self) -> nn.Module:
        """The modules ``decode`` runs: [quantize,] post_quant_conv, decoder."""
        return _DecodePath(self)


class _DecodePath(nn.Module):
    """Holds (shares) the decode-side modules, so their parameters can be counted together."""

    def __init__(self, ae: Autoencoder) -> None:
        super().__init__()
        if ae.kind == "vq":
            self.quantize = ae.model.quantize
        self.post_quant_conv = ae.model.post_quant_conv
        self.decoder = ae.model.decoder
        self._decode = ae.decode_latent

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._decode(z)


def _build_diffusers(cfg: AutoencoderConfig) -> nn.Module:
    # diffusers is imported here: its import takes seconds and only autoencoder cells need it.
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.autoencoders.vq_model import VQModel
    from diffusers.models.resnet import ResnetBlock2D

    levels = len(cfg.block_out_channels)
    down = tuple("AttnDownEncoderBlock2D" if i in cfg.attn_levels else "DownEncoderBlock2D"
                 for i in range(levels))
    up = tuple("AttnUpDecoderBlock2D" if levels - 1 - j in cfg.attn_levels else "UpDecoderBlock2D"
               for j in range(levels))
    common = dict(in_channels=cfg.image_channels, out_channels=cfg.image_channels,
                  down_block_types=down, up_block_types=up,
                  block_out_channels=tuple(cfg.block_out_channels),
                  layers_per_block=cfg.layers_per_block, latent_channels=cfg.latent_channels,
                  norm_num_groups=cfg.norm_num_groups, mid_block_add_attention=cfg.mid_attention)
    if cfg.kind == "kl":
        model = AutoencoderKL(**common)
    else:
        model = VQModel(**common, num_vq_embeddings=cfg.num_vq_embeddings,
                        vq_embed_dim=cfg.vq_embed_dim)
    for module in model.modules():
        if isinstance(module, ResnetBlock2D):
            module.dropout = nn.Dropout(cfg.dropout)
    return model


def _round_up(value: float, digits: int = 3) -> float:
    """``value`` rounded up to ``digits`` significant digits (104.37 -> 105.0)."""
    if not value > 0:
        return 1.0
    exponent = math.floor(math.log10(value)) - digits + 1
    step = 10.0 ** exponent
    return round(math.ceil(value / step) * step, max(0, -exponent))


def _parse_scale(scale_factor: float | str) -> float | str:
    if scale_factor == "auto":
        return "auto"
    try:
        value = float(scale_factor)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or not math.isfinite(value):
        raise UserError(f"latent.scale_factor must be 'auto' or a positive number, got "
                        f"{scale_factor!r}")
    return value


class AutoencoderSpace:
    """A KL or VQ autoencoder latent space: fitted (trained or loaded), then encode / decode.

    :func:`genbench.training.autoencoder.fit_autoencoder` fits it and calls :meth:`mark_fitted`.
    ``decode`` works before that (with scale 1 when the scale is "auto") so that the cost of an
    untrained decoder can be profiled; ``encode`` needs a fitted space. The modules follow the
    device of the tensors they are given.
    """

    needs_fit = True

    def __init__(self, arch: AutoencoderConfig, training: AutoencoderTrainingConfig,
                 scale_factor: float | str = "auto", seed: int = 0,
                 check_range: bool = True, checkpoint: str | None = None) -> None:
        self.name = arch.kind
        # a released or imported autoencoder file to load instead of training one
        self.checkpoint = str(checkpoint) if checkpoint else None
        self.arch = arch
        self.training = training
        self.scale_setting = _parse_scale(scale_factor)
        self.check_range = check_range
        self.seed = int(seed)
        with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
            self.autoencoder = Autoencoder(self.arch)
        self.fitted: dict[str, Any] | None = None

    def reinitialise(self) -> None:
        """A fresh autoencoder, its initial weights drawn from torch's global generator (the
        trainer seeds that generator from the space's seed before calling this)."""
        self.autoencoder = Autoencoder(self.arch)
        self.fitted = None

    # ------------------------------------------------------------------ contract

    @property
    def scale_factor(self) -> float:
        """The divisor applied to latents (1.0 while an "auto" scale is not fitted yet)."""
        if self.fitted is not None:
            return float(self.fitted["scale_factor"])
        return 1.0 if self.scale_setting == "auto" else float(self.scale_setting)

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        channels, height, width = check_image_shape(image_shape, self.name)
        f = self.arch.factor
        if channels != self.arch.image_channels:
            raise UserError(
                f"the {self.name} autoencoder takes {self.arch.image_channels}-channel images, the "
                f"dataset has {channels}; set latent.image_channels={channels}"
                + ("" if channels != 3 else f" or choose an RGB preset (latent={self.name}_rgb, "
                                            f"{self.name}_tiny_rgb, or the 3-channel "
                                            f"{self.name}_f* presets)")
            )
        if height % f or width % f:
            raise UserError(
                f"the {self.name} autoencoder downsamples by f={f}, which does not divide the "
                f"{height}x{width} images; use a resolution divisible by {f} or fewer levels"
            )
        return self.arch.generator_channels, height // f, width // f

    def _follow(self, device: torch.device) -> Autoencoder:
        ae = self.autoencoder
        if next(ae.parameters()).device != device:
            ae.to(device)
        if ae.training:
            ae.eval()
        return ae

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> latents / scale_factor (in [-1, 1] on the training set)."""
        if self.fitted is None:
            raise RuntimeError(f"the {self.name} autoencoder is not fitted; fit it first "
                               f"(genbench.training.autoencoder.fit_autoencoder)")
        return self._follow(images.device).encode_latent(images) / self.scale_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [-1, 1] (multiplied back by the scale; VQ quantises)."""
        ae = self._follow(latents.device)
        return ae.decode_latent(latents * self.scale_factor).clamp(-1.0, 1.0)

    def decoder_module(self) -> nn.Module:
        """post_quant_conv + decoder (+ the VQ codebook): what counts as the decoder."""
        return self.autoencoder.decode_path()

    def to(self, device: str | torch.device) -> AutoencoderSpace:
        self.autoencoder.to(device)
        return self

    def identity(self) -> dict[str, Any]:
        """Architecture, training, seed and scale; once fitted the artifact hash too."""
        out = {"name": self.name, "architecture": self.arch.cache_key(),
               "training": self.training.cache_key(), "seed": self.seed,
               "scale_factor": self.scale_setting,
               "encode": "posterior mode" if self.name == "kl" else "pre-quantisation h"}
        if self.checkpoint:
            out["checkpoint"] = self.checkpoint
        if self.fitted is not None:
            out["artifact"] = self.fitted["key"]
            out["scale_factor_value"] = self.fitted["scale_factor"]
        return out

    # ------------------------------------------------------------------ fitting

    def artifact_payload(self, images: torch.Tensor, lpips: str) -> dict[str, Any]:
        """Everything that changes the trained autoencoder (its cache key hashes this)."""
        return {"architecture": self.arch.cache_key(), "training": self.training.cache_key(),
                "seed": self.seed, "data": tensor_fingerprint(images), "lpips": lpips}

    def mark_fitted(self, info: dict[str, Any], *, key: str, folder: Path,
                    device: str | torch.device) -> dict[str, Any]:
        """Freeze the trained (or loaded) autoencoder on ``device`` and choose the scale from
        its latent statistics in ``info``; returns the fitted info."""
        self.autoencoder.requires_grad_(False).eval().to(device)
        self.fitted = {**info, "key": key, "folder": str(folder),
                       "scale_factor": self._resolve_scale(info)}
        return dict(self.fitted)

    @torch.no_grad()
    def latent_statistics(self, images: torch.Tensor, device: str | torch.device
                          ) -> dict[str, Any]:
        """max |z|, mean and std of the unscaled latents of uint8 ``images`` and their mirror
        images (the denoiser's training usually flips: DDGAN's RandomHorizontalFlip)."""
        ae = self.autoencoder.eval().to(device)
        peak, total, total_sq, count = 0.0, 0.0, 0.0, 0
        for batch in images.split(_ENCODE_BATCH):
            x = to_model_range(batch).to(device)
            for view in (x, x.flip(-1)):
                z = ae.encode_latent(view).double()
                peak = max(peak, float(z.abs().max()))
                total += float(z.sum())
                total_sq += float((z * z).sum())
                count += z.numel()
        mean = total / max(count, 1)
        std = math.sqrt(max(total_sq / max(count, 1) - mean * mean, 0.0))
        return {"latent_abs_max": peak, "latent_mean": mean, "latent_std": std,
                "auto_scale_factor": _round_up(peak),
                "latent_statistics_over": "training images and their mirror images"}

    def _resolve_scale(self, info: dict[str, Any]) -> float:
        if self.scale_setting == "auto":
            return float(info["auto_scale_factor"])
        scale = float(self.scale_setting)
        peak = float(info["latent_abs_max"])
        if self.check_range and peak / scale > 1.0 + 1e-6:
            raise UserError(
                f"the {self.name} autoencoder's training latents reach |z| = {peak:.4g}, outside "
                f"the generator's tanh range after dividing by scale_factor={scale:g}; set "
                f"latent.scale_factor=auto or a number >= {peak:.4g}"
            )
        return scale


# --------------------------------------------------------------------------- factories


def _space(kind: str, arch: dict[str, Any], training: dict[str, Any],
           scale_factor: float | str, seed: int, check_range: bool,
           checkpoint: str | None) -> AutoencoderSpace:
    arch = {**arch, "block_out_channels": tuple(int(c) for c in arch["block_out_channels"]),
            "attn_levels": tuple(int(a) for a in arch["attn_levels"])}
    return AutoencoderSpace(AutoencoderConfig(kind=kind, **arch),
                            AutoencoderTrainingConfig(**training),
                            scale_factor=scale_factor, seed=seed, check_range=check_range,
                            checkpoint=checkpoint)


@register("latent", "kl",
          paper="Rombach et al. 2022 (LDM AutoencoderKL); Trinh and Hamagami 2024 (LDDGAN)",
          description="KL autoencoder (diffusers AutoencoderKL), trained with L1+LPIPS+PatchGAN")
def kl(
    image_channels: int = 3,  # channels of the dataset's images
    block_out_channels: list[int] = (128, 256),  # LDM ch * ch_mult; f = 2 ** (len - 1)
    layers_per_block: int = 2,  # LDM num_res_blocks
    latent_channels: int = 4,  # LDM z_channels = embed_dim
    attn_levels: list[int] = (1,),  # levels with attention; LDDGAN CIFAR: 16 px = level 1
    mid_attention: bool = True,
    norm_num_groups: int = 32,
    dropout: float = 0.0,
    tanh_out: bool = False,
    scale_factor: float | str = "auto",  # latents are divided by it; "auto": max |z|
    check_range: bool = True,  # a fixed scale_factor must put training latents in [-1, 1]
    seed: int = 0,  # initialisation, data order, flips, posterior samples, dropout
    steps: int = 1000,
    batch_size: int = 32,
    lr: float = 1.44e-4,
    kl_weight: float = 1.0e-6,  # 0: LDDGAN's recommended no-KL autoencoder (Table 7)
    perceptual_weight: float = 1.0,
    lpips_weights: str | None = None,
    disc_start: int = 50001,
    disc_weight: float = 0.5,
    disc_layers: int = 3,
    disc_channels: int = 64,
    adaptive_disc_weight: bool = True,
    hflip: bool = True,
    ckpt_every: int = 1000,
    precision: str = "fp32",  # training under autocast: fp32 | bf16 | fp16
    compile: bool = False,  # torch.compile of the training forward passes
    checkpoint: str | None = None,  # LDM/LDDGAN .ckpt or `genbench import` output: no training
) -> AutoencoderSpace:
    """KL autoencoder latent space (LDM AutoencoderKL; LDDGAN CIFAR-10 / LSUN)."""
    arch = dict(image_channels=image_channels, block_out_channels=block_out_channels,
                layers_per_block=layers_per_block, latent_channels=latent_channels,
                attn_levels=attn_levels, mid_attention=mid_attention,
                norm_num_groups=norm_num_groups, dropout=dropout, tanh_out=tanh_out)
    training = dict(steps=steps, batch_size=batch_size, lr=lr, kl_weight=kl_weight,
                    perceptual_weight=perceptual_weight, lpips_weights=lpips_weights,
                    disc_start=disc_start, disc_weight=disc_weight, disc_layers=disc_layers,
                    disc_channels=disc_channels, adaptive_disc_weight=adaptive_disc_weight,
                    hflip=hflip, ckpt_every=ckpt_every, precision=precision, compile=compile)
    return _space("kl", arch, training, scale_factor, seed, check_range, checkpoint)


@register("latent", "vq", paper="Esser et al. 2021 (VQGAN); Trinh and Hamagami 2024 (LDDGAN)",
          description="VQ autoencoder (diffusers VQModel), quantisation inside the decoder")
def vq(
    image_channels: int = 3,  # channels of the dataset's images
    block_out_channels: list[int] = (128, 256, 512),  # LDM ch * ch_mult; f = 2 ** (len - 1)
    layers_per_block: int = 2,  # LDM num_res_blocks
    latent_channels: int = 3,  # LDM z_channels
    num_vq_embeddings: int = 8192,  # LDM n_embed
    vq_embed_dim: int | None = None,  # LDM embed_dim (default latent_channels)
    attn_levels: list[int] = (),
    mid_attention: bool = True,
    norm_num_groups: int = 32,
    dropout: float = 0.0,
    tanh_out: bool = False,
    scale_factor: float | str = "auto",  # pre-quantisation latents are divided by it
    check_range: bool = True,
    seed: int = 0,
    steps: int = 1000,
    batch_size: int = 32,
    lr: float = 1.44e-4,
    codebook_weight: float = 1.0,
    commitment_beta: float = 0.25,
    perceptual_weight: float = 1.0,
    lpips_weights: str | None = None,
    disc_start: int = 0,
    disc_weight: float = 0.75,
    disc_layers: int = 3,
    disc_channels: int = 64,
    adaptive_disc_weight: bool = True,
    hflip: bool = True,
    ckpt_every: int = 1000,
    precision: str = "fp32",  # training under autocast: fp32 | bf16 | fp16
    compile: bool = False,  # torch.compile of the training forward passes
    checkpoint: str | None = None,  # a `genbench import` / genbench autoencoder file
) -> AutoencoderSpace:
    """VQ autoencoder latent space (VQGAN / LDM VQModel; LDDGAN CelebA-HQ)."""
    arch = dict(image_channels=image_channels, block_out_channels=block_out_channels,
                layers_per_block=layers_per_block, latent_channels=latent_channels,
                num_vq_embeddings=num_vq_embeddings, vq_embed_dim=vq_embed_dim,
                attn_levels=attn_levels, mid_attention=mid_attention,
                norm_num_groups=norm_num_groups, dropout=dropout, tanh_out=tanh_out)
    training = dict(steps=steps, batch_size=batch_size, lr=lr, kl_weight=0.0,
                    codebook_weight=codebook_weight, commitment_beta=commitment_beta,
                    perceptual_weight=perceptual_weight, lpips_weights=lpips_weights,
                    disc_start=disc_start, disc_weight=disc_weight, disc_layers=disc_layers,
                    disc_channels=disc_channels, adaptive_disc_weight=adaptive_disc_weight,
                    hflip=hflip, ckpt_every=ckpt_every, precision=precision, compile=compile)
    return _space("vq", arch, training, scale_factor, seed, check_range, checkpoint)
