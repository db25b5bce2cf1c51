"""The sampling fast path: ``eval.precision``, ``eval.compile`` and ``eval.channels_last``.

Three options that change how the networks of a sampling pass run, never what the sampler
computes between the network calls:

- ``eval.precision=fp32|bf16|fp16``: the denoiser and the latent decode run under
  ``torch.autocast`` with that dtype (fp32: no autocast); their outputs are cast back to float32,
  so the sampler's posterior arithmetic and the noise streams stay float32 and the random
  numbers (:mod:`genbench.samplers.noise`) are the same as in fp32.
- ``eval.compile=true``: the denoiser and the decode are wrapped by ``torch.compile`` with
  ``eval.compile_mode`` (default ``reduce-overhead``: Inductor kernels replayed as CUDA graphs on
  a GPU; on a CPU torch skips the graphs and the mode is Inductor alone). With CUDA graphs an
  output buffer is reused by the next replay, so the wrapper hands the sampler a copy.
- ``eval.channels_last=true``: the denoiser's and decoder's parameters and the denoiser's input
  in the channels-last memory layout (cuDNN/oneDNN convolutions in NHWC), on copies of the
  modules, so the fp32 reference pass runs the untouched ones.

A cell sampled with any of them also samples the same seeds once more with the plain fp32 path
(:func:`genbench.harness.evaluate.measure_fp32_reference`): the FID difference to fp32 is in
the record beside the speed, so speed is never bought with a silent loss of quality.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from genbench.errors import UserError
from genbench.metrics.cost import Forwarding
from genbench.precision import PRECISIONS, check_precision, dtype_of
from genbench.precision import autocast as autocast_to

COMPILE_MODES = ("reduce-overhead", "default", "max-autotune", "max-autotune-no-cudagraphs")
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that use graphs
# the plain path, and what cell names leave out (cells named before these settings existed)
DEFAULTS = {"precision": "fp32", "compile": False, "compile_mode": "reduce-overhead",
            "channels_last": False}


@dataclass(frozen=True)
class FastPath:
    """The fast-path settings of ``eval`` (the plain fp32 path when all are at their defaults)."""

    precision: str = "fp32"
    compile: bool = False
    compile_mode: str = "reduce-overhead"
    channels_last: bool = False

    def __post_init__(self) -> None:
        check_precision(self.precision, "eval.precision")
        if self.compile_mode not in COMPILE_MODES:
            raise UserError(f"eval.compile_mode={self.compile_mode!r}; use one of "
                            f"{', '.join(COMPILE_MODES)}")

    @classmethod
    def from_eval(cls, eval_cfg: dict[str, Any]) -> FastPath:
        """The settings of an ``eval`` section (missing keys: the defaults)."""
        return cls(precision=str(eval_cfg.get("precision", "fp32")),
                   compile=bool(eval_cfg.get("compile", False)),
                   compile_mode=str(eval_cfg.get("compile_mode", "reduce-overhead")),
                   channels_last=bool(eval_cfg.get("channels_last", False)))

    @property
    def active(self) -> bool:
        """Whether anything differs from the plain fp32 path."""
        return self.precision != "fp32" or self.compile or self.channels_last

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: fp32, no autocast)."""
        return dtype_of(self.precision)

    def uses_cuda_graphs(self, device: torch.device) -> bool:
        """Whether compiled calls replay CUDA graphs (whose output buffers are reused)."""
        return self.compile and self.compile_mode in _CUDA_GRAPH_MODES and device.type == "cuda"

    def settings(self, device: torch.device) -> dict[str, Any]:
        """What the record keeps: the options, and how they were applied on ``device``."""
        return {
            "precision": self.precision,
            "autocast": None if self.dtype is None else f"torch.autocast({device.type!r}, "
                                                        f"{str(self.dtype).removeprefix('torch.')})",
            "compile": self.compile,
            "compile_mode": self.compile_mode if self.compile else None,
            "cuda_graphs": self.uses_cuda_graphs(device),
            "channels_last": self.channels_last,
            "tf32": _tf32_flags() if device.type == "cuda" else None,
        }

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for this precision on ``device`` (a null context for fp32)."""
        return autocast_to(self.precision, device)


def _tf32_flags() -> dict[str, bool]:
    """Whether fp32 convolutions and matmuls may use TF32 tensor cores (torch's flags)."""
    return {"cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}


class FastDenoiser(Forwarding):
    """A denoiser ``net(x, t, z)`` run with the fast path; its output is float32."""

    def __init__(self, net: nn.Module, fast: FastPath, device: torch.device) -> None:
        super().__init__()
        if fast.channels_last:
            net = copy.deepcopy(net).to(memory_format=torch.channels_last)
        self.inner = net
        self.fast = fast
        self.device = torch.device(device)
        self._call = torch.compile(net, mode=fast.compile_mode) if fast.compile else net
        self._copy_out = fast.uses_cuda_graphs(self.device)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                z: torch.Tensor | None = None) -> torch.Tensor:
        """The denoiser's output for ``(x, t, z)``, computed with the fast path, as float32."""
        if self.fast.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.fast.autocast(self.device):
            out = self._call(x, t, z)
        return _as_float32(out, self._copy_out)


class FastLatent:
    """A latent space whose ``decode`` runs with the fast path (float32 out); the rest is the
    wrapped space's."""

    def __init__(self, latent: Any, fast: FastPath, device: torch.device) -> None:
        if fast.channels_last and latent.decoder_module() is not None:
            latent = copy.deepcopy(latent)
            latent.decoder_module().to(memory_format=torch.channels_last)
        self.inner = latent
        self.fast = fast
        self.device = torch.device(device)
        self._decode = torch.compile(latent.decode, mode=fast.compile_mode) \
            if fast.compile and latent.decoder_module() is not None else latent.decode
        self._copy_out = fast.uses_cuda_graphs(self.device)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (float32) of ``latents``, decoded with the fast path."""
        with self.fast.autocast(self.device):
            images = self._decode(latents)
        return _as_float32(images, self._copy_out)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _as_float32(out: torch.Tensor, copy_out: bool) -> torch.Tensor:
    """``out`` as float32; a fresh tensor when ``copy_out`` (a CUDA graph's reused buffer)."""
    if out.dtype != torch.float32:
        return out.float()  # a new tensor already
    return out.clone() if copy_out else out


@dataclass(frozen=True)
class Prepared:
    """The networks of a sampling pass as the fast path runs them (the given ones when it is
    off), and the settings used."""

    net: nn.Module
    latent: Any
    fast: FastPath
    device: torch.device

    def settings(self) -> dict[str, Any]:
        """:meth:`FastPath.settings` on this device."""
        return self.fast.settings(self.device)


def prepare(net: nn.Module, latent: Any, fast: FastPath, device: torch.device) -> Prepared:
    """``net`` and ``latent`` wrapped for ``fast`` (unchanged when it is the plain fp32 path).
    The given modules are never modified: channels-last works on copies."""
    device = torch.device(device)
    if not fast.active:
        return Prepared(net, latent, fast, device)
    return Prepared(FastDenoiser(net, fast, device), FastLatent(latent, fast, device), fast,
                    device)


def uint8_difference(fast: torch.Tensor, reference: torch.Tensor) -> dict[str, Any]:
    """How far the fast path's uint8 images are from the fp32 path's on the same seeds:
    ``max_abs`` (0..255) over all pixels, ``mean_abs``, the mean over samples of each sample's
    max abs difference, and the fraction of samples that are bit-identical."""
    if fast.shape != reference.shape:
        raise ValueError(f"sample sets differ in shape: {tuple(fast.shape)} and "
                         f"{tuple(reference.shape)}")
    diff = (fast.to(torch.int16) - reference.to(torch.int16)).abs()
    per_sample = diff.flatten(1).amax(dim=1).to(torch.float64)
    return {"max_abs": int(diff.max()) if diff.numel() else 0,
            "mean_abs": float(diff.to(torch.float64).mean()) if diff.numel() else 0.0,
            "mean_per_sample_max_abs": float(per_sample.mean()) if per_sample.numel() else 0.0,
            "identical_fraction": float((per_sample == 0).to(torch.float64).mean())
            if per_sample.numel() else 1.0}


__all__ = ["COMPILE_MODES", "DEFAULTS", "PRECISIONS", "FastDenoiser", "FastLatent", "FastPath",
           "Prepared", "prepare", "uint8_difference"]
