"""NCSN++ (Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential
Equations") and its DDGAN generator form (Xiao et al. 2022, "Tackling the Generative Learning
Trilemma with Denoising Diffusion GANs"), used unchanged by WDDGAN (Phung et al. 2023) and LDDGAN
(LDDGAN paper Table 8). Facts were read from the official NVlabs/denoising-diffusion-gan
``score_sde/models/ncsnpp_generator_adagn.py`` and yang-song/score_sde_pytorch
``models/ncsnpp.py``; no code was copied.

One plain network, called ``net(x, t, z=None)``, whose head is linear:

* ``z_dim > 0`` is the DDGAN generator: z -> PixelNorm -> dense -> SiLU -> n_mlp x (dense, SiLU)
  gives a z embedding that drives an AdaptiveGroupNorm in every residual block; attention blocks
  and the output head keep plain GroupNorm (official ``ncsnpp_generator_adagn.py::NCSNpp``).
* ``z_dim == 0`` is score_sde's NCSN++ (plain GroupNorm, no z).

What the output means (the DDGAN generator's tanh x0 head, or DDPM's eps) is decided by
:class:`genbench.backbones.denoiser.Denoiser`, which wraps this network.

The time input is embedded as given: the raw integer step index k for DDGAN (official code), or a
continuous time. The official Fourier embedding takes log(sigma) of its input; here the caller
passes whatever it conditions on (log sigma for score_sde's VE setup), so that k = 0 stays finite.

Modules are kept in one flat ``all_modules`` list in the official construction order and with the
official parameter names, so a released ``netG_*.pth`` (after stripping ``module.``) loads with
``strict=True``. Counted against the official constructors (NVlabs/denoising-diffusion-gan README
CIFAR-10 command; VinAIResearch/WaveDiff and thanhluantrinh/LDDGAN ``run.sh``): DDGAN CIFAR-10
48,432,515 parameters (Xiao et al. 2022 and Trinh and Hamagami 2024, Table 2: 48.43M), WDDGAN
33,370,124, LDDGAN 33,329,668. The ``ddpm`` block type with
resampling layers and ``progressive="residual"`` crash in the official torch port (its fused
upsample-conv and nearest upsampling never ran); here they follow the StyleGAN2/DDPM originals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from genbench.backbones.layers import (
    AdaptiveGroupNorm,
    AttentionBlock,
    Combine,
    Downsample,
    GaussianFourierProjection,
    Nin,
    PixelNorm,
    Upsample,
    check_denoiser_inputs,
    conv1x1,
    conv3x3,
    dense,
    group_count,
    register_fir_kernel,
    resample,
    timestep_embedding,
)
from genbench.errors import UserError
from genbench.registry import register

RESBLOCK_TYPES = ("biggan", "ddpm")
PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
COMBINE_METHODS = ("sum", "cat")
EMBEDDING_TYPES = ("positional", "fourier")


@dataclass(frozen=True)
class NCSNppConfig:
    """Constructor arguments of :class:`NCSNpp`; defaults are DDGAN's CIFAR-10 generator."""

    in_channels: int  # image or latent channels C; the output has C channels too
    resolution: int  # input height = width
    nf: int = 128  # base width (official num_channels_dae)
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # width multiplier per resolution level
    num_res_blocks: int = 2  # residual blocks per level on the way down (one more on the way up)
    attn_resolutions: tuple[int, ...] = (16,)  # where to attend; unreached sizes are ignored
    dropout: float = 0.0
    z_dim: int = 100  # latent z width (official nz); 0 = no z, plain GroupNorm
    z_emb_dim: int = 256  # width of the z embedding driving AdaGN
    n_mlp: int = 4  # dense layers of the z mapping after the first
    fir: bool = True  # FIR (StyleGAN2) resampling instead of nearest/average
    fir_kernel: tuple[float, ...] = (1, 3, 3, 1)
    skip_rescale: bool = True  # divide residual sums by sqrt(2)
    resblock_type: str = "biggan"  # "biggan" (resampling inside blocks) or "ddpm"
    resamp_with_conv: bool = True  # "ddpm" blocks: conv in the separate up/down layers
    progressive: str = "none"  # output pyramid: none, output_skip, residual
    progressive_input: str = "residual"  # input pyramid: none, input_skip, residual
    progressive_combine: str = "sum"  # how input_skip merges: sum or cat
    embedding_type: str = "positional"  # time embedding: positional (sinusoidal) or fourier
    fourier_scale: float = 16.0
    init_scale: float = 0.0  # scale of the last conv of each residual branch and of the head

    def __post_init__(self) -> None:
        for name in ("ch_mult", "attn_resolutions", "fir_kernel"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise UserError(f"backbone.{name}={value!r} must be a list of numbers")
            object.__setattr__(self, name, tuple(value))
        _validate(self)

    @property
    def resolutions(self) -> list[int]:
        """Feature-map size at each level."""
        return [self.resolution // 2**i for i in range(len(self.ch_mult))]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(
            f"backbone.{name}={value!r} is not supported; use one of {', '.join(choices)}")


def _validate(cfg: NCSNppConfig) -> None:
    """Raise a UserError naming the first impossible argument."""
    positive = {"in_channels": cfg.in_channels, "resolution": cfg.resolution, "nf": cfg.nf,
                "num_res_blocks": cfg.num_res_blocks}
    for name, value in positive.items():
        if int(value) != value or value < 1:
            raise UserError(f"backbone.{name}={value!r} must be a positive integer")
    if not cfg.ch_mult or any(int(m) != m or m < 1 for m in cfg.ch_mult):
        raise UserError(f"backbone.ch_mult={list(cfg.ch_mult)} must be positive integers")
    factor = 2 ** (len(cfg.ch_mult) - 1)
    if cfg.resolution % factor:
        raise UserError(
            f"backbone.resolution={cfg.resolution} is not divisible by "
            f"2**(len(ch_mult)-1)={factor}; "
            f"use a resolution that is a multiple of {factor} or fewer ch_mult levels")
    if cfg.z_dim < 0 or cfg.n_mlp < 0 or (cfg.z_dim > 0 and cfg.z_emb_dim < 1):
        raise UserError("backbone.z_dim and n_mlp must be >= 0 and z_emb_dim >= 1 when z_dim > 0")
    if not 0.0 <= cfg.dropout < 1.0:
        raise UserError(f"backbone.dropout={cfg.dropout} must be in [0, 1)")
    if len(cfg.fir_kernel) < 2 or sum(cfg.fir_kernel) == 0:
        raise UserError(
            f"backbone.fir_kernel={list(cfg.fir_kernel)} needs >= 2 taps and a non-zero sum")
    _check_choice("resblock_type", cfg.resblock_type, RESBLOCK_TYPES)
    _check_choice("progressive", cfg.progressive, PROGRESSIVE)
    _check_choice("progressive_input", cfg.progressive_input, PROGRESSIVE_INPUT)
    _check_choice("progressive_combine", cfg.progressive_combine, COMBINE_METHODS)
    _check_choice("embedding_type", cfg.embedding_type, EMBEDDING_TYPES)


def _norm(channels: int, zemb_dim: int) -> nn.Module:
    """AdaGN driven by the z embedding when there is one, else an affine GroupNorm."""
    groups = group_count(channels)
    if groups < 1 or channels % groups:
        raise UserError(
            f"a {channels}-channel group norm cannot use min(C//4, 32)={groups} groups; "
            f"choose backbone.nf divisible by 32 (or keep every width < 128 and divisible by 4)")
    if zemb_dim > 0:
        return AdaptiveGroupNorm(groups, channels, zemb_dim)
    return nn.GroupNorm(groups, channels, eps=1e-6)


def _apply_norm(norm: nn.Module, h: torch.Tensor, zemb: torch.Tensor | None) -> torch.Tensor:
    return norm(h, zemb) if isinstance(norm, AdaptiveGroupNorm) else norm(h)


def _residual_sum(x: torch.Tensor, h: torch.Tensor, rescale: bool) -> torch.Tensor:
    return (x + h) / math.sqrt(2.0) if rescale else x + h


class AdaGNBlock(nn.Module):
    """The layers every NCSN++ residual block has, under the official names: AdaGN
    ``GroupNorm_0`` -> SiLU -> ``Conv_0``, plus the time projection ``Dense_0``, then AdaGN
    ``GroupNorm_1`` -> SiLU -> ``Dropout_0`` -> ``Conv_1`` (``layerspp.py``'s
    ``ResnetBlock*_Adagn``). Subclasses add their shortcut and resampling."""

    def __init__(self, in_ch: int, out_ch: int, *, temb_dim: int, zemb_dim: int,
                 dropout: float, init_scale: float) -> None:
        super().__init__()
        self.GroupNorm_0 = _norm(in_ch, zemb_dim)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        self.Dense_0 = dense(temb_dim, out_ch)
        self.GroupNorm_1 = _norm(out_ch, zemb_dim)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)

    def time_bias(self, temb: torch.Tensor) -> torch.Tensor:
        """``Dense_0(SiLU(temb))`` as a per-channel bias."""
        return self.Dense_0(F.silu(temb))[:, :, None, None]

    def second_conv(self, h: torch.Tensor, zemb: torch.Tensor | None) -> torch.Tensor:
        """``Conv_1(Dropout_0(SiLU(GroupNorm_1(h, z))))``."""
        return self.Conv_1(self.Dropout_0(F.silu(_apply_norm(self.GroupNorm_1, h, zemb))))


class ResBlockBigGAN(AdaGNBlock):
    """BigGAN-style residual block; up/down resampling inside (``ResnetBlockBigGANpp_Adagn``)."""

    def __init__(self, in_ch: int, out_ch: int | None = None, *, temb_dim: int, zemb_dim: int,
                 up: bool = False, down: bool = False, dropout: float = 0.0, fir: bool = True,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), skip_rescale: bool = True,
                 init_scale: float = 0.0) -> None:
        out_ch = out_ch or in_ch
        super().__init__(in_ch, out_ch, temb_dim=temb_dim, zemb_dim=zemb_dim, dropout=dropout,
                         init_scale=init_scale)
        self.Conv_2 = conv1x1(in_ch, out_ch) if (in_ch != out_ch or up or down) else None
        self.mode = "up" if up else "down" if down else None
        self.skip_rescale = skip_rescale
        register_fir_kernel(self, fir_kernel if fir else None)

    def forward(self, x: torch.Tensor, temb: torch.Tensor,
                zemb: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(_apply_norm(self.GroupNorm_0, x, zemb))
        h, x = resample(h, self.mode, self.fir_filter), resample(x, self.mode, self.fir_filter)
        h = self.second_conv(self.Conv_0(h) + self.time_bias(temb), zemb)
        if self.Conv_2 is not None:
            x = self.Conv_2(x)
        return _residual_sum(x, h, self.skip_rescale)


class ResBlockDDPM(AdaGNBlock):
    """DDPM-style residual block, NIN shortcut (``ResnetBlockDDPMpp_Adagn``)."""

    def __init__(self, in_ch: int, out_ch: int | None = None, *, temb_dim: int, zemb_dim: int,
                 dropout: float = 0.0, skip_rescale: bool = False, init_scale: float = 0.0) -> None:
        out_ch = out_ch or in_ch
        super().__init__(in_ch, out_ch, temb_dim=temb_dim, zemb_dim=zemb_dim, dropout=dropout,
                         init_scale=init_scale)
        self.NIN_0 = Nin(in_ch, out_ch) if in_ch != out_ch else None
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor, temb: torch.Tensor,
                zemb: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(_apply_norm(self.GroupNorm_0, x, zemb))
        h = self.second_conv(self.Conv_0(h) + self.time_bias(temb), zemb)
        if self.NIN_0 is not None:
            x = self.NIN_0(x)
        return _residual_sum(x, h, self.skip_rescale)


_RESBLOCKS = (ResBlockBigGAN, ResBlockDDPM)


# How the forward pass runs a level-changing layer: (layer, h, temb, zemb) -> h.
LevelCall = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _call(block: nn.Module, h: torch.Tensor, temb: torch.Tensor,
          zemb: torch.Tensor | None) -> torch.Tensor:
    """Run a level-changing layer: residual blocks take the conditioning, resamplers do not."""
    return block(h, temb, zemb) if isinstance(block, _RESBLOCKS) else block(h)


def mapping_network(z_dim: int, z_emb_dim: int, n_mlp: int) -> nn.Sequential:
    """z -> PixelNorm -> dense -> SiLU -> n_mlp x (dense, SiLU) (DDGAN ``z_transform``)."""
    # dense_layer.py initialisation (fan_out, see layers.variance_scaling_).
    layers: list[nn.Module] = [PixelNorm(), dense(z_dim, z_emb_dim, mode="fan_out"), nn.SiLU()]
    for _ in range(n_mlp):
        layers += [dense(z_emb_dim, z_emb_dim, mode="fan_out"), nn.SiLU()]
    return nn.Sequential(*layers)


class NCSNpp(nn.Module):
    """The NCSN++ U-Net; see the module docstring. Call as ``net(x, t, z=None)``."""

    def __init__(self, config: NCSNppConfig) -> None:
        super().__init__()
        self.config = config
        self.in_channels = config.in_channels
        self.resolution = config.resolution
        self.z_dim = config.z_dim
        self._attn_levels = [r in config.attn_resolutions for r in config.resolutions]
        modules: list[nn.Module] = []
        self._build_embedding(modules)
        skip_channels = self._build_down(modules)
        self._build_up(modules, skip_channels)
        self.all_modules = nn.ModuleList(modules)
        if config.z_dim > 0:
            self.z_transform = mapping_network(config.z_dim, config.z_emb_dim, config.n_mlp)
        c = config
        if c.progressive == "output_skip":
            self.pyramid_upsample = Upsample(fir=c.fir, fir_kernel=c.fir_kernel)
        if c.progressive_input == "input_skip":
            self.pyramid_downsample = Downsample(fir=c.fir, fir_kernel=c.fir_kernel)

    # -- construction, in the official module order ------------------------------------------
    # (the layer factories _resblock, _downsampler, _upsampler and _pyramid_downsampler are
    # what WaveletNCSNpp overrides; the loops below build both networks)

    def _resblock(self, in_ch: int, out_ch: int | None = None, *, up: bool = False,
                  down: bool = False) -> nn.Module:
        c = self.config
        zemb_dim = c.z_emb_dim if c.z_dim > 0 else 0
        common = dict(temb_dim=4 * c.nf, zemb_dim=zemb_dim, dropout=c.dropout,
                      skip_rescale=c.skip_rescale, init_scale=c.init_scale)
        if c.resblock_type == "ddpm":
            return ResBlockDDPM(in_ch, out_ch, **common)
        return ResBlockBigGAN(in_ch, out_ch, up=up, down=down, fir=c.fir,
                              fir_kernel=c.fir_kernel, **common)

    def _attention(self, channels: int) -> AttentionBlock:
        c = self.config
        return AttentionBlock(channels, skip_rescale=c.skip_rescale, init_scale=c.init_scale)

    def _downsampler(self, in_ch: int) -> nn.Module:
        """The layer that halves the size at the end of a level."""
        c = self.config
        if c.resblock_type == "ddpm":
            return Downsample(in_ch, with_conv=c.resamp_with_conv, fir=c.fir,
                              fir_kernel=c.fir_kernel)
        return self._resblock(in_ch, down=True)

    def _upsampler(self, level: int, in_ch: int) -> nn.Module:
        """The layer that doubles the size at the end of ``level`` on the way up."""
        c = self.config
        if c.resblock_type == "ddpm":
            return Upsample(in_ch, with_conv=c.resamp_with_conv, fir=c.fir,
                            fir_kernel=c.fir_kernel)
        return self._resblock(in_ch, up=True)

    def _pyramid_downsampler(self, in_ch: int, out_ch: int) -> nn.Module:
        """The ``progressive_input="residual"`` step taking the input pyramid down a level."""
        c = self.config
        return Downsample(in_ch, out_ch, with_conv=True, fir=c.fir, fir_kernel=c.fir_kernel)

    def _build_embedding(self, modules: list[nn.Module]) -> None:
        c = self.config
        embed_dim = c.nf
        if c.embedding_type == "fourier":
            modules.append(GaussianFourierProjection(c.nf, scale=c.fourier_scale))
            embed_dim = 2 * c.nf
        modules += [dense(embed_dim, 4 * c.nf), dense(4 * c.nf, 4 * c.nf)]

    def _build_down(self, modules: list[nn.Module]) -> list[int]:
        """Input conv, then per level: res blocks (+attention), a downsampler, the input pyramid."""
        c = self.config
        modules.append(conv3x3(c.in_channels, c.nf))
        skip_channels, in_ch, pyramid_ch = [c.nf], c.nf, c.in_channels
        for level, mult in enumerate(c.ch_mult):
            for _ in range(c.num_res_blocks):
                modules.append(self._resblock(in_ch, c.nf * mult))
                in_ch = c.nf * mult
                if self._attn_levels[level]:
                    modules.append(self._attention(in_ch))
                skip_channels.append(in_ch)
            if level == len(c.ch_mult) - 1:
                break
            modules.append(self._downsampler(in_ch))
            if c.progressive_input == "input_skip":
                modules.append(Combine(pyramid_ch, in_ch, method=c.progressive_combine))
                in_ch *= 2 if c.progressive_combine == "cat" else 1
            elif c.progressive_input == "residual":
                modules.append(self._pyramid_downsampler(pyramid_ch, in_ch))
                pyramid_ch = in_ch
            skip_channels.append(in_ch)
        return skip_channels

    def _build_up(self, modules: list[nn.Module], skip_channels: list[int]) -> None:
        """Middle (res, attention, res), then per level up: res blocks over the skips, heads."""
        c = self.config
        in_ch = skip_channels[-1]
        modules += [self._resblock(in_ch), self._attention(in_ch), self._resblock(in_ch)]
        pyramid_ch = 0
        for level in reversed(range(len(c.ch_mult))):
            for _ in range(c.num_res_blocks + 1):
                modules.append(self._resblock(in_ch + skip_channels.pop(), c.nf * c.ch_mult[level]))
                in_ch = c.nf * c.ch_mult[level]
            if self._attn_levels[level]:
                modules.append(self._attention(in_ch))
            if c.progressive != "none":
                pyramid_ch = self._build_output_pyramid(modules, level, in_ch, pyramid_ch)
            if level != 0:
                modules.append(self._upsampler(level, in_ch))
        assert not skip_channels
        if c.progressive != "output_skip":
            modules += [nn.GroupNorm(group_count(in_ch), in_ch, eps=1e-6),
                        conv3x3(in_ch, c.in_channels, init_scale=c.init_scale)]

    def _build_output_pyramid(self, modules: list[nn.Module], level: int, in_ch: int,
                              pyramid_ch: int) -> int:
        c = self.config
        if c.progressive == "output_skip" or level == len(c.ch_mult) - 1:
            out_ch = c.in_channels if c.progressive == "output_skip" else in_ch
            scale = c.init_scale if c.progressive == "output_skip" else 1.0
            modules += [nn.GroupNorm(group_count(in_ch), in_ch, eps=1e-6),
                        conv3x3(in_ch, out_ch, init_scale=scale)]
            return out_ch
        modules.append(Upsample(pyramid_ch, in_ch, with_conv=True, fir=c.fir,
                                fir_kernel=c.fir_kernel))
        return in_ch

    # -- forward, consuming all_modules in the same order ----------------------------------

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                z: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, H, W], t [B] (step index or time), z [B, z_dim] -> [B, C, H, W]."""
        t = self._check_inputs(x, t, z)
        zemb = self.z_transform(z) if self.z_dim > 0 else None
        blocks = iter(self.all_modules)
        temb = self._embed_time(blocks, t, x.dtype)
        skips = self._down(blocks, x, temb, zemb)
        h = next(blocks)(skips[-1], temb, zemb)  # middle: res block, attention, res block
        h = next(blocks)(h)
        h = next(blocks)(h, temb, zemb)
        h = self._up(blocks, h, skips, temb, zemb)
        assert next(blocks, None) is None, "module list and forward are out of step"
        return h

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor,
                      z: torch.Tensor | None) -> torch.Tensor:
        return check_denoiser_inputs("NCSN++", x, t, z, in_channels=self.in_channels,
                                     resolution=self.resolution, z_dim=self.z_dim)

    def _embed_time(self, blocks: Iterator[nn.Module], t: torch.Tensor,
                    dtype: torch.dtype) -> torch.Tensor:
        if self.config.embedding_type == "fourier":
            emb = next(blocks)(t)
        else:
            emb = timestep_embedding(t, self.config.nf)
        emb = next(blocks)(emb.to(dtype))
        return next(blocks)(F.silu(emb))

    def _down(self, blocks: Iterator[nn.Module], x: torch.Tensor, temb: torch.Tensor,
              zemb: torch.Tensor | None, downsample: LevelCall = _call) -> list[torch.Tensor]:
        """The skips: input conv, then per level the res blocks (+attention), and the output of
        ``downsample(downsampler, h, temb, zemb)`` after the input pyramid step."""
        c = self.config
        pyramid = x
        skips = [next(blocks)(x)]
        for level in range(len(c.ch_mult)):
            for _ in range(c.num_res_blocks):
                h = next(blocks)(skips[-1], temb, zemb)
                if self._attn_levels[level]:
                    h = next(blocks)(h)
                skips.append(h)
            if level == len(c.ch_mult) - 1:
                break
            h = downsample(next(blocks), skips[-1], temb, zemb)
            if c.progressive_input == "input_skip":
                pyramid = self.pyramid_downsample(pyramid)
                h = next(blocks)(pyramid, h)
            elif c.progressive_input == "residual":
                pyramid = _residual_sum(next(blocks)(pyramid), h, c.skip_rescale)
                h = pyramid
            skips.append(h)
        return skips

    def _up(self, blocks: Iterator[nn.Module], h: torch.Tensor, skips: list[torch.Tensor],
            temb: torch.Tensor, zemb: torch.Tensor | None,
            upsample: LevelCall = _call) -> torch.Tensor:
        """Per level: res blocks over the skips (+attention), the output pyramid, and
        ``upsample(upsampler, h, temb, zemb)``; then the head."""
        c = self.config
        pyramid = None
        for level in reversed(range(len(c.ch_mult))):
            for _ in range(c.num_res_blocks + 1):
                h = next(blocks)(torch.cat([h, skips.pop()], dim=1), temb, zemb)
            if self._attn_levels[level]:
                h = next(blocks)(h)
            if c.progressive != "none":
                h, pyramid = self._output_pyramid(blocks, level, h, pyramid)
            if level != 0:
                h = upsample(next(blocks), h, temb, zemb)
        assert not skips
        if c.progressive == "output_skip":
            return pyramid
        norm, conv = next(blocks), next(blocks)
        return conv(F.silu(norm(h)))

    def _output_pyramid(self, blocks: Iterator[nn.Module], level: int, h: torch.Tensor,
                        pyramid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        if c.progressive == "output_skip" or level == len(c.ch_mult) - 1:
            norm, conv = next(blocks), next(blocks)
            out = conv(F.silu(norm(h)))
            if pyramid is None or c.progressive != "output_skip":
                return h, out
            return h, self.pyramid_upsample(pyramid) + out
        pyramid = _residual_sum(next(blocks)(pyramid), h, c.skip_rescale)
        return pyramid, pyramid


@register("backbone", "ncsnpp",
          paper="Song et al. 2021 (NCSN++); Xiao et al. 2022 (DDGAN generator)",
          description="NCSN++ U-Net; z_dim > 0 gives the DDGAN/WDDGAN/LDDGAN AdaGN generator",
          tags=("cnn", "unet", "ddgan"))
def ncsnpp(*, in_channels: int, resolution: int, nf: int = 128,
           ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 2,
           attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0, z_dim: int = 100,
           z_emb_dim: int = 256, n_mlp: int = 4, fir: bool = True,
           fir_kernel: Sequence[float] = (1, 3, 3, 1), skip_rescale: bool = True,
           resblock_type: str = "biggan", resamp_with_conv: bool = True, progressive: str = "none",
           progressive_input: str = "residual", progressive_combine: str = "sum",
           embedding_type: str = "positional", fourier_scale: float = 16.0,
           init_scale: float = 0.0) -> NCSNpp:
    """NCSN++ / DDGAN generator; defaults are DDGAN's CIFAR-10 generator (48.43M parameters)."""
    args = dict(locals())
    names = {f.name for f in fields(NCSNppConfig)}
    return NCSNpp(NCSNppConfig(**{k: v for k, v in args.items() if k in names}))
