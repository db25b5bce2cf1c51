"""WaveletNCSNpp, the 256 px and larger generator of Wavelet Diffusion (Phung, Dao and Tran 2023,
"Wavelet Diffusion Models are fast and scalable image generators", CVPR 2023, Sec. 3.3 and
Fig. 3: wavelet down/up-sampling residual blocks, a wavelet input pyramid and a frequency
bottleneck). Facts were read from the official VinAIResearch/WaveDiff repository at commit
f1ad48bbc7a8bb95fc90f87e7811ac2513a4411e: ``score_sde/models/ncsnpp_generator_adagn.py``
(``WaveletNCSNpp``), ``score_sde/models/layerspp.py`` (``WaveletResnetBlockBigGANpp_Adagn``,
``WaveletDownsample``), ``DWT_IDWT/DWT_IDWT_layer.py`` and ``DWT_IDWT_Functions.py``
(``DWT_2D``/``IDWT_2D``), ``train_wddgan.py`` and ``run.sh``; no code was copied.

It is :class:`genbench.backbones.ncsnpp.NCSNpp` (same embedding, z mapping, attention and output
head, same flat ``all_modules`` list and parameter names, so an official ``netG_*.pth`` loads with
``strict=True``) with three changes, all built on one level of the orthonormal Haar transform:

* residual blocks (:class:`WaveletResBlock`): the resampling blocks replace FIR resampling by the
  Haar transform. Going down, the block keeps LL / 2 of its branch and of its 1x1 shortcut and
  hands the branch's three high bands to the decoder; going up, it runs those bands through a
  grouped 3x3 conv (``convH_0``, one group per band) and inverts the transform with them, for the
  branch (its LL times 2) and the shortcut alike. ``Conv_0`` runs before the resampling and the
  time bias is added after it (the plain BigGAN block resamples first);
* the input pyramid (:class:`WaveletDownsample`): the 4 Haar bands / 2 of the pyramid, then a
  3x3 conv, instead of a strided FIR conv;
* the frequency bottleneck: the first middle block runs on LL / 2 of the lowest-resolution
  features (its output times 2 is inverted with the untouched high bands); the second middle
  block runs once at full size and then again, with the same weights, on the LL band of its own
  output.

The transform is WaveDiff's ``DWT_2D("haar")``, whose bands come out as LL, LH, HL, HH with LH =
low-pass along the height, high-pass along the width (PyWavelets' ``cV``) and HL the other way
(``cH``): the middle two are swapped relative to ``pytorch_wavelets.DWTForward`` (see
:mod:`genbench.latents.wavelet`). It is computed here from the four polyphase components with
additions (:func:`haar_dwt`), not with WaveDiff's dense transform matrices; the values are the same
and neither torch's FLOP counter nor fvcore (which cannot trace WaveDiff's custom autograd
Functions) counts the transform. WaveDiff's ablation switches (``--no_use_fbn``,
``--no_use_freq``, ``--no_use_residual``) are not offered: no released model uses them.

``patch_size`` p > 1 (run.sh celeba_1024: ``--patch_size 2`` on the 12 x 512 x 512 Haar latent)
wraps the network in WaveDiff's einops rearrangements: the input is cut into p x p patches
stacked on the channels in the order (p1, p2, C) (``n c (h p1) (w p2) -> n (p1 p2 c) h w``), the
network runs on C p^2 x H/p x W/p, and its output is put back with the channels read in the
*other* order, (C, p1, p2) (``n (c p1 p2) h w -> n c (h p1) (w p2)``). The two orders differ;
both are kept, since the released weights were trained with them (:func:`patchify`,
:func:`unpatchify`). Attention resolutions refer to the patched size, as in the official
constructor (``image_size // patch_size``).

Counted against the official constructor with run.sh's celeba_256 / lsun settings (12 x 128 x
128 input, nf 64, ch_mult 1 2 2 2 4, attention at 16, nz 100, n_mlp 3): 31,485,452 parameters
(Trinh and Hamagami 2024, LDDGAN paper, Table 2: 31.48M) and, in fvcore's convention, 28.5436
GFLOPs (Table 2: 28.54 G); see ``registry/backbone/wavelet_ncsnpp_256.yaml`` for how genbench's
MAC count relates to it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from genbench.backbones.layers import (
    check_denoiser_inputs,
    conv1x1,
    variance_scaling_,
)
from genbench.backbones.ncsnpp import (
    AdaGNBlock,
    NCSNpp,
    NCSNppConfig,
    _apply_norm,
    _residual_sum,
)
from genbench.errors import UserError
from genbench.registry import register

Bands = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, p*p*C, H/p, W/p], channel (i, j, c) at index (i*p + j)*C + c for the
    pixel at row offset i, column offset j of each patch (WaveDiff's input rearrangement)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(b, p * p * c, h // p, w // p)


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C*p*p, h, w] -> [B, C, h*p, w*p], reading channel c*p*p + i*p + j as row offset i,
    column offset j of channel c (WaveDiff's output rearrangement, not the inverse of
    :func:`patchify`)."""
    b, cpp, h, w = x.shape
    c = cpp // (p * p)
    x = x.reshape(b, c, p, p, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c, h * p, w * p)


def haar_dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One orthonormal Haar level in WaveDiff's ``DWT_2D`` band order: LL, LH, HL, HH.

    For each 2 x 2 block [[a, b], [c, d]]: LL = (a + b + c + d) / 2, LH = (a - b + c - d) / 2
    (high-pass along the width), HL = (a + b - c - d) / 2 (high-pass along the height),
    HH = (a - b - c + d) / 2.
    """
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"the Haar transform needs an even height and width, got {list(x.shape)}")
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return ((a + b + c + d) / 2, (a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2)


def haar_idwt(ll: torch.Tensor, lh: torch.Tensor, hl: torch.Tensor,
              hh: torch.Tensor) -> torch.Tensor:
    """The exact inverse of :func:`haar_dwt` (WaveDiff's ``IDWT_2D``)."""
    a = (ll + lh + hl + hh) / 2
    b = (ll - lh + hl - hh) / 2
    c = (ll + lh - hl - hh) / 2
    d = (ll - lh - hl + hh) / 2
    top = torch.stack([a, b], dim=-1).flatten(-2)  # interleave along the width
    bottom = torch.stack([c, d], dim=-1).flatten(-2)
    return torch.stack([top, bottom], dim=-2).flatten(-3, -2)  # interleave along the height


class WaveletDownsample(nn.Module):
    """Input pyramid step: Haar bands (LL, LH, HL, HH) / 2 -> 3x3 conv (``WaveletDownsample``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(variance_scaling_(torch.empty(out_ch, 4 * in_ch, 3, 3)))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = torch.cat(haar_dwt(x), dim=1) / 2
        return F.conv2d(bands, self.weight, self.bias, padding=1)


class WaveletResBlock(AdaGNBlock):
    """BigGAN-style AdaGN residual block with Haar resampling
    (``layerspp.WaveletResnetBlockBigGANpp_Adagn``); see the module docstring.

    ``down=True`` returns ``(out, (LH, HL, HH))``, the high bands of the branch after ``Conv_0``;
    ``up=True`` takes those bands of the matching down block as ``skip_h``.
    """

    def __init__(self, in_ch: int, out_ch: int | None = None, *, temb_dim: int, zemb_dim: int,
                 up: bool = False, down: bool = False, hi_in_ch: int | None = None,
                 dropout: float = 0.0, skip_rescale: bool = True, init_scale: float = 0.0) -> None:
        out_ch = out_ch or in_ch
        super().__init__(in_ch, out_ch, temb_dim=temb_dim, zemb_dim=zemb_dim, dropout=dropout,
                         init_scale=init_scale)
        self.Conv_2 = conv1x1(in_ch, out_ch) if (in_ch != out_ch or up or down) else None
        if up:
            if hi_in_ch is None:
                raise ValueError("an up block needs hi_in_ch, the width of the skipped bands")
            # one group per band: LH, HL, HH are mapped separately
            self.convH_0 = nn.Conv2d(3 * hi_in_ch, 3 * out_ch, 3, padding=1, groups=3)
            variance_scaling_(self.convH_0.weight)
            nn.init.zeros_(self.convH_0.bias)
        self.up, self.down = up, down
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor, temb: torch.Tensor, zemb: torch.Tensor | None = None,
                skip_h: Bands | None = None) -> torch.Tensor | tuple[torch.Tensor, Bands]:
        h = self.Conv_0(F.silu(_apply_norm(self.GroupNorm_0, x, zemb)))
        if self.Conv_2 is not None:
            x = self.Conv_2(x)
        high: Bands | None = None
        if self.up:
            if skip_h is None:
                raise ValueError("an up block needs skip_h, the high bands of its down block")
            lh, hl, hh = (self.convH_0(torch.cat(skip_h, dim=1) / 2) * 2).chunk(3, dim=1)
            h, x = haar_idwt(2 * h, lh, hl, hh), haar_idwt(2 * x, lh, hl, hh)
        elif self.down:
            h, *h_high = haar_dwt(h)
            x = haar_dwt(x)[0]
            high = (h_high[0], h_high[1], h_high[2])
            h, x = h / 2, x / 2
        h = self.second_conv(h + self.time_bias(temb), zemb)
        out = _residual_sum(x, h, self.skip_rescale)
        return (out, high) if self.down else out


class WaveletNCSNpp(NCSNpp):
    """WaveDiff's WaveletNCSNpp; see the module docstring. Call as ``net(x, t, z)``."""

    def __init__(self, config: NCSNppConfig, patch_size: int = 1) -> None:
        if int(patch_size) != patch_size or patch_size < 1:
            raise UserError(f"backbone.patch_size={patch_size!r} must be a positive integer")
        if config.resolution % patch_size:
            raise UserError(f"backbone.resolution={config.resolution} is not divisible by "
                            f"patch_size={patch_size}")
        if config.resblock_type != "biggan" or config.progressive != "none":
            raise UserError("wavelet_ncsnpp has BigGAN-style wavelet blocks and no output pyramid "
                            "(resblock_type biggan, progressive none)")
        if config.progressive_input not in ("residual", "none"):
            raise UserError(f"wavelet_ncsnpp: progressive_input={config.progressive_input!r} is "
                            f"not supported; use residual (the wavelet pyramid) or none")
        if config.z_dim < 1:
            raise UserError("wavelet_ncsnpp is a DDGAN generator: z_dim must be >= 1")
        factor = 2 ** len(config.ch_mult)  # the bottleneck halves the lowest level once more
        if (config.resolution // patch_size) % factor:
            raise UserError(f"backbone.resolution={config.resolution} must be divisible by "
                            f"2**len(ch_mult)={factor} (the frequency bottleneck halves the "
                            f"smallest level again)"
                            + (f" after patch_size={patch_size}" if patch_size > 1 else ""))
        outer_channels, outer_resolution = config.in_channels, config.resolution
        # the network proper runs on the patches (official: num_channels * patch_size**2
        # channels at image_size // patch_size)
        config = replace(config, in_channels=config.in_channels * patch_size**2,
                         resolution=config.resolution // patch_size)
        super().__init__(config)
        self.patch_size = int(patch_size)
        self.in_channels, self.resolution = outer_channels, outer_resolution

    # -- construction: NCSNpp's loops with the wavelet layers -------------------------------

    def _resblock(self, in_ch: int, out_ch: int | None = None, *, up: bool = False,
                  down: bool = False, hi_in_ch: int | None = None) -> WaveletResBlock:
        c = self.config
        return WaveletResBlock(in_ch, out_ch, temb_dim=4 * c.nf, zemb_dim=c.z_emb_dim, up=up,
                               down=down, hi_in_ch=hi_in_ch, dropout=c.dropout,
                               skip_rescale=c.skip_rescale, init_scale=c.init_scale)

    def _upsampler(self, level: int, in_ch: int) -> WaveletResBlock:
        # the high bands come from the down block that left level - 1, which keeps the width
        # nf * ch_mult[level - 1] of that level's res blocks (official hs_c2)
        c = self.config
        return self._resblock(in_ch, up=True, hi_in_ch=c.nf * c.ch_mult[level - 1])

    def _pyramid_downsampler(self, in_ch: int, out_ch: int) -> WaveletDownsample:
        return WaveletDownsample(in_ch, out_ch)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                z: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, H, W], t [B] (step index), z [B, z_dim] -> [B, C, H, W] (linear head)."""
        t = check_denoiser_inputs("WaveletNCSN++", x, t, z, in_channels=self.in_channels,
                                  resolution=self.resolution, z_dim=self.z_dim)
        p = self.patch_size
        if p > 1:
            x = patchify(x, p)
        zemb = self.z_transform(z)
        blocks = iter(self.all_modules)
        temb = self._embed_time(blocks, t, x.dtype)
        highs: list[Bands] = []  # the high bands of each down block, for its up block

        def down(block: nn.Module, h: torch.Tensor, temb: torch.Tensor,
                 zemb: torch.Tensor | None) -> torch.Tensor:
            h, high = block(h, temb, zemb)
            highs.append(high)
            return h

        def up(block: nn.Module, h: torch.Tensor, temb: torch.Tensor,
               zemb: torch.Tensor | None) -> torch.Tensor:
            return block(h, temb, zemb, skip_h=highs.pop())

        skips = self._down(blocks, x, temb, zemb, downsample=down)
        h = self._bottleneck(blocks, skips[-1], temb, zemb)
        h = self._up(blocks, h, skips, temb, zemb, upsample=up)
        assert next(blocks, None) is None and not highs, "module list and forward are out of step"
        return unpatchify(h, p) if p > 1 else h

    def _bottleneck(self, blocks: Iterator[nn.Module], h: torch.Tensor, temb: torch.Tensor,
                    zemb: torch.Tensor) -> torch.Tensor:
        """Middle res block on the LL band, attention, res block at full size then on LL."""
        first, attention, second = next(blocks), next(blocks), next(blocks)
        ll, lh, hl, hh = haar_dwt(h)
        h = haar_idwt(first(ll / 2, temb, zemb) * 2, lh, hl, hh)
        h = second(attention(h), temb, zemb)
        ll, lh, hl, hh = haar_dwt(h)
        return haar_idwt(second(ll / 2, temb, zemb) * 2, lh, hl, hh)


@register("backbone", "wavelet_ncsnpp",
          paper="Phung, Dao and Tran 2023 (Wavelet Diffusion, WaveletNCSNpp)",
          description="WaveDiff's wavelet NCSN++ generator: Haar down/up blocks, wavelet input "
                      "pyramid, frequency bottleneck",
          tags=("cnn", "unet", "ddgan", "wavelet"))
def wavelet_ncsnpp(*, in_channels: int, resolution: int, nf: int = 64,
                   ch_mult: Sequence[int] = (1, 2, 2, 2, 4), num_res_blocks: int = 2,
                   attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0,
                   z_dim: int = 100, z_emb_dim: int = 256, n_mlp: int = 3,
                   skip_rescale: bool = True, progressive_input: str = "residual",
                   embedding_type: str = "positional", fourier_scale: float = 16.0,
                   init_scale: float = 0.0, patch_size: int = 1) -> WaveletNCSNpp:
    """WaveletNCSNpp; defaults are WaveDiff's 256 px generator (run.sh celeba_256, lsun).
    ``in_channels`` and ``resolution`` are those of the latent; ``patch_size`` > 1 runs the network
    on p x p patches (run.sh celeba_1024: 2)."""
    args = dict(locals())
    patch = args.pop("patch_size")
    return WaveletNCSNpp(NCSNppConfig(**args), patch_size=patch)
