"""Checkpoints: weights as safetensors, training state as a torch file, both written atomically.

A checkpoint is a directory holding ``weights.safetensors`` (every module's state, keys prefixed
by the module's name) and ``state.pt`` (optimizers, schedulers, counters, random-generator
states). It is assembled in a hidden sibling and swapped into place (:mod:`genbench._io`), so a
crash leaves either the previous checkpoint or the new one, never half of each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genbench._io import atomic_write_with, previous_version, staging_dir, swap_dir
from genbench.errors import UserError

WEIGHTS = "weights.safetensors"
STATE = "state.pt"


def _flat_state(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    flat = {}
    for prefix, module in modules.items():
        for key, value in module.state_dict().items():
            flat[f"{prefix}.{key}"] = value.detach().to("cpu").contiguous().clone()
    return flat


def save_weights(path: Path, modules: dict[str, torch.nn.Module],
                 metadata: dict[str, str] | None = None) -> None:
    """Save modules' states into one safetensors file, atomically."""
    flat = _flat_state(modules)
    atomic_write_with(path, lambda tmp: save_file(flat, str(tmp), metadata=metadata))


def load_weights(path: Path, modules: dict[str, torch.nn.Module]) -> None:
    """Load a :func:`save_weights` file strictly into ``modules`` (mismatches are errors)."""
    try:
        flat = load_file(str(path))
    except FileNotFoundError:
        raise UserError(f"checkpoint file not found: {path}") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint {path} is corrupt ({exc}); delete it to retrain") from None
    for prefix, module in modules.items():
        part = {k[len(prefix) + 1:]: v for k, v in flat.items() if k.startswith(prefix + ".")}
        try:
            module.load_state_dict(part, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(
                f"checkpoint {path} does not fit the configured {prefix} ({first}); "
                f"check the backbone settings or delete the checkpoint"
            ) from None


def save_checkpoint(directory: Path, modules: dict[str, torch.nn.Module],
                    state: dict[str, Any]) -> None:
    """Write weights and training state into ``directory`` as one atomic unit."""
    with staging_dir(directory) as tmp:
        save_file(_flat_state(modules), str(tmp / WEIGHTS))
        torch.save(state, tmp / STATE)
        swap_dir(tmp, directory)


def find_checkpoint(directory: Path) -> Path | None:
    """The complete checkpoint at ``directory`` (or the previous one if a swap was cut short)."""
    for candidate in (directory, *previous_version(directory)):
        if (candidate / WEIGHTS).is_file() and (candidate / STATE).is_file():
            return candidate
    return None


def load_checkpoint(directory: Path, modules: dict[str, torch.nn.Module]) -> dict[str, Any]:
    """Load weights into ``modules`` and return the training state."""
    load_weights(directory / WEIGHTS, modules)
    try:
        return torch.load(directory / STATE, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle/zip errors of many kinds
        raise UserError(f"training state {directory / STATE} is corrupt ({exc}); "
                        f"delete {directory} to retrain") from None
