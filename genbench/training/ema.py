"""Exponential moving average of model weights (DDGAN's EMA, from LSGM: decay 0.9999 on CIFAR).

The official code keeps the shadow weights inside the optimizer and swaps them in before saving
``netG_*.pth``, so released generators hold EMA weights; here the shadow is a plain module copy.
"""

from __future__ import annotations

import torch


class EMA:
    """ema <- decay * ema + (1 - decay) * weights, after every generator step."""

    def __init__(self, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay

    @torch.no_grad()
    def update(self, ema_model: torch.nn.Module, model: torch.nn.Module) -> None:
        for p_ema, p in zip(ema_model.parameters(), model.parameters(), strict=True):
            p_ema.lerp_(p.detach(), 1.0 - self.decay)
        for b_ema, b in zip(ema_model.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)
