"""Released checkpoints of the official DDGAN, WaveDiff, LDDGAN and U-ViT code, read safely and
converted to genbench's parameter names.

The files, as the official repositories publish them:

* DDGAN ``netG_<epoch>.pth`` (Xiao et al. 2022; ``NVlabs/denoising-diffusion-gan
  train_ddgan.py`` at commit 6818ded6443e10ab69c7864745457ce391d4d883 saves
  ``netG.state_dict()`` after swapping in the EMA parameters, and ``test_ddgan.py`` strips the
  ``module.`` prefix of the DistributedDataParallel wrapper before loading): a flat state dict
  of ``NCSNpp`` whose keys start with ``module.``;
* WaveDiff ``netG_<epoch>.pth`` (Phung et al. 2023; ``VinAIResearch/WaveDiff train_wddgan.py``
  at commit f1ad48bbc7a8bb95fc90f87e7811ac2513a4411e): the same layout, of ``NCSNpp`` or, for
  ``--net_type wavelet`` (the 256 px and larger releases), of ``WaveletNCSNpp``, whose
  ``WaveletResnetBlockBigGANpp_Adagn`` blocks hold ``convH_0`` (``score_sde/models/layerspp.py``);
* LDDGAN ``netG_<epoch>.pth`` (Trinh and Hamagami 2024; ``thanhluantrinh/LDDGAN train_ldgan.py``
  at commit d27380b2863eb51e65bb8651680bcd9f59ea04f0): the same layout again; its autoencoder is
  a PyTorch Lightning ``.ckpt`` whose ``state_dict`` holds LDM's ``AutoencoderKL``
  (``ldm/models/autoencoder.py``: ``encoder.``, ``decoder.``, ``quant_conv.``,
  ``post_quant_conv.``) and its training loss (``loss.``: LPIPS and the PatchGAN discriminator,
  dropped here); ``train_ldgan.py`` loads it with ``load_state_dict(checkpoint['state_dict'])``;
* U-ViT ``cifar10_uvit_small.pth`` (Bao et al. 2023; ``baofff/U-ViT`` at commit
  ce551708dc9cde9818d2af7d84dfadfeb7bd9034, ``libs/uvit.py``): a plain state dict of the EMA
  network, no prefix.

genbench's NCSN++ and U-ViT use the official parameter names (tests/test_parity_ddgan.py and
tests/test_released.py load official state dicts strictly), so a generator needs only its
wrapper prefix removed. The LDM autoencoder is renamed to diffusers' ``AutoencoderKL`` by
diffusers' own converter of original LDM checkpoints
(``diffusers.loaders.single_file_utils.convert_ldm_vae_checkpoint``), whose resnets, samplers and
middle attention this uses as is; that converter leaves the attention blocks inside the levels
(LDDGAN's CIFAR-10 autoencoder has them at 16 px: ``attn_resolutions: [16]``) under their LDM
names, so those are renamed with diffusers' own ``update_vae_attentions_ldm_to_diffusers`` too.

Files are read with ``torch.load(weights_only=True)``: PyTorch's restricted unpickler builds
tensors and plain containers and refuses every other class, so nothing in a file runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genbench.errors import UserError, short_reason

MODULE_PREFIX = "module."  # torch.nn.parallel.DistributedDataParallel's
LIGHTNING_LOSS_PREFIX = "loss."  # LDM's LPIPSWithDiscriminator inside the Lightning module
# the distinctive parameter of WaveDiff's WaveletResnetBlockBigGANpp_Adagn (layerspp.py)
_WAVELET_KEY = re.compile(r"(^|\.)convH_0\.")


@dataclass
class Released:
    """A released file converted to genbench's names.

    ``format`` names the official layout; ``role`` is "generator" or "autoencoder"; ``family``
    the network family ("ncsnpp", "wavelet_ncsnpp", "uvit", "ldm_kl"); ``implied`` what the
    weights' shapes say about the configuration; ``dropped`` the keys left out (loss weights).
    """

    format: str
    role: str
    family: str
    state: dict[str, torch.Tensor]
    implied: dict[str, Any] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def read_untrusted(path: str | Path) -> Any:
    """``torch.load`` of a released file through PyTorch's restricted unpickler (tensors and
    plain containers only); anything else, or an unreadable file, is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for any class beyond tensors and containers
        raise UserError(f"checkpoint {path} cannot be read safely ({short_reason(exc)}); only "
                        f"state dicts of tensors are accepted, nothing in a file is run") from None


def is_torch_file(path: str | Path) -> bool:
    """True for a ``torch.save`` file (a zip archive, or a legacy pickle: protocol 2+ opcode
    0x80), False for anything else. A safetensors file (an 8-byte little-endian header length,
    then a JSON header starting with ``{``) is never taken for one, whatever its first byte."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) == 9 and head[8:9] == b"{" and \
            int.from_bytes(head[:8], "little") + 8 <= path.stat().st_size:
        return False
    return head[:2] == b"PK" or head[:1] == b"\x80"


def _tensors(mapping: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(mapping, dict) or not mapping:
        raise UserError(f"checkpoint {path} holds no {what} (a non-empty dict of tensors)")
    bad = [k for k, v in mapping.items() if not isinstance(k, str) or
           not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"checkpoint {path}: {what} entry {bad[0]!r} is not a named tensor")
    return dict(mapping)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` without ``prefix`` when every key has it (the DDP wrapper's ``module.``)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def convert(obj: Any, path: str | Path = "<file>") -> Released:
    """Recognise the official layout of an unpickled released file and convert it."""
    path = Path(path)
    if isinstance(obj, dict) and "state_dict" in obj:
        return _convert_lightning(_tensors(obj["state_dict"], path, "Lightning state_dict"), path)
    if isinstance(obj, dict) and ("netG_dict" in obj or "netD_dict" in obj):
        raise UserError(f"checkpoint {path} is an official training checkpoint (content.pth: "
                        f"netG_dict, netD_dict, optimisers), not the released EMA generator; "
                        f"pass the netG_<epoch>.pth file the training saved")
    state = strip_prefix(_tensors(obj, path, "state dict"), MODULE_PREFIX)
    wrapped = next(iter(_tensors(obj, path, "state dict"))).startswith(MODULE_PREFIX)
    if any(k.startswith("all_modules.") for k in state):
        wavelet = any(_WAVELET_KEY.search(k) for k in state)
        return Released(format="ddgan netG (DDP-wrapped)" if wrapped else "ddgan netG",
                        role="generator", family="wavelet_ncsnpp" if wavelet else "ncsnpp",
                        state=state, implied=_ncsnpp_implied(state))
    if "pos_embed" in state and "patch_embed.proj.weight" in state:
        return Released(format="u-vit state dict", role="generator", family="uvit",
                        state=state, implied=_uvit_implied(state))
    if any(k.startswith("encoder.conv_in.") for k in state):
        return _convert_lightning(state, path)
    first = sorted(state)[:3]
    raise UserError(f"checkpoint {path} is not a known released layout (first keys {first}); "
                    f"known: DDGAN/WaveDiff/LDDGAN netG_*.pth, U-ViT *.pth, LDM autoencoder .ckpt")


def _ncsnpp_implied(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What the official ``NCSNpp`` weights fix: ``all_modules.0`` is the first time-embedding
    Linear (nf -> 4 nf), ``all_modules.2`` the input conv (channels -> nf), ``z_transform`` the
    z mapping network (PixelNorm, a Linear from nz, then ``n_mlp`` Linear layers)."""
    implied: dict[str, Any] = {}
    if "all_modules.0.weight" in state:
        implied["nf"] = int(state["all_modules.0.weight"].shape[1])
    conv = state.get("all_modules.2.weight")
    if conv is not None and conv.dim() == 4:
        implied["in_channels"] = int(conv.shape[1])
    mlp = sorted(int(m.group(1)) for k in state
                 if (m := re.match(r"z_transform\.(\d+)\.weight$", k)))
    if mlp:
        implied["z_dim"] = int(state[f"z_transform.{mlp[0]}.weight"].shape[1])
        implied["z_emb_dim"] = int(state[f"z_transform.{mlp[0]}.weight"].shape[0])
        implied["n_mlp"] = len(mlp) - 1  # nz -> z_emb_dim, then n_mlp z_emb_dim -> z_emb_dim
    else:
        implied["z_dim"] = 0
    return implied


def _uvit_implied(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``libs/uvit.py``: patch_embed.proj is [D, C, p, p]; pos_embed [1, extras + (H/p)^2, D]
    with one extra token (time); in_blocks and out_blocks around one mid_block."""
    proj = state["patch_embed.proj.weight"]
    patch = int(proj.shape[-1])
    tokens = int(state["pos_embed"].shape[1]) - 1
    side = round(tokens ** 0.5)
    depth = len({k.split(".")[1] for k in state if k.startswith("in_blocks.")})
    return {"in_channels": int(proj.shape[1]), "patch_size": patch, "embed_dim": int(proj.shape[0]),
            "resolution": side * patch, "depth": 2 * depth,
            "z_dim": 0 if not any(".style." in k for k in state) else None}


def _convert_lightning(state: dict[str, torch.Tensor], path: Path) -> Released:
    """An LDM first-stage autoencoder from a Lightning checkpoint's ``state_dict``."""
    dropped = sorted(k for k in state if k.startswith(LIGHTNING_LOSS_PREFIX))
    state = {k: v for k, v in state.items() if not k.startswith(LIGHTNING_LOSS_PREFIX)}
    state = strip_prefix(state, "first_stage_model.")
    if not any(k.startswith("encoder.conv_in.") for k in state):
        raise UserError(f"checkpoint {path} is a Lightning checkpoint without an LDM autoencoder "
                        f"(no encoder.conv_in); first keys {sorted(state)[:3]}")
    if any(k.startswith("quantize.") for k in state):
        raise UserError(f"checkpoint {path} is an LDM VQ autoencoder (quantize.embedding); only "
                        f"the KL autoencoder (LDDGAN CIFAR-10 / LSUN) can be imported so far")
    levels = sorted({int(m.group(1)) for k in state
                     if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    ch = int(state["encoder.conv_in.weight"].shape[0])
    widths = [int(state[f"encoder.down.{i}.block.0.conv2.weight"].shape[0]) for i in levels]
    blocks = len({k.split(".")[4] for k in state if k.startswith("encoder.down.0.block.")})
    attn = [i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in state]
    implied = {"kind": "kl", "image_channels": int(state["encoder.conv_in.weight"].shape[1]),
               "block_out_channels": widths, "layers_per_block": blocks,
               "latent_channels": int(state["post_quant_conv.weight"].shape[1]),
               "attn_levels": attn, "mid_attention": "encoder.mid.attn_1.q.weight" in state,
               "ch": ch}
    return Released(format="ldm autoencoder (Lightning .ckpt)", role="autoencoder",
                    family="ldm_kl", state=ldm_kl_to_diffusers(state, len(levels)),
                    implied=implied, dropped=dropped)


def ldm_kl_to_diffusers(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """LDM ``AutoencoderKL`` names -> diffusers ``AutoencoderKL`` names, by diffusers' converter
    of original LDM VAE checkpoints plus its attention renaming for the in-level attention."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_vae_checkpoint,
        update_vae_attentions_ldm_to_diffusers,
    )

    config = {"down_block_types": [None] * levels, "up_block_types": [None] * levels}
    converted = convert_ldm_vae_checkpoint(state, config)
    # The converter passes the in-level attention keys through unchanged; rename them here.
    leftover = [k for k in converted if re.match(r"(encoder\.down|decoder\.up)\.\d+\.attn\.", k)]
    for key in leftover:
        del converted[key]
    for i in range(levels):
        keys = [k for k in state if k.startswith(f"encoder.down.{i}.attn.")]
        update_vae_attentions_ldm_to_diffusers(
            keys, converted, state,
            mapping={"old": f"down.{i}.attn", "new": f"down_blocks.{i}.attentions"})
        block_id = levels - 1 - i  # LDM numbers decoder levels from the lowest resolution up
        keys = [k for k in state if k.startswith(f"decoder.up.{block_id}.attn.")]
        update_vae_attentions_ldm_to_diffusers(
            keys, converted, state,
            mapping={"old": f"up.{block_id}.attn", "new": f"up_blocks.{i}.attentions"})
    return converted


def check_fits(state: dict[str, torch.Tensor], module: torch.nn.Module, what: str,
               path: str | Path, hint: str = "") -> None:
    """Load nothing; raise a UserError naming the first mismatching keys and shapes when
    ``state`` does not fit ``module`` exactly (never a partial, ``strict=False`` load)."""
    problems = mismatches(state, {k: tuple(v.shape) for k, v in module.state_dict().items()})
    if problems:
        raise UserError(f"checkpoint {path} does not fit the configured {what} "
                        f"({'; '.join(problems[:3])}{'; ...' if len(problems) > 3 else ''})"
                        f"{hint}")


def mismatches(state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The differences between a state dict and the shapes a network wants, in key order."""
    out = []
    for key in sorted(set(shapes) | set(state)):
        if key not in state:
            out.append(f"missing {key} {list(shapes[key])}")
        elif key not in shapes:
            out.append(f"unexpected {key} {list(state[key].shape)}")
        elif tuple(state[key].shape) != shapes[key]:
            out.append(f"{key} is {list(state[key].shape)}, the network's is "
                       f"{list(shapes[key])}")
    return out


# under genbench's cache folder: <cache_dir>/released/<sha256>.safetensors
CACHE_FOLDER = "released"
_INFO_KEY = "genbench_released"


def load_converted(path: str | Path, cache_dir: str | Path | None) -> tuple[Released, str]:
    """(the converted file, its SHA-256), converted once and cached by the SHA-256.

    The conversion is kept as ``<cache_dir>/released/<sha256>.safetensors`` (written atomically;
    its metadata records the format, family, implied configuration and dropped keys), so a
    second use reads safetensors and unpickles nothing. A cached file that does not read is
    converted again.
    """
    import json

    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file, save_file

    from genbench._io import atomic_write_with, sha256_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint file not found: {path}")
    sha = sha256_file(path)
    cached = Path(cache_dir) / CACHE_FOLDER / f"{sha}.safetensors" if cache_dir else None
    if cached is not None and cached.is_file():
        try:
            with safe_open(str(cached), framework="pt") as handle:
                info = json.loads((handle.metadata() or {})[_INFO_KEY])
            return Released(state=load_file(str(cached)), **info), sha
        except (SafetensorError, OSError, ValueError, KeyError, TypeError):
            pass  # converted again below
    released = convert(read_untrusted(path), path)
    if cached is not None:
        info = {"format": released.format, "role": released.role, "family": released.family,
                "implied": released.implied, "dropped": released.dropped}
        state = {k: v.contiguous() for k, v in released.state.items()}
        atomic_write_with(cached, lambda tmp: save_file(
            state, str(tmp), metadata={_INFO_KEY: json.dumps(info), "sha256": sha}))
    return released, sha
