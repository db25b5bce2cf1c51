"""Time-conditional discriminators D(x_k, k, x_{k+1}) of Denoising Diffusion GANs.

Xiao et al. 2022, "Tackling the Generative Learning Trilemma with Denoising Diffusion GANs"
(Table 9 of the LDDGAN paper lists the same layers). Facts were read from the official
NVlabs/denoising-diffusion-gan ``score_sde/models/discriminator.py`` and the WaveDiff version of
it (``num_layers``); no code was copied. Parameter names follow the official modules, so released
discriminator weights load unchanged.

The pair (x_k, x_{k+1}) is concatenated on channels, so a discriminator built for C image
channels reads 2C. The step index k is embedded sinusoidally and passed through a two-layer MLP;
each down block adds a projection of it after its first conv. Counted against the official
constructors (NVlabs/denoising-diffusion-gan README and WaveDiff/LDDGAN ``run.sh`` settings): DDGAN
CIFAR-10 ``small`` (C=3) 12,741,633 parameters; the
3-layer WDDGAN (C=12) and LDDGAN (C=4) variants 7,630,593 and 7,628,545.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genbench.backbones.layers import (
    conv2d,
    dense,
    downsample_2d,
    register_fir_kernel,
    timestep_embedding,
)
from genbench.errors import UserError
from genbench.registry import register

# The official discriminator initialises with dense_layer.py, whose "fan_avg" is in fact fan_out.
_FAN = "fan_out"


def _conv(in_ch: int, out_ch: int, kernel: int, *, bias: bool = True,
          init_scale: float = 1.0) -> nn.Conv2d:
    return conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias, init_scale=init_scale,
                  mode=_FAN)


class TimestepEmbedding(nn.Module):
    """k -> sinusoidal(k) -> dense -> act -> dense (official ``TimestepEmbedding``)."""

    def __init__(self, dim: int, act: nn.Module) -> None:
        super().__init__()
        self.dim = dim
        self.main = nn.Sequential(dense(dim, dim, mode=_FAN), act, dense(dim, dim, mode=_FAN))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t, self.dim)
        return self.main(emb.to(self.main[0].weight.dtype))


class DownConvBlock(nn.Module):
    """act -> conv3 -> + dense(t) -> act -> [FIR down] -> conv3, plus a 1x1 skip, / sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int, *, t_emb_dim: int, downsample: bool,
                 act: nn.Module, fir_kernel: tuple[float, ...] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(_conv(in_ch, out_ch, 3))
        self.conv2 = nn.Sequential(_conv(out_ch, out_ch, 3, init_scale=0.0))
        self.dense_t1 = dense(t_emb_dim, out_ch, mode=_FAN)
        self.act = act
        self.skip = nn.Sequential(_conv(in_ch, out_ch, 1, bias=False))
        self.downsample = downsample
        register_fir_kernel(self, fir_kernel)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(x)) + self.dense_t1(t_emb)[:, :, None, None]
        h = self.act(h)
        if self.downsample:
            h, x = downsample_2d(h, self.fir_filter), downsample_2d(x, self.fir_filter)
        return (self.conv2(h) + self.skip(x)) / math.sqrt(2.0)


STDDEV_GROUP = 4  # the official Discriminator_small/large stddev_group


def stddev_group(batch: int, group_size: int = STDDEV_GROUP) -> int:
    """The group :func:`minibatch_stddev` uses for a batch of ``batch``: the largest divisor of
    ``batch`` that is <= ``group_size``."""
    return max(g for g in range(1, min(batch, group_size) + 1) if batch % g == 0)


def minibatch_stddev(x: torch.Tensor, group_size: int = STDDEV_GROUP) -> torch.Tensor:
    """Append one feature map: the mean over features of the std across a group of samples.

    Groups are strided as in the official view(group, -1, ...): sample i shares a group with
    i + M, i + 2M, ... (M = B / group). The official code needs B divisible by min(B, 4); here
    the group shrinks to the largest divisor of B that is <= ``group_size`` instead of failing.
    """
    b, c, h, w = x.shape
    group = stddev_group(b, group_size)
    # in float32 under mixed precision (train.precision): in fp16 the 1e-8 underflows to 0 and
    # the sqrt's gradient at a zero variance is infinite (a no-op for float32 and float64 input)
    y = x.reshape(group, -1, 1, c, h, w).to(torch.promote_types(x.dtype, torch.float32))
    y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8)  # [M, 1, C, H, W]
    y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)  # [M, 1, 1, 1]
    y = y.repeat(group, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class _Discriminator(nn.Module):
    """Shared stem, conditioning and head; subclasses choose the down blocks."""

    def __init__(self, in_channels: int, ngf: int, t_emb_dim: int,
                 widths: list[tuple[int, int, bool]], final_init_scale: float) -> None:
        super().__init__()
        if in_channels < 1 or ngf < 1 or t_emb_dim < 2:
            raise UserError("discriminator needs in_channels >= 1, ngf >= 1 and t_emb_dim >= 2")
        self.in_channels = in_channels
        self.act = act = nn.LeakyReLU(0.2)
        self.t_embed = TimestepEmbedding(t_emb_dim, act)
        self.start_conv = _conv(2 * in_channels, widths[0][0], 1)
        for i, (cin, cout, down) in enumerate(widths, start=1):
            block = DownConvBlock(cin, cout, t_emb_dim=t_emb_dim, downsample=down, act=act)
            self.add_module(f"conv{i}", block)
        self.num_layers = len(widths)
        top = widths[-1][1]
        self.final_conv = _conv(top + 1, top, 3, init_scale=final_init_scale)
        self.end_linear = dense(top, 1, mode=_FAN)

    def forward(self, x_k: torch.Tensor, t: torch.Tensor, x_kp1: torch.Tensor) -> torch.Tensor:
        """Logits [B] for D(x_k, k, x_{k+1}); x_k, x_kp1 [B, C, H, W], t [B] step indices."""
        if x_k.dim() != 4 or x_k.shape != x_kp1.shape or x_k.shape[1] != self.in_channels:
            raise ValueError(f"discriminator expects x_k and x_kp1 of equal shape [B, "
                             f"{self.in_channels}, H, W], got {list(x_k.shape)} and "
                             f"{list(x_kp1.shape)}")
        t = torch.as_tensor(t, device=x_k.device)
        t = t.expand(x_k.shape[0]) if t.dim() == 0 else t
        if tuple(t.shape) != (x_k.shape[0],):
            raise ValueError(f"t must have shape [{x_k.shape[0]}], got {list(t.shape)}")
        t_emb = self.act(self.t_embed(t))
        h = self.start_conv(torch.cat([x_k, x_kp1], dim=1))
        for i in range(1, self.num_layers + 1):
            h = getattr(self, f"conv{i}")(h, t_emb)
        h = self.act(self.final_conv(minibatch_stddev(h)))
        return self.end_linear(h.sum(dim=(2, 3))).squeeze(1)


class DiscriminatorSmall(_Discriminator):
    """CIFAR-size discriminator (``Discriminator_small``): widths 2ngf, 2ngf, 4ngf, 8ngf, 8ngf.

    ``num_layers=3`` drops the last down block (WDDGAN/LDDGAN ``--num_disc_layers 3``).
    """

    def __init__(self, in_channels: int, ngf: int = 64, t_emb_dim: int = 256,
                 num_layers: int = 4) -> None:
        if num_layers not in (3, 4):
            raise UserError(f"DiscriminatorSmall num_layers={num_layers}; use 3 or 4")
        widths = [(2 * ngf, 2 * ngf, False), (2 * ngf, 4 * ngf, True), (4 * ngf, 8 * ngf, True),
                  (8 * ngf, 8 * ngf, True)][:num_layers]
        super().__init__(in_channels, ngf, t_emb_dim, widths, final_init_scale=0.0)


class DiscriminatorLarge(_Discriminator):
    """256 px discriminator (``Discriminator_large``): 6 down blocks, widths up to 8ngf.

    ``num_layers`` (3..6) keeps the first blocks, as WaveDiff's version allows.
    """

    def __init__(self, in_channels: int, ngf: int = 64, t_emb_dim: int = 256,
                 num_layers: int = 6) -> None:
        if not 3 <= num_layers <= 6:
            raise UserError(f"DiscriminatorLarge num_layers={num_layers}; use 3 to 6")
        widths = [(2 * ngf, 4 * ngf, True), (4 * ngf, 8 * ngf, True)]
        widths += [(8 * ngf, 8 * ngf, True)] * 4
        super().__init__(in_channels, ngf, t_emb_dim, widths[:num_layers], final_init_scale=1.0)


@register("discriminator", "small", tags=("ddgan",),
          paper="Xiao et al. 2022 (Discriminator_small); Trinh and Hamagami 2024, Table 9")
def small(*, in_channels: int, ngf: int = 64, t_emb_dim: int = 256,
          num_layers: int = 4) -> DiscriminatorSmall:
    """DDGAN's 32 px discriminator D(x_k, k, x_{k+1}); num_layers 3 for WDDGAN/LDDGAN."""
    return DiscriminatorSmall(in_channels, ngf=ngf, t_emb_dim=t_emb_dim, num_layers=num_layers)


@register("discriminator", "large", tags=("ddgan",),
          paper="Xiao et al. 2022 (Discriminator_large, 256 px)")
def large(*, in_channels: int, ngf: int = 64, t_emb_dim: int = 256,
          num_layers: int = 6) -> DiscriminatorLarge:
    """DDGAN's 256 px discriminator D(x_k, k, x_{k+1}): 6 down blocks (3 to 6 kept)."""
    return DiscriminatorLarge(in_channels, ngf=ngf, t_emb_dim=t_emb_dim, num_layers=num_layers)
