"""The PatchGAN discriminator (Isola et al. 2017, "Image-to-image translation with conditional
adversarial networks"), as VQGAN (Esser et al. 2021) and LDM (Rombach et al. 2022) use it to train
their autoencoders (``CompVis/taming-transformers taming/modules/discriminator/model.py``
``NLayerDiscriminator``)."""

from __future__ import annotations

import torch
from torch import nn

from genbench.registry import register


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator: one logit per overlapping image patch.

    4x4 convolutions: ``ndf`` channels at stride 2, then ``n_layers - 1`` stride-2 layers doubling
    the width (capped at 8 ndf) with BatchNorm, one stride-1 layer, and a 1-channel stride-1
    output. LeakyReLU 0.2. Weights ~ N(0, 0.02), BatchNorm scales ~ N(1, 0.02) (taming
    ``weights_init``).
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.n_layers = n_layers
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    @staticmethod
    def output_side(side: int, n_layers: int) -> int:
        """Side of the logit map for a ``side`` x ``side`` input."""
        for _ in range(n_layers):
            side = (side + 2 - 4) // 2 + 1
        return side - 2  # two 4x4 stride-1 convolutions with padding 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


@register("discriminator", "patchgan", paper="Isola et al. 2017; Esser et al. 2021",
          description="PatchGAN (NLayerDiscriminator) of VQGAN/LDM autoencoder training")
def patchgan(
    in_channels: int = 3,  # image channels
    ndf: int = 64,  # width of the first layer (taming ndf)
    n_layers: int = 3,  # stride-2 layers before the two stride-1 ones (taming n_layers)
) -> NLayerDiscriminator:
    """PatchGAN discriminator with VQGAN's defaults (ndf 64, 3 layers)."""
    return NLayerDiscriminator(in_channels, ndf, n_layers)
