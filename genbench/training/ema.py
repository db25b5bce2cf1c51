"""Exponential moving average of weights, on torch's ``AveragedModel``.

``ema <- decay * ema + (1 - decay) * weights`` after every optimiser step
(``torch.optim.swa_utils.get_ema_multi_avg_fn``); buffers are copied, not averaged. Two official
starting points differ:

* DDGAN (``NVlabs/denoising-diffusion-gan EMA.py``, from LSGM) creates the shadow weights
  from the weights after the first step, which is what ``AveragedModel`` does (its first update
  copies);
* DDPM (``hojonathanho/diffusion``, ``tf.train.ExponentialMovingAverage``) starts the shadow at
  the initial weights, so the first update already averages (``from_initial=True``).
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_model(model: torch.nn.Module, decay: float, *, from_initial: bool) -> AveragedModel:
    """A frozen, eval-mode EMA copy of ``model``; its network is ``.module``."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
    ema.requires_grad_(False).eval()
    if from_initial:
        ema.n_averaged.fill_(1)  # the copy of the initial weights counts as the first average
    return ema


@torch.no_grad()
def update_ema(ema: AveragedModel, model: torch.nn.Module) -> None:
    """One EMA step of the parameters; buffers (e.g. BatchNorm statistics) are copied."""
    ema.update_parameters(model)
    for b_ema, b in zip(ema.module.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)
