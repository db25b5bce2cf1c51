"""Test support: pretrained-extractor weights files with the real architecture, random values.

genbench never ships or downloads weights in tests (no network here); these files exercise the
real loading path (torch-fidelity's ``FeatureExtractorInceptionV3`` of Heusel et al. 2017's
TF-FID Inception, torchvision's VGG16), while the numbers they produce are meaningless.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from genbench.metrics.features import INCEPTION_NAME


def random_weights_file(kind: str, path: str | Path, seed: int = 0) -> Path:
    """Write a ``kind`` ("inception" or "vgg16") state_dict with random values to ``path``."""
    generator = torch.Generator().manual_seed(seed)
    state = {k: _random_like(k, v, generator) for k, v in _skeleton_state(kind).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _skeleton_state(kind: str) -> dict[str, torch.Tensor]:
    if kind == "vgg16":
        import torchvision

        with torch.device("meta"):
            return dict(torchvision.models.vgg16(weights=None).state_dict())
    if kind == "inception":
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        # The constructor insists on loading weights: feed it an empty dict and skip the load.
        class _Skeleton(FeatureExtractorInceptionV3):
            def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
                return None

        with tempfile.TemporaryDirectory() as folder:
            empty = Path(folder) / "empty.pth"
            torch.save({}, empty)
            with torch.device("meta"):
                module = _Skeleton(INCEPTION_NAME, ["2048"], feature_extractor_weights_path=empty)
        return dict(module.state_dict())
    raise ValueError(f"unknown weights kind {kind!r}; use 'inception' or 'vgg16'")


def _random_like(key: str, meta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if meta.dtype == torch.int64:  # BatchNorm num_batches_tracked
        return torch.zeros(meta.shape, dtype=torch.int64)
    if key.endswith("running_var"):
        return torch.ones(meta.shape)
    if key.endswith("running_mean") or key.endswith("bias"):
        return torch.zeros(meta.shape)
    if key.endswith("bn.weight"):
        return torch.ones(meta.shape)
    fan_in = max(1, meta[0].numel()) if meta.dim() > 1 else 1
    return torch.randn(meta.shape, generator=generator) * (2.0 / fan_in) ** 0.5
