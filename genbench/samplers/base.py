"""What a sampler is to the harness: a pure sampling function plus what it needs from training.

Samplers follow k-diffusion (crowsonkb/k-diffusion ``k_diffusion/sampling.py``) and EDM
(NVlabs/edm ``generate.py``): the algorithm is one plain function with one signature,

    sample(denoiser, x_T, schedule, rng, *, callback=None, **options) -> x_0,

where ``schedule`` is what the solver walks (the DDGAN coefficients, or the visited steps of a
Gaussian chain), ``rng`` draws every random number, and ``callback(info)`` is called once per
denoiser evaluation with the dict of :func:`report_step` (used to count NFE and to look at the
per-step predictions). The :class:`Sampler` object only binds schedule and options and tells the
harness which training objective the denoiser needs (``adversarial`` for DDGAN/LDDGAN, ``eps``
for DDPM/DDIM) and which of its settings change training (so that cells differing only in
sampling settings share one trained model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from genbench.samplers.noise import PerSampleRNG

Callback = Callable[[dict[str, Any]], None]


class SampleFn(Protocol):
    """A bound sampler: ``sample(denoiser, x_T, rng, callback=None) -> x_0``."""

    def __call__(self, net: torch.nn.Module, x_T: torch.Tensor, rng: PerSampleRNG,
                 callback: Callback | None = None) -> torch.Tensor: ...


def report_step(callback: Callback | None, step: int, t: int, x: torch.Tensor,
                x0: torch.Tensor) -> None:
    """Call ``callback`` with ``step`` (0-based evaluation index), ``t`` (the index the
    denoiser saw), ``x`` (its input) and ``x0`` (the clean prediction of that step)."""
    if callback is not None:
        callback({"step": step, "t": t, "x": x, "x0": x0})


def bind(algorithm: Callable[..., torch.Tensor], schedule: Any, **options: Any) -> SampleFn:
    """``algorithm(net, x_T, schedule, rng, callback=..., **options)`` as a :class:`SampleFn`."""

    def sample(net: torch.nn.Module, x_T: torch.Tensor, rng: PerSampleRNG,
               callback: Callback | None = None) -> torch.Tensor:
        return algorithm(net, x_T, schedule, rng, callback=callback, **options)

    return sample


@dataclass(frozen=True)
class Sampler:
    """A configured sampler.

    ``sample(denoiser, x_T, rng, callback=None)`` returns the clean latent x_0; ``objective``
    names the training objective; ``schedule`` is what the trainer needs (the DDGAN or Gaussian
    coefficients); ``training_key`` holds the settings that change what must be trained (for
    DDGAN the number of steps and the schedule); ``options`` is everything, for the record;
    ``objective_options`` are training settings the sampler's method prescribes (LDDGAN's
    weighted reconstruction term), applied over the ``train`` config.
    """

    name: str
    objective: str
    steps: int
    sample: SampleFn
    schedule: Any
    training_key: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    objective_options: dict[str, Any] = field(default_factory=dict)  # e.g. LDDGAN's rec_loss
