"""U-ViT (Bao et al., CVPR 2023, "All are Worth Words: A ViT Backbone for Diffusion Models") and
its z-conditioned generator form from the LDDGAN paper (Trinh and Hamagami 2024, appendix C,
Tables 11-12).

Facts were read from the official baofff/U-ViT ``libs/uvit.py`` and
``configs/cifar10_uvit_small.py``; no code was copied. The transformer parts
are timm's layers (``Attention`` with fused SDPA, ``Mlp``, ``DropPath``, ``trunc_normal_``).

One plain network, called ``net(x, t, z=None)``, with a linear head (x0 or eps is decided by
:class:`genbench.backbones.denoiser.Denoiser`):

* Everything is a token: the time step is one token, the image is cut into ``patch_size`` patches
  embedded by a strided convolution, and a learned position embedding is added to all of them
  (no class token: genbench is unconditional).
* ``depth // 2`` pre-norm transformer in-blocks, one mid block, ``depth // 2`` out-blocks. Each
  out-block first merges a long skip from the matching in-block: concatenate, then
  ``Linear(2D -> D)``. The paper's "#layers" is ``depth + 1``.
* Head: LayerNorm -> ``Linear(D -> p^2 C)`` -> drop the time token -> unpatchify -> 3x3 conv.
* ``z_dim > 0`` is the LDDGAN ViT generator: z -> the NCSN++ mapping network
  (:func:`genbench.backbones.ncsnpp.mapping_network`) gives a z embedding, and both LayerNorms of
  every transformer block become adaptive, ``gamma(z) * LN(h) + beta(z)`` with
  ``gamma, beta = dense(z_emb)`` initialised to gamma = 1, beta = 0 (the convention of NCSN++'s
  AdaGN). The paper says "adaptive group normalization"; over tokens the LayerNorm is the group
  norm with one group, and the paper publishes no more detail. The head's LayerNorm stays plain,
  as NCSN++'s output GroupNorm does.
* ``z_dim == 0`` is the official U-ViT for eps-prediction. Parameter names follow the official
  module, so a released U-ViT state dict loads with ``strict=True``.

Time: ``t`` is the integer step index (the official U-ViT's continuous VP-SDE time as ``t * 999``,
``sde.py``, which is the DDPM step index at t = i / 999), embedded as the official module does
(``time_embedding="uvit"``, the default: its own ``timestep_embedding``, [cos, sin], frequencies
10000^(-i / (D/2)); baofff/U-ViT ``libs/uvit.py`` at commit
ce551708dc9cde9818d2af7d84dfadfeb7bd9034). With it genbench's U-ViT equals the official module given
the same weights and time input (tests/test_forward_parity.py, fixtures recorded from the official
code), so released weights (``cifar10_uvit_small.pth``) load and run as trained.
``time_embedding="ncsnpp"`` embeds as NCSN++ does ([sin, cos], frequencies
10000^(-i / (D/2 - 1)); :func:`~genbench.backbones.layers.timestep_embedding`), the embedding
genbench's U-ViT used before the official one was checked.

Official CIFAR-10 U-ViT-S/2 (3x32x32, patch 2, D 512, depth 12, 8 heads): 44,255,328 parameters.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models.vision_transformer import Attention
from torch import nn
from torch.nn import functional as F

from genbench.backbones.layers import check_denoiser_inputs, timestep_embedding
from genbench.backbones.ncsnpp import mapping_network
from genbench.errors import UserError
from genbench.registry import register

PAPER = ("Bao et al. 2023 (U-ViT); Trinh and Hamagami 2024 (LDDGAN appendix C, z-conditioned "
         "ViT generator)")


@dataclass(frozen=True)
class UViTConfig:
    """Constructor arguments of :class:`UViT`; defaults are the official CIFAR-10 U-ViT-S/2."""

    in_channels: int  # image or latent channels C; the output has C channels too
    resolution: int  # input height = width
    patch_size: int = 2  # side of the square patches; must divide resolution
    embed_dim: int = 512  # token width D
    depth: int = 12  # in-blocks + out-blocks (even); one mid block comes on top
    num_heads: int = 8
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * D
    qkv_bias: bool = False
    mlp_time_embed: bool = False  # official: an MLP on the time token (off for CIFAR-10)
    drop_path: float = 0.0  # stochastic depth, rising linearly over the blocks to this rate
    z_dim: int = 0  # latent z width; 0 = no z, plain LayerNorm (eps networks)
    z_emb_dim: int = 256  # width of the z embedding driving the adaptive LayerNorms
    n_mlp: int = 4  # dense layers of the z mapping after the first
    conv_out: bool = True  # final 3x3 convolution after unpatchify
    skip: bool = True  # long skip connections from in-blocks to out-blocks
    # "ncsnpp": genbench's (NCSN++'s) sinusoidal embedding; "uvit": the official U-ViT's
    time_embedding: str = "uvit"

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def num_patches(self) -> int:
        """Image tokens (the time token comes on top)."""
        return (self.resolution // self.patch_size) ** 2


def divisors(n: int) -> list[int]:
    """Positive divisors of ``n``, ascending: the patch sizes that fit a resolution ``n``."""
    return [d for d in range(1, n + 1) if n % d == 0]


def _validate(cfg: UViTConfig) -> None:
    """Raise a UserError naming the first impossible argument."""
    for name in ("in_channels", "resolution", "patch_size", "embed_dim", "num_heads"):
        value = getattr(cfg, name)
        if int(value) != value or value < 1:
            raise UserError(f"backbone.{name}={value!r} must be a positive integer")
    if cfg.resolution % cfg.patch_size:
        sizes = ", ".join(map(str, divisors(cfg.resolution)))
        raise UserError(f"uvit patch_size {cfg.patch_size} does not divide resolution "
                        f"{cfg.resolution}; use one of {sizes}")
    if cfg.embed_dim % cfg.num_heads:
        raise UserError(f"uvit embed_dim {cfg.embed_dim} is not divisible by num_heads "
                        f"{cfg.num_heads}; choose a head count that divides it")
    if int(cfg.depth) != cfg.depth or cfg.depth < 0 or cfg.depth % 2:
        raise UserError(f"backbone.depth={cfg.depth!r} must be an even number >= 0 "
                        f"(depth/2 in-blocks and depth/2 out-blocks, plus the mid block)")
    if cfg.mlp_ratio <= 0 or not 0.0 <= cfg.drop_path < 1.0:
        raise UserError(f"backbone.mlp_ratio={cfg.mlp_ratio} must be > 0 and "
                        f"backbone.drop_path={cfg.drop_path} in [0, 1)")
    if cfg.time_embedding not in TIME_EMBEDDINGS:
        raise UserError(f"backbone.time_embedding={cfg.time_embedding!r}; use one of "
                        f"{', '.join(TIME_EMBEDDINGS)}")
    if cfg.z_dim < 0 or cfg.n_mlp < 0 or (cfg.z_dim > 0 and cfg.z_emb_dim < 1):
        raise UserError("backbone.z_dim and n_mlp must be >= 0 and z_emb_dim >= 1 when z_dim > 0")


def uvit_timestep_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """The official U-ViT time embedding of ``t`` [B] (may be fractional): [cos(t w_i),
    sin(t w_i)] with w_i = max_period^(-i / (dim // 2)), i = 0..dim//2-1; odd ``dim`` is
    zero-padded (baofff/U-ViT ``libs/uvit.py`` ``timestep_embedding``, the guided-diffusion
    convention)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period)
                      * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


TIME_EMBEDDINGS = {"ncsnpp": timestep_embedding, "uvit": uvit_timestep_embedding}


class AdaptiveLayerNorm(nn.Module):
    """LayerNorm without affine, modulated per sample: gamma * LN(h) + beta, (gamma, beta) =
    dense(z_emb); gamma = 1 and beta = 0 at initialisation (as NCSN++'s ``AdaptiveGroupNorm``)."""

    def __init__(self, dim: int, style_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.style = nn.Linear(style_dim, 2 * dim)
        self.dim = dim

    def reset_modulation(self) -> None:
        """Identity modulation: zero-mean weights stay, bias = (gamma = 1, beta = 0)."""
        with torch.no_grad():
            self.style.bias[: self.dim] = 1.0
            self.style.bias[self.dim:] = 0.0

    def forward(self, h: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style)[:, None, :].chunk(2, dim=-1)  # [B, 1, D] each
        return gamma * self.norm(h) + beta


def _layer_norm(dim: int, zemb_dim: int) -> nn.Module:
    return AdaptiveLayerNorm(dim, zemb_dim) if zemb_dim > 0 else nn.LayerNorm(dim)


def _apply_norm(norm: nn.Module, h: torch.Tensor, zemb: torch.Tensor | None) -> torch.Tensor:
    return norm(h, zemb) if isinstance(norm, AdaptiveLayerNorm) else norm(h)


class Block(nn.Module):
    """Pre-norm transformer block with an optional long-skip input (official ``uvit.Block``)."""

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float, qkv_bias: bool,
                 drop_path: float, skip: bool, zemb_dim: int) -> None:
        super().__init__()
        self.norm1 = _layer_norm(dim, zemb_dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = _layer_norm(dim, zemb_dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                zemb: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.drop_path(self.attn(_apply_norm(self.norm1, x, zemb)))
        return x + self.drop_path(self.mlp(_apply_norm(self.norm2, x, zemb)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens by a stride-``patch_size`` convolution."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, L, D]


def unpatchify(tokens: torch.Tensor, channels: int, patch_size: int) -> torch.Tensor:
    """[B, h*w, p*p*C] with features ordered (p1, p2, C) -> [B, C, h*p, w*p] (official layout)."""
    b, length, _ = tokens.shape
    side = int(round(length**0.5))
    x = tokens.reshape(b, side, side, patch_size, patch_size, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, side * patch_size, side * patch_size)


def _init_vit(module: nn.Module) -> None:
    """Official U-ViT initialisation: Linear weights ~ trunc N(0, 0.02), zero biases."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class UViT(nn.Module):
    """U-ViT; see the module docstring. Call as ``net(x, t, z=None)``."""

    def __init__(self, config: UViTConfig) -> None:
        super().__init__()
        c = self.config = config
        self.in_channels, self.resolution = c.in_channels, c.resolution
        self.z_dim, self.patch_size = c.z_dim, c.patch_size
        self.embed_dim = d = c.embed_dim
        self.patch_embed = PatchEmbed(c.patch_size, c.in_channels, d)
        self.time_embed = (nn.Sequential(nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d))
                           if c.mlp_time_embed else nn.Identity())
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + c.num_patches, d))
        rates = [c.drop_path * i / max(c.depth, 1) for i in range(c.depth + 1)]  # timm's rule
        half = c.depth // 2
        self.in_blocks = nn.ModuleList(self._block(rates[i], False) for i in range(half))
        self.mid_block = self._block(rates[half], False)
        self.out_blocks = nn.ModuleList(self._block(rates[half + 1 + i], c.skip)
                                        for i in range(half))
        self.norm = nn.LayerNorm(d)
        self.decoder_pred = nn.Linear(d, c.patch_size**2 * c.in_channels)
        self.final_layer = (nn.Conv2d(c.in_channels, c.in_channels, 3, padding=1)
                            if c.conv_out else nn.Identity())
        if c.z_dim > 0:
            self.z_transform = mapping_network(c.z_dim, c.z_emb_dim, c.n_mlp)
        self._init_weights()

    def _block(self, drop_path: float, skip: bool) -> Block:
        c = self.config
        return Block(c.embed_dim, c.num_heads, mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias,
                     drop_path=drop_path, skip=skip, zemb_dim=c.z_emb_dim if c.z_dim > 0 else 0)

    def _init_weights(self) -> None:
        """U-ViT's init on the transformer; the z mapping keeps NCSN++'s; convs torch's default."""
        trunc_normal_(self.pos_embed, std=0.02)
        for part in (self.time_embed, self.in_blocks, self.mid_block, self.out_blocks, self.norm,
                     self.decoder_pred):
            part.apply(_init_vit)
        for module in self.modules():
            if isinstance(module, AdaptiveLayerNorm):
                module.reset_modulation()

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                z: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, H, W], t [B] integer step index, z [B, z_dim] or None -> [B, C, H, W]."""
        t = self._check_inputs(x, t, z)
        zemb = self.z_transform(z) if self.z_dim > 0 else None
        tokens = self.patch_embed(x)
        embed = TIME_EMBEDDINGS[self.config.time_embedding]
        time_token = self.time_embed(embed(t, self.embed_dim).to(tokens.dtype))
        h = torch.cat([time_token[:, None, :], tokens], dim=1) + self.pos_embed
        skips = []
        for block in self.in_blocks:
            h = block(h, zemb=zemb)
            skips.append(h)
        h = self.mid_block(h, zemb=zemb)
        for block in self.out_blocks:
            h = block(h, skips.pop(), zemb=zemb)
        h = self.decoder_pred(self.norm(h))[:, 1:, :]  # drop the time token
        return self.final_layer(unpatchify(h, self.in_channels, self.patch_size))

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor,
                      z: torch.Tensor | None) -> torch.Tensor:
        return check_denoiser_inputs("U-ViT", x, t, z, in_channels=self.in_channels,
                                     resolution=self.resolution, z_dim=self.z_dim)


@register("backbone", "uvit", paper=PAPER, tags=("vit", "uvit"),
          description="U-ViT; z_dim > 0 gives the LDDGAN ViT generator (adaptive LayerNorm)")
def uvit(*, in_channels: int, resolution: int, patch_size: int = 2, embed_dim: int = 512,
         depth: int = 12, num_heads: int = 8, mlp_ratio: float = 4.0, qkv_bias: bool = False,
         mlp_time_embed: bool = False, drop_path: float = 0.0, z_dim: int = 0,
         z_emb_dim: int = 256, n_mlp: int = 4, conv_out: bool = True, skip: bool = True,
         time_embedding: str = "uvit") -> UViT:
    """U-ViT of any layout; defaults are the official CIFAR-10 U-ViT-S/2 (44.26M parameters)."""
    return UViT(UViTConfig(**locals()))


# Layouts of the named sizes, defined here only (registry/backbone/uvit_*.yaml name the size and
# list its parameter counts).
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(embed_dim=320, depth=10, num_heads=5),
    "mid": dict(embed_dim=512, depth=12, num_heads=8),  # official U-ViT-S/2 (CIFAR-10)
    "large": dict(embed_dim=512, depth=14, num_heads=8),
}


def _sized(size: str, in_channels: int, resolution: int, overrides: dict[str, Any]) -> UViT:
    """Call :func:`uvit` with the layout of ``size``; ``overrides`` win over it."""
    accepted = set(inspect.signature(uvit).parameters) - {"in_channels", "resolution"}
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise UserError(f"backbone uvit_{size} takes no argument(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(sorted(accepted))}")
    return uvit(in_channels=in_channels, resolution=resolution, **{**SIZES[size], **overrides})


@register("backbone", "uvit_tiny", paper=PAPER, tags=("vit", "uvit"))
def uvit_tiny(*, in_channels: int, resolution: int, **overrides: Any) -> UViT:
    """U-ViT Tiny: D 320, depth 10 (+ mid), 5 heads; below LDDGAN Table 11's Tiny (28.01M)."""
    return _sized("tiny", in_channels, resolution, overrides)


@register("backbone", "uvit_mid", paper=PAPER, tags=("vit", "uvit"))
def uvit_mid(*, in_channels: int, resolution: int, **overrides: Any) -> UViT:
    """U-ViT Mid: the official CIFAR-10 U-ViT-S/2 layout, D 512, depth 12 (+ mid), 8 heads."""
    return _sized("mid", in_channels, resolution, overrides)


@register("backbone", "uvit_large", paper=PAPER, tags=("vit", "uvit"))
def uvit_large(*, in_channels: int, resolution: int, **overrides: Any) -> UViT:
    """U-ViT Large: D 512, depth 14 (+ mid), 8 heads; above LDDGAN Table 11's Large (56.17M)."""
    return _sized("large", in_channels, resolution, overrides)
