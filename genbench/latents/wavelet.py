"""Wavelet space: one level of the orthonormal Haar transform (WDDGAN, Phung et al. 2023).

Wavelet Diffusion ("Wavelet Diffusion Models are fast and scalable image generators", CVPR 2023)
runs DDGAN on the four Haar sub-bands of the image. As its CIFAR-10 path does
(``VinAIResearch/WaveDiff train_wddgan.py`` with ``--use_pytorch_wavelet``:
``pytorch_wavelets.DWTForward(J=1, mode='zero', wave='haar')``):

* a C x H x W image becomes 4C x H/2 x W/2, band-major: the LL band of every colour channel,
  then LH, HL and HH. In PyWavelets terms ``cA, (cH, cV, cD) = pywt.dwt2(x, 'haar')`` gives
  LL = cA, LH = cH, HL = cV, HH = cD;
* all 4C channels are divided by 2, because the orthonormal LL of [-1, 1] data lies in [-2, 2];
  after the division every band lies in [-1, 1];
* the inverse multiplies by 2, inverts the transform exactly and clamps to [-1, 1].

For a 2 x 2 block [[a, b], [c, d]] the orthonormal bands are LL = (a + b + c + d) / 2,
LH = (a + b - c - d) / 2, HL = (a - b + c - d) / 2 and HH = (a - b - c + d) / 2 (PyWavelets'
``dec_hi = [-1, 1] / sqrt 2`` convolution, checked against it in tests/test_wavelet.py). Both
directions are a fixed 2 x 2, stride-2 (transposed) convolution, so torch's FLOP counter sees
the inverse transform that the timed sampling span includes (WaveDiff's ``test_wddgan.py
--measure_time`` times sampling up to and including the inverse transform).

Band order (``band_order``): WaveDiff has two Haar transforms that order the two middle bands
differently, and each released model was trained with one of them (``train_wddgan.py`` lines
98-103 and 156-161 choose by ``--use_pytorch_wavelet``; run.sh passes it for cifar10, stl10,
celeba_512 and lsun, and comments it out for celeba_256 and celeba_1024):

* ``"pytorch_wavelets"`` (default): ``pytorch_wavelets.DWTForward`` gives LL, LH = cH
  (high-pass along the height), HL = cV, HH, as above;
* ``"dwt_2d"``: WaveDiff's own ``DWT_IDWT/DWT_IDWT_layer.py::DWT_2D`` gives LL, then cV
  ((a - b + c - d) / 2, high-pass along the width), then cH, then HH; its ``IDWT_2D`` inverts in
  the same order. Only the two middle bands of every colour channel trade places; the values
  are the same.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import UserError
from genbench.latents.base import check_image_shape
from genbench.registry import register

BANDS = ("LL", "LH", "HL", "HH")
# (vertical, horizontal) filter of each band, 0 = low-pass, 1 = high-pass, in each order.
BAND_ORDERS: dict[str, tuple[tuple[int, int], ...]] = {
    "pytorch_wavelets": ((0, 0), (1, 0), (0, 1), (1, 1)),  # LL, cH, cV, cD
    "dwt_2d": ((0, 0), (0, 1), (1, 0), (1, 1)),  # WaveDiff DWT_2D: LL, cV, cH, cD
}


def check_band_order(band_order: str) -> str:
    if band_order not in BAND_ORDERS:
        raise UserError(f"latent.band_order={band_order!r} is not supported; use one of "
                        f"{', '.join(BAND_ORDERS)}")
    return band_order


def haar_filters(band_order: str = "pytorch_wavelets") -> torch.Tensor:
    """The four orthonormal 2 x 2 Haar filters [4, 1, 2, 2] in ``band_order`` (module docstring)."""
    rows = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # low-pass, high-pass along one axis
    # filter[band][i][j] = vertical[i] * horizontal[j]; cH is high-pass along rows.
    pairs = BAND_ORDERS[check_band_order(band_order)]
    filters = torch.stack([torch.outer(rows[v], rows[h]) for v, h in pairs]) / 2.0
    return filters.unsqueeze(1)


class HaarSynthesis(nn.Module):
    """Inverse transform: band-major [N, 4C, H, W] (scaled by 1/2) -> [N, C, 2H, 2W].

    No parameters; the filters are a buffer. It is what counts as the wavelet space's decoder.
    """

    def __init__(self, band_order: str = "pytorch_wavelets") -> None:
        super().__init__()
        # The forward analysis uses filters / 2 (the 1/2 band scaling), so the exact inverse of
        # the scaled bands is the transposed convolution with filters * 2 (powers of two: exact).
        self.register_buffer("weight", haar_filters(band_order) * 2.0, persistent=False)

    def forward(self, bands: torch.Tensor) -> torch.Tensor:
        n, c4, h, w = bands.shape
        channels = c4 // 4
        # band-major [N, 4, C, H, W] -> channel-major [N, C * 4, H, W] for the grouped conv
        grouped = bands.reshape(n, 4, channels, h, w).transpose(1, 2).reshape(n, c4, h, w)
        weight = self.weight.to(bands.dtype).repeat(channels, 1, 1, 1)
        return F.conv_transpose2d(grouped, weight, stride=2, groups=channels)


class WaveletSpace:
    """One-level orthonormal Haar wavelet space with band-major order and 1/2 scaling."""

    name = "wavelet"
    needs_fit = False

    def __init__(self, band_order: str = "pytorch_wavelets") -> None:
        self.band_order = check_band_order(band_order)
        self._synthesis = HaarSynthesis(band_order)
        self._analysis = haar_filters(band_order) / 2.0  # the 1/2 scaling, folded in

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        channels, height, width = check_image_shape(image_shape, self.name)
        if height % 2 or width % 2:
            raise UserError(
                f"the wavelet latent halves the image size, but the images are {height}x{width} "
                f"(odd); use an even dataset.resolution"
            )
        return 4 * channels, height // 2, width // 2

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] in [-1, 1] -> [N, 4C, H/2, W/2], four bands (``band_order``) in [-1, 1]."""
        n, channels, height, width = images.shape
        self.latent_shape((channels, height, width))
        weight = self._analysis.to(images.device, images.dtype).repeat(channels, 1, 1, 1)
        grouped = F.conv2d(images, weight, stride=2, groups=channels)  # [N, C*4, h, w]
        h, w = grouped.shape[-2:]
        return grouped.reshape(n, channels, 4, h, w).transpose(1, 2).reshape(n, 4 * channels, h, w)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The exact inverse of :meth:`encode`, clamped to [-1, 1]."""
        if latents.dim() != 4 or latents.shape[1] % 4:
            raise UserError(f"wavelet latents must be [N, 4C, H, W], got {tuple(latents.shape)}")
        synthesis = self._synthesis.to(latents.device)
        return synthesis(latents).clamp(-1.0, 1.0)

    def decoder_module(self) -> nn.Module:
        """The inverse transform (no parameters; its MACs are counted through ``decode``)."""
        return self._synthesis

    def to(self, device: str | torch.device) -> WaveletSpace:
        self._synthesis.to(device)
        return self

    def identity(self) -> dict[str, Any]:
        # The default's string is the one recorded before band_order existed, so cached models
        # trained on pytorch_wavelets-ordered bands keep their keys.
        order = "band-major " + ",".join(BANDS)
        if self.band_order != "pytorch_wavelets":
            order += f" ({self.band_order}: LH = cV, HL = cH)"
        return {"name": self.name, "wavelet": "haar", "levels": 1, "scale": 0.5,
                "band_order": order}


@register("latent", "wavelet", paper="Phung et al. 2023 (Wavelet Diffusion / WDDGAN)",
          description="One-level orthonormal Haar transform, bands LL, LH, HL, HH, scaled by 1/2")
def wavelet(band_order: str = "pytorch_wavelets") -> WaveletSpace:
    """Wavelet space: 4C x H/2 x W/2 Haar sub-bands in [-1, 1].

    ``band_order``: "pytorch_wavelets" (WaveDiff's --use_pytorch_wavelet runs: CIFAR-10, LSUN
    Church) or "dwt_2d" (WaveDiff's own DWT_2D: its CelebA-HQ 256 run).
    """
    return WaveletSpace(band_order)
