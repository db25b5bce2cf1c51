"""Mixed precision and ``torch.compile`` for training (``train.precision``, ``train.compile``,
``latent.precision``, ``latent.compile``); the dtypes and autocast context that sampling's fast
path (``eval.precision``, :mod:`genbench.harness.fastpath`) uses too.

``train.precision``: ``fp32`` (the default; the papers' runs), ``bf16`` or ``fp16``. The forward
passes and losses of a step run under :func:`torch.autocast` with that dtype; weights, optimizer
state, the EMA and the backward's accumulated gradients stay float32 (PyTorch's automatic mixed
precision, https://pytorch.org/docs/stable/amp.html). ``fp16`` also scales the loss with
:class:`torch.amp.GradScaler` (its small exponent range underflows small gradients otherwise):
gradients are averaged over the ranks while still scaled (every rank then sees the same
infinities and skips the same steps), unscaled before clipping, and the scaler's state is
checkpointed. A gradient penalty (DDGAN's R1) takes its input gradient of the *scaled* output and
divides it by the scale before forming the penalty, as the AMP examples do ("Gradient penalty",
https://pytorch.org/docs/stable/notes/amp_examples.html). ``bf16`` has float32's exponent range
and needs no scaling; it runs on CPUs too.

``train.compile``: the trained networks' forward passes go through :func:`torch.compile`; the
modules themselves (their parameters, the EMA, checkpoints, the cache) are unchanged. A double
backward (R1) cannot go through a compiled graph, so R1's discriminator pass stays eager.

Neither setting is part of a model's cache key at its default (fp32, no compile), so the keys of
models trained before these settings existed are unchanged.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import torch

from genbench.errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULTS = {"precision": "fp32", "compile": False}  # left out of cache keys at these values
F = TypeVar("F", bound=Callable[..., Any])
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, setting: str = "train.precision") -> None:
    if precision not in PRECISIONS:
        raise UserError(f"{setting}={precision!r}; use one of {', '.join(PRECISIONS)}")


def dtype_of(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (None for fp32: no autocast)."""
    return _DTYPES.get(precision)


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """The forward passes' context: autocast to ``precision`` (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


SCALED = ("r1", "grad_norm", "d_weight")  # logged values fp16's loss scale can make non-finite


def logged(scaler: torch.amp.GradScaler | None, values: dict[str, float],
           scale_before: float | None = None) -> dict[str, float]:
    """The step's logged values. Under fp16 a gradient that overflowed at the current scale makes
    the scaler skip the update and lower the scale, which is how a skipped step is told
    (``scale_before``: the scale before the step). ``fp16_skipped`` is 1 on a skipped
    step and 0 on an applied one; values taken at the scale (R1's penalty, the gradient norm,
    the autoencoder's adaptive weight) that are not finite are logged as 0, so a skipped step is
    not taken for a diverged run, while the scale-free losses still are checked. The keys are
    the same on every rank and step (the loop averages the values over the ranks)."""
    if scaler is None:
        return values
    bad = [k for k in SCALED if k in values and not math.isfinite(values[k])]
    skipped = scale_before is not None and float(scaler.get_scale()) < scale_before
    return {**values, **{k: 0.0 for k in bad}, "fp16_skipped": float(skipped)}


class MixedPrecision:
    """One trainer's ``precision``: the autocast of its forward passes and, under fp16, its loss
    scaler - one for all the trainer's optimisers, updated once per step (the AMP examples'
    "multiple models, losses and optimizers"). Under fp32 and bf16 every method is the plain
    operation. A step is::

        amp.begin()
        with amp.autocast():
            loss = ...
        amp.scale(loss).backward()
        average_gradients(...)        # while scaled: every rank sees the same infinities
        amp.unscale_(optimizer)       # before clipping, if any
        amp.step(optimizer)
        return amp.end(logged_values)
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        check_precision(precision)
        self.precision, self.device = precision, device
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self._scale_before: float | None = None

    def autocast(self) -> AbstractContextManager[Any]:
        return autocast(self.precision, self.device)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` times the loss scale (``loss`` itself without fp16)."""
        return loss if self.scaler is None else self.scaler.scale(loss)

    def unscaled(self, grad: torch.Tensor) -> torch.Tensor:
        """A gradient taken by hand of a :meth:`scale`-d loss, divided by the scale again."""
        return grad if self.scaler is None else grad / self.scaler.get_scale()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale ``optimizer``'s gradients in place (before clipping them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``, through the scaler under fp16 (skipped on non-finite
        gradients)."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)

    def begin(self) -> None:
        """Mark a step's start (the scale then tells :meth:`end` whether it was skipped)."""
        self._scale_before = None if self.scaler is None else float(self.scaler.get_scale())

    def end(self, values: dict[str, float]) -> dict[str, float]:
        """Update the scale once for the step; the step's logged values (:func:`logged`)."""
        if self.scaler is not None:
            self.scaler.update()
        return logged(self.scaler, values, self._scale_before)

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: the scaler's state under fp16, nothing otherwise."""
        return {} if self.scaler is None else {"scaler": self.scaler.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


FP32 = MixedPrecision("fp32", torch.device("cpu"))  # plain arithmetic (no autocast, no scale)


def compiled(fn: F, enabled: bool) -> F:
    """``torch.compile(fn)`` when ``enabled``, else ``fn``: a module (the compiled one shares its
    parameters) or a bound method such as an autoencoder's ``training_forward``."""
    return torch.compile(fn) if enabled else fn  # type: ignore[return-value]


def without_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` less the precision and compile entries that hold their defaults."""
    return {k: v for k, v in settings.items() if not (k in DEFAULTS and v == DEFAULTS[k])}
