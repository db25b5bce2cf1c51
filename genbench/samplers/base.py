"""What a sampler is to the harness: a pure sampling function plus what it needs from training.

Samplers follow k-diffusion and EDM (STYLE.md): the algorithm is one plain function of
(denoiser, initial noise, schedule, random streams, options); the :class:`Sampler` object only
binds options and tells the harness which training objective the denoiser needs
(``adversarial`` for DDGAN/LDDGAN, ``eps`` for DDPM/DDIM) and which of its settings change
training (so that cells differing only in sampling settings share one trained model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from genbench.samplers.noise import PerSampleRNG

SampleFn = Callable[[torch.nn.Module, torch.Tensor, PerSampleRNG], torch.Tensor]


@dataclass(frozen=True)
class Sampler:
    """A configured sampler.

    ``sample(denoiser, x_T, rng)`` returns the clean latent x_0; ``objective`` names the training
    objective; ``training_key`` holds the settings that change what must be trained (for DDGAN
    the number of steps and the schedule); ``options`` is everything, for the record;
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
