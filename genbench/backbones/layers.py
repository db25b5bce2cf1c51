"""Shared layers of the NCSN++ backbone and the DDGAN discriminators, in pure torch.

Follows Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential
Equations" (NCSN++), and Xiao et al. 2022, "Tackling the Generative Learning Trilemma with
Denoising Diffusion GANs" (adaptive group norm, z mapping). Facts were read from the official
NVlabs/denoising-diffusion-gan files ``score_sde/models/{layers,layerspp,dense_layer,
up_or_down_sampling}.py``; no code was copied.

The FIR resampling of StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN") is written with ``F.pad`` and depthwise ``conv2d`` / ``conv_transpose2d``: there is no
custom CUDA op to compile (DDGAN issue #25), it runs on any device, and torch's
``FlopCounterMode`` counts it. Only the kept output samples are computed (strided convolution for
decimation, transposed convolution for zero-stuffing), so the FIR costs fewer MACs here than in the
official CPU fallback, which filters at full rate before decimating (DDGAN CIFAR-10: 18.2M MACs
there, about 5.4M here; 0.2% of the generator either way).

Parameter names (``GroupNorm_0``, ``NIN_0.W``, ``Conv2d_0.weight``...) follow the official modules
so that released ``netG_*.pth`` state dicts load without renaming.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genbench.distributed import drawing_shard

FAN_MODES = ("fan_in", "fan_out", "fan_avg")


# ----------------------------------------------------------------------------------------------
# Initialisation (layers.py::default_init, dense_layer.py)
# ----------------------------------------------------------------------------------------------


def variance_scaling_(tensor: torch.Tensor, scale: float = 1.0,
                      mode: str = "fan_avg") -> torch.Tensor:
    """Fill ``tensor`` from U(-b, b), b = sqrt(3 * scale / fan), in place (DDPM ``default_init``).

    ``scale == 0`` means 1e-10, as in the official code, so zero-initialised output layers still
    have a (tiny) gradient direction. Fans are computed as torch does for a weight shaped
    [out, in, *kernel]. The official ``dense_layer.py`` asks for ``fan_avg`` but its helper
    returns fan_out; the discriminator and the z mapping pass ``mode="fan_out"`` to match.
    """
    if mode not in FAN_MODES:
        raise ValueError(f"mode {mode!r} is not one of {FAN_MODES}")
    receptive = math.prod(tensor.shape[2:]) if tensor.dim() > 2 else 1
    fan_in, fan_out = tensor.shape[1] * receptive, tensor.shape[0] * receptive
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    variance = (1e-10 if scale == 0 else scale) / max(1.0, fan)
    bound = math.sqrt(3.0 * variance)
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


def dense(in_features: int, out_features: int, *, init_scale: float = 1.0,
          mode: str = "fan_avg") -> nn.Linear:
    """Linear layer with variance-scaling weights and zero bias."""
    layer = nn.Linear(in_features, out_features)
    variance_scaling_(layer.weight, init_scale, mode)
    nn.init.zeros_(layer.bias)
    return layer


def conv2d(in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
           bias: bool = True, init_scale: float = 1.0, mode: str = "fan_avg") -> nn.Conv2d:
    """Conv2d with variance-scaling weights and zero bias."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=bias)
    variance_scaling_(conv.weight, init_scale, mode)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def conv3x3(in_ch: int, out_ch: int, *, stride: int = 1, padding: int = 1, bias: bool = True,
            init_scale: float = 1.0) -> nn.Conv2d:
    """3x3 convolution with DDPM initialisation (``layers.py::ddpm_conv3x3``)."""
    return conv2d(in_ch, out_ch, 3, stride=stride, padding=padding, bias=bias,
                  init_scale=init_scale)


def conv1x1(in_ch: int, out_ch: int, *, bias: bool = True, init_scale: float = 1.0) -> nn.Conv2d:
    """1x1 convolution with DDPM initialisation (``layers.py::ddpm_conv1x1``)."""
    return conv2d(in_ch, out_ch, 1, bias=bias, init_scale=init_scale)


# ----------------------------------------------------------------------------------------------
# FIR up/down-sampling (up_or_down_sampling.py, StyleGAN2's upfirdn2d)
# ----------------------------------------------------------------------------------------------


def setup_fir_kernel(kernel: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A 1-D kernel -> its normalised 2-D outer product (a 2-D kernel is normalised as given)."""
    k = torch.as_tensor(kernel, dtype=torch.float32, device="cpu")
    if k.dim() == 1:
        k = torch.outer(k, k)
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"FIR kernel must be 1-D or square 2-D, got shape {tuple(k.shape)}")
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with ``kernel``, keep every ``down``-th sample.

    Same contract as StyleGAN2's ``upfirdn2d`` with equal x/y factors and pads: on each axis the
    output has ``(n * up + pad[0] + pad[1] - kernel_size) // down + 1`` samples and negative pads
    crop. The filter is a true convolution (kernel flipped), applied to every channel separately.
    """
    channels = x.shape[1]
    kh, kw = kernel.shape
    k = kernel.to(device=x.device, dtype=x.dtype)
    p0, p1 = pad
    if up == 1:
        x = F.pad(x, [p0, p1, p0, p1])
        weight = k.flip([0, 1])[None, None].repeat(channels, 1, 1, 1)
        return F.conv2d(x, weight, stride=down, groups=channels)
    # Zero insertion followed by a full convolution equals a stride-`up` transposed convolution
    # with the unflipped kernel: y[q] = sum_i x[i] k[q - up * i]. Shift it to the requested pads.
    weight = k[None, None].repeat(channels, 1, 1, 1)
    y = F.conv_transpose2d(x, weight, stride=up, groups=channels)
    y = F.pad(y, [p0 - (kw - 1), up + p1 - kw, p0 - (kh - 1), up + p1 - kh])
    return y[:, :, ::down, ::down] if down > 1 else y


def upsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR upsampling; ``kernel`` is normalised (sum 1) and scaled by ``factor**2`` here."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel * factor**2, up=factor,
                     pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR downsampling; ``kernel`` is normalised so a constant image keeps its value."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor,
                     factor: int = 2) -> torch.Tensor:
    """Fused FIR upsampling and convolution with ``weight`` [out, in, k, k] (StyleGAN2).

    A stride-``factor`` transposed convolution followed by the FIR filter; padding is applied once.
    (The official torch port flips the weight with a negative-step slice, which torch rejects, so
    that path never ran there; this follows the StyleGAN2 TF original.)
    """
    conv_k = weight.shape[-1]
    p = (kernel.shape[0] - factor) - (conv_k - 1)
    w = weight.flip([2, 3]).transpose(0, 1)  # [in, out, k, k] for conv_transpose2d
    x = F.conv_transpose2d(x, w, stride=factor)
    return upfirdn2d(x, kernel * factor**2, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor,
                       factor: int = 2) -> torch.Tensor:
    """Fused FIR filtering and stride-``factor`` convolution with ``weight`` (StyleGAN2)."""
    conv_k = weight.shape[-1]
    p = (kernel.shape[0] - factor) + (conv_k - 1)
    x = upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2))
    return F.conv2d(x, weight, stride=factor)


def naive_upsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling (used when ``fir=False``)."""
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def naive_downsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Average pooling (used when ``fir=False``)."""
    return F.avg_pool2d(x, factor, stride=factor)


def resample(x: torch.Tensor, mode: str | None, fir_kernel: torch.Tensor | None) -> torch.Tensor:
    """``mode`` "up"/"down"/None by 2; FIR when ``fir_kernel`` is given, else nearest/average."""
    if mode == "up":
        return naive_upsample_2d(x) if fir_kernel is None else upsample_2d(x, fir_kernel)
    if mode == "down":
        return naive_downsample_2d(x) if fir_kernel is None else downsample_2d(x, fir_kernel)
    return x


def register_fir_kernel(module: nn.Module, fir_kernel: Sequence[float] | None) -> None:
    """Attach the normalised FIR kernel as a non-persistent buffer ``fir_filter`` (or None).

    Non-persistent: it follows ``.to(device)`` but stays out of the state dict, like the
    official modules, which keep the kernel as a Python list.
    """
    kernel = None if fir_kernel is None else setup_fir_kernel(fir_kernel)
    module.register_buffer("fir_filter", kernel, persistent=False)


class FirConv2d(nn.Module):
    """Convolution with optional fused FIR up- or downsampling (``up_or_down_sampling.Conv2d``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, *, up: bool = False,
                 down: bool = False, resample_kernel: Sequence[float] = (1, 3, 3, 1),
                 use_bias: bool = True) -> None:
        super().__init__()
        if (up and down) or kernel < 1 or kernel % 2 == 0:
            raise ValueError("FirConv2d needs an odd kernel and at most one of up/down")
        self.weight = nn.Parameter(variance_scaling_(torch.empty(out_ch, in_ch, kernel, kernel)))
        if use_bias:
            self.bias = nn.Parameter(torch.zeros(out_ch))
        else:
            self.register_parameter("bias", None)
        self.up, self.down = up, down
        register_fir_kernel(self, resample_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = upsample_conv_2d(x, self.weight, self.fir_filter)
        elif self.down:
            x = conv_downsample_2d(x, self.weight, self.fir_filter)
        else:
            x = F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2)
        return x if self.bias is None else x + self.bias[None, :, None, None]


class Upsample(nn.Module):
    """2x upsampling, FIR or nearest, optionally with a 3x3 conv (``layerspp.Upsample``)."""

    def __init__(self, in_ch: int | None = None, out_ch: int | None = None, *,
                 with_conv: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.with_conv, self.fir = with_conv, fir
        if with_conv and fir:
            self.Conv2d_0 = FirConv2d(in_ch, out_ch, 3, up=True, resample_kernel=fir_kernel)
        elif with_conv:
            self.Conv_0 = conv3x3(in_ch, out_ch)
        register_fir_kernel(self, fir_kernel if fir else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else upsample_2d(x, self.fir_filter)
        h = naive_upsample_2d(x)
        return self.Conv_0(h) if self.with_conv else h


class Downsample(nn.Module):
    """2x downsampling, FIR or average, optionally with a 3x3 conv (``layerspp.Downsample``)."""

    def __init__(self, in_ch: int | None = None, out_ch: int | None = None, *,
                 with_conv: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.with_conv, self.fir = with_conv, fir
        if with_conv and fir:
            self.Conv2d_0 = FirConv2d(in_ch, out_ch, 3, down=True, resample_kernel=fir_kernel)
        elif with_conv:
            self.Conv_0 = conv3x3(in_ch, out_ch, stride=2, padding=0)
        register_fir_kernel(self, fir_kernel if fir else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else downsample_2d(x, self.fir_filter)
        if self.with_conv:
            return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
        return naive_downsample_2d(x)


# ----------------------------------------------------------------------------------------------
# Normalisation and conditioning
# ----------------------------------------------------------------------------------------------


def group_count(channels: int) -> int:
    """Groups used by every NCSN++ group norm: min(C // 4, 32)."""
    return min(channels // 4, 32)


class PixelNorm(nn.Module):
    """x / sqrt(mean(x^2) + 1e-8) over the feature axis (StyleGAN's z normalisation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine, modulated by gamma, beta = dense(z_emb) (DDGAN ``layerspp.py``)."""

    def __init__(self, num_groups: int, channels: int, style_dim: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(num_groups, channels, affine=False, eps=1e-6)
        self.style = dense(style_dim, 2 * channels, mode="fan_out")
        with torch.no_grad():  # identity modulation at init: gamma = 1, beta = 0
            self.style.bias[:channels] = 1.0
            self.style.bias[channels:] = 0.0

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, dim=1)
        return gamma * self.norm(x) + beta


def timestep_embedding(t: torch.Tensor, dim: int, max_positions: int = 10000) -> torch.Tensor:
    """Transformer sinusoidal embedding of ``t`` [B]: [sin(t w_i), cos(t w_i)] (DDPM, Eq. in 3.2).

    Frequencies w_i = max_positions^(-i / (dim/2 - 1)), i = 0..dim/2-1; odd ``dim`` is zero-padded.
    """
    half = dim // 2
    exponent = -math.log(max_positions) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * exponent)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 == 1 else emb


class GaussianFourierProjection(nn.Module):
    """Random Fourier features [sin(2 pi t W), cos(2 pi t W)] with fixed W ~ N(0, scale^2)."""

    def __init__(self, embedding_size: int = 256, scale: float = 1.0) -> None:
        super().__init__()
        # A parameter that is never trained, as in the official module (so checkpoints carry it).
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        proj = t.float()[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


# ----------------------------------------------------------------------------------------------
# Attention and skip combination (layerspp.py, layers.py::NIN)
# ----------------------------------------------------------------------------------------------


class Nin(nn.Module):
    """Per-pixel linear map, stored as W [in, out] and b (``layers.NIN``), run as a 1x1 conv."""

    def __init__(self, in_dim: int, out_dim: int, init_scale: float = 0.1) -> None:
        super().__init__()
        self.W = nn.Parameter(variance_scaling_(torch.empty(in_dim, out_dim), init_scale))
        self.b = nn.Parameter(torch.zeros(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.W.t()[:, :, None, None], self.b)


class AttentionBlock(nn.Module):
    """Single-head self-attention over pixels with a residual (``layerspp.AttnBlockpp``)."""

    def __init__(self, channels: int, *, skip_rescale: bool = False,
                 init_scale: float = 0.0) -> None:
        super().__init__()
        self.GroupNorm_0 = nn.GroupNorm(group_count(channels), channels, eps=1e-6)
        self.NIN_0 = Nin(channels, channels)
        self.NIN_1 = Nin(channels, channels)
        self.NIN_2 = Nin(channels, channels)
        self.NIN_3 = Nin(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        h = self.GroupNorm_0(x)
        q, k, v = (m(h).reshape(b, c, hgt * wid) for m in (self.NIN_0, self.NIN_1, self.NIN_2))
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * c**-0.5, dim=-1)  # [B, HW, HW]
        h = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, hgt, wid)
        h = self.NIN_3(h)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class Combine(nn.Module):
    """Merge the input pyramid into the features: 1x1 conv, then "cat" or "sum" (``layerspp``)."""

    def __init__(self, dim1: int, dim2: int, method: str = "cat") -> None:
        super().__init__()
        if method not in ("cat", "sum"):
            raise ValueError(f"combine method {method!r} is not 'cat' or 'sum'")
        self.Conv_0 = conv1x1(dim1, dim2)
        self.method = method

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


def check_denoiser_inputs(name: str, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None,
                          *, in_channels: int, resolution: int, z_dim: int) -> torch.Tensor:
    """Validate ``net(x, t, z)`` arguments of any backbone; returns t as a [B] tensor."""
    expected = (in_channels, resolution, resolution)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"{name} expects x of shape [B, {', '.join(map(str, expected))}], "
                         f"got {list(x.shape)}")
    t = torch.as_tensor(t, device=x.device)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if tuple(t.shape) != (x.shape[0],):
        raise ValueError(f"t must have shape [{x.shape[0]}], got {list(t.shape)}")
    if z_dim > 0:
        if z is None:
            raise ValueError(f"this generator needs z of shape [B, {z_dim}], got None")
        if tuple(z.shape) != (x.shape[0], z_dim):
            raise ValueError(f"z must have shape [{x.shape[0]}, {z_dim}], got {list(z.shape)}")
    elif z is not None:
        raise ValueError("this network has no z input (z_dim=0); call it without z")
    return t


class BatchDropout(nn.Dropout):
    """``nn.Dropout`` whose masks do not depend on the number of data-parallel processes.

    Under data-parallel training (:func:`genbench.distributed.drawing_shard` set by the training
    loop) the mask is drawn for the whole global batch, with the same draw ``F.dropout`` makes
    on a tensor of that shape from the step's seeded global generator, and this rank keeps its
    rows: the masks are those of the one-process step on the global batch, so a step at world
    size W equals the one-process step with dropout on too (the mask is drawn on a tensor with
    the input's memory layout, as ``F.dropout`` draws it). Outside data-parallel training, in
    eval mode, and for an input whose first dimension is not this rank's share of the batch or
    not outermost in memory, it is ``nn.Dropout``. It has no parameters or buffers: swapping it
    in changes no state dict.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shard = drawing_shard()
        if (shard is None or not self.training or self.p == 0.0
                or x.shape[0] != shard.positions.numel()):
            return super().forward(x)
        # F.dropout fills its mask in the memory order of its input (empty_like keeps strides):
        # draw on a global-batch tensor laid out as x is, batch outermost, or fall back
        order = x.dim_order()
        if order[0] != 0 or not _dense(x, order):  # the batch inside, or a strided view
            return super().forward(x)
        ones = torch.empty_permuted(shard.global_shape(x.shape), order, dtype=x.dtype,
                                    device=x.device).fill_(1.0)
        return x * shard.take(F.dropout(ones, self.p, True))


def _dense(x: torch.Tensor, order: tuple[int, ...]) -> bool:
    """Whether ``x`` fills its memory without gaps in the dimension order ``order``."""
    expected = 1
    for d in reversed(order):
        if x.shape[d] > 1 and x.stride(d) != expected:
            return False
        expected *= x.shape[d]
    return True


def batch_dropout(module: nn.Module) -> nn.Module:
    """Replace every plain ``nn.Dropout`` inside ``module`` (its own networks' and those of
    timm or diffusers blocks) by :class:`BatchDropout` with the same rate, in place."""
    for parent in module.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, BatchDropout(child.p, child.inplace))
    return module
