"""LPIPS, the perceptual distance of Zhang et al. 2018 ("The unreasonable effectiveness of deep
features as a perceptual metric"), with VGG16 features, as VQGAN (Esser et al. 2021) and LDM
(Rombach et al. 2022) add it to their autoencoders' reconstruction loss
(``CompVis/taming-transformers taming/modules/losses/lpips.py``).

Why not torch-fidelity's ``sample_similarity_lpips.SampleSimilarityLPIPS`` (0.4): its constructor
fetches both weight files through ``torch.hub`` (``load_state_dict_from_url`` for the linear
layers and ``torchvision.models.vgg16(weights=IMAGENET1K_V1)`` for VGG16) from fixed names in the
hub cache, with no argument for a local file, and downloads them when they are absent; it also
takes only 3-channel inputs scaled to 0..255. genbench must load configured, SHA-256-verified
files offline (``latent.lpips_weights``, ``$GENBENCH_WEIGHTS``), say which file is missing instead
of downloading, and train on grey images, so the network is built here (same layers, same
normalisation constants, same state-dict keys as torchvision's VGG16 and the official
``richzhang/PerceptualSimilarity lpips/weights/v0.1/vgg.pth``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from genbench._io import sha256_file
from genbench.errors import MissingWeightsError, UserError
from genbench.metrics.weights import (
    LPIPS_LINEAR_SHA256,
    VGG16,
    load_state_dict,
    resolve_spec,
    resolve_weights,
)

LPIPS_CHANNELS = (64, 128, 256, 512, 512)  # VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # torchvision vgg16().features
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # LPIPS ScalingLayer (inputs in [-1, 1])
_LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_LIN_FILE = "vgg.pth"  # richzhang/PerceptualSimilarity lpips/weights/v0.1/vgg.pth
LPIPS_MIN_SIDE = 16  # smallest side at which all five VGG16 stages keep a pixel


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
    """``torch.load(weights_only=True)`` only (a crafted file cannot run code); one-line errors."""
    return load_state_dict(path)


def _strict_load(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"weights file {path} does not fit LPIPS/VGG16 ({first})") from None


def resolve_lpips(weights: str | None) -> tuple[list[Path], str]:
    """The LPIPS weights files and a status: ``"used"`` or ``"missing: <why>"``.

    ``weights``: a genbench ``.safetensors`` LPIPS file, or a folder holding torchvision's
    ``vgg16-397923af.pth`` and LPIPS' ``vgg.pth`` (both checked against their full SHA-256, then
    read with ``weights_only=True``), or None to look in the torch-hub checkpoint
    folder and ``$GENBENCH_WEIGHTS``. A configured path that does not exist is an error; nothing
    found without one is reported as missing (nothing is downloaded).
    """
    if weights is not None and Path(weights).expanduser().is_file():
        return [Path(weights).expanduser()], "used"
    try:
        vgg = resolve_spec(replace(VGG16, config_key="latent.lpips_weights"), path=weights)
        lin = resolve_weights("LPIPS linear layers", LPIPS_LIN_FILE, path=weights,
                              sha256=LPIPS_LINEAR_SHA256, config_key="latent.lpips_weights")
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
    return ",".join(sha256_file(p) for p in files) if files else "none"
