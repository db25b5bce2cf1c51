"""Checkpoints: weights and training state without pickle, written atomically.

A checkpoint is a directory holding ``weights.safetensors`` (every module's state, keys prefixed
by the module's name), ``state.safetensors`` (every tensor of the training state: optimizer
moments, step counters, random-generator states) and ``state.json`` (the rest of the training
state, with each tensor replaced by a reference into ``state.safetensors``; see
:func:`encode_state`). Nothing in a checkpoint is unpickled, so a crafted checkpoint in a results
or cache folder cannot run code. A ``state.pt`` of an older genbench is read only with
``torch.load(weights_only=True)`` (PyTorch's restricted unpickler, which builds tensors and plain
containers and refuses every other class). A checkpoint is assembled in a hidden sibling and
swapped into place (:mod:`genbench._io`), so a crash leaves either the previous checkpoint or the
new one, never half of each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from genbench._io import (
    atomic_write_with,
    previous_version,
    sha256_bytes,
    sha256_file,
    staging_dir,
    swap_dir,
)
from genbench.errors import UserError, short_reason

WEIGHTS = "weights.safetensors"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
LEGACY_STATE = "state.pt"  # older genbench: read with weights_only=True only
STATE_FORMAT = 1

# Tags of the JSON encoding: a JSON object with exactly one of these keys stands for a value JSON
# cannot hold; every other dict whose keys are all strings without a leading "__" is written as is.
_TENSOR, _TUPLE, _DICT, _NDARRAY, _FLOAT = "__tensor__", "__tuple__", "__dict__", "__ndarray__", \
    "__float__"


_TREE_SHA = "genbench_state_json_sha256"


def _tree_sha256(tree: Any) -> str:
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return sha256_bytes(text.encode("utf-8"))


def encode_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """``(json_tree, tensors)``: ``state`` as JSON-able data plus the tensors it refers to.

    Handles what training states hold (optimizer and scheduler ``state_dict()``, ``AveragedModel``
    states, counters, loss histories, ``torch``/``numpy``/``random`` generator states): dicts
    (any hashable encodable keys, e.g. the int parameter ids of an optimizer state), lists,
    tuples, str, int, float (nan/inf included), bool, None, tensors (any dtype and shape, kept
    bit for bit in safetensors) and numpy arrays. :func:`decode_state` gives back an equal value
    with the same types. Anything else is a TypeError (a programming error, not bad input).
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = value.detach().to("cpu").contiguous().clone()
            return {_TENSOR: key}
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):  # after bool; numpy integers are not ints
            return int(value)
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                return {_FLOAT: repr(value)}
            return float(value)
        if isinstance(value, np.ndarray):
            return {_NDARRAY: {"dtype": value.dtype.str, "shape": list(value.shape),
                               "data": value.ravel().tolist()}}
        if isinstance(value, tuple):
            return {_TUPLE: [enc(v) for v in value]}
        if isinstance(value, list):
            return [enc(v) for v in value]
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: enc(v) for k, v in value.items()}
            return {_DICT: [[enc(k), enc(v)] for k, v in value.items()]}
        raise TypeError(f"training state holds a {type(value).__name__}, which checkpoints "
                        f"cannot store without pickle")

    return enc(state), tensors


def decode_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`encode_state`; a malformed tree raises ValueError."""

    def dec(value: Any) -> Any:
        if isinstance(value, list):
            return [dec(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (tag, inner), = value.items()
            if tag == _TENSOR:
                if inner not in tensors:
                    raise ValueError(f"tensor {inner!r} is missing")
                return tensors[inner]
            if tag == _TUPLE:
                return tuple(dec(v) for v in inner)
            if tag == _DICT:
                return {_hashable(dec(k)): dec(v) for k, v in inner}
            if tag == _FLOAT:
                return float(inner)
            if tag == _NDARRAY:
                return np.asarray(inner["data"], dtype=np.dtype(inner["dtype"])).reshape(
                    inner["shape"])
        if any(k.startswith("__") for k in value):
            raise ValueError(f"unknown tag in {sorted(value)[:3]}")
        return {k: dec(v) for k, v in value.items()}

    return dec(tree)


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict)):
        raise ValueError("a dict key decodes to a list or dict")
    return key


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


class CorruptCheckpoint(UserError):
    """A checkpoint whose files do not match what was written (nothing was loaded from it)."""


def save_checkpoint(directory: Path, modules: dict[str, torch.nn.Module],
                    state: dict[str, Any]) -> None:
    """Write weights and training state into ``directory`` as one atomic unit.

    ``state.json`` also records the SHA-256 of both safetensors files, and ``state.safetensors``
    the SHA-256 of the JSON state, so that a checkpoint changed after it was written (any of its
    three files) is recognised before anything is loaded from it.
    """
    tree, tensors = encode_state(state)
    with staging_dir(directory) as tmp:
        save_file(_flat_state(modules), str(tmp / WEIGHTS))
        save_file(tensors, str(tmp / STATE_TENSORS), metadata={_TREE_SHA: _tree_sha256(tree)})
        files = {name: sha256_file(tmp / name) for name in (WEIGHTS, STATE_TENSORS)}
        text = json.dumps({"format": STATE_FORMAT, "sha256": files, "state": tree},
                          allow_nan=False, indent=1)
        (tmp / STATE_JSON).write_text(text + "\n", encoding="utf-8")
        swap_dir(tmp, directory)


def _complete(candidate: Path) -> bool:
    return all((candidate / name).is_file() for name in (WEIGHTS, STATE_TENSORS, STATE_JSON))


def _legacy(candidate: Path) -> bool:
    return (candidate / WEIGHTS).is_file() and (candidate / LEGACY_STATE).is_file()


def find_checkpoint(directory: Path) -> Path | None:
    """The complete checkpoint at ``directory`` (or the previous one if a swap was cut short).

    Complete means weights, state tensors and state JSON are all there; a folder of an older
    genbench (weights and ``state.pt``) counts too, and :func:`load_checkpoint` reads its state
    with ``weights_only=True``.
    """
    candidates = (directory, *previous_version(directory))
    for candidate in candidates:
        if _complete(candidate):
            return candidate
    for candidate in candidates:
        if _legacy(candidate):
            return candidate
    return None


def _read_state(directory: Path) -> tuple[Any, dict[str, torch.Tensor]]:
    """(JSON tree, state tensors) after checking both files' recorded SHA-256; loads nothing into
    modules. Any mismatch or unreadable file is a :class:`CorruptCheckpoint`."""
    try:
        payload = json.loads((directory / STATE_JSON).read_text(encoding="utf-8"))
        if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
            raise ValueError(f"not a format-{STATE_FORMAT} training state")
        recorded = payload["sha256"]
        for name in (WEIGHTS, STATE_TENSORS):
            if sha256_file(directory / name) != recorded[name]:
                raise ValueError(f"{name} does not match the SHA-256 recorded when it was written")
        with safe_open(str(directory / STATE_TENSORS), framework="pt") as handle:
            recorded_tree = (handle.metadata() or {}).get(_TREE_SHA)
        if recorded_tree != _tree_sha256(payload["state"]):
            raise ValueError(f"{STATE_JSON} does not match the SHA-256 recorded when it was "
                             f"written")
        return payload["state"], load_file(str(directory / STATE_TENSORS))
    except (SafetensorError, OSError, ValueError, TypeError, KeyError) as exc:
        raise CorruptCheckpoint(f"checkpoint {directory} is corrupt ({short_reason(exc)}); "
                                f"delete it to retrain") from None


def load_checkpoint(directory: Path, modules: dict[str, torch.nn.Module]) -> dict[str, Any]:
    """Load weights into ``modules`` and return the training state (nothing is unpickled).

    A :class:`CorruptCheckpoint` is raised before anything is loaded into ``modules``.
    """
    if not _complete(directory) and _legacy(directory):
        load_weights(directory / WEIGHTS, modules)
        return _load_legacy_state(directory)
    tree, tensors = _read_state(directory)
    try:
        state = decode_state(tree, tensors)
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptCheckpoint(f"training state in {directory} is corrupt ({short_reason(exc)}); "
                                f"delete {directory} to retrain") from None
    load_weights(directory / WEIGHTS, modules)
    return state


def _load_legacy_state(directory: Path) -> dict[str, Any]:
    """An older genbench's ``state.pt``, through PyTorch's restricted unpickler only."""
    path = directory / LEGACY_STATE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything but tensors and plain containers
        raise UserError(f"training state {path} of an older genbench cannot be read safely "
                        f"({short_reason(exc)}); delete {directory} to retrain") from None
    if not isinstance(state, dict):
        raise UserError(f"training state {path} is not a dict; delete {directory} to retrain")
    return state
