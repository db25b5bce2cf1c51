"""The parameterisation wrapper: one calling convention for every backbone.

Follows the preconditioning wrappers of Karras et al. 2022 (NVlabs/edm ``training/networks.py``,
``VPPrecond``/``EDMPrecond``): the architecture is a plain network ``backbone(x, t, z)`` and a thin
module around it decides what its raw output means. Here there are two meanings:

* ``output="x0"``: the DDGAN generator's clean-image prediction, ``tanh(F(x_{k+1}, k, z))``
  (Xiao et al. 2022, Sec. 3.2; the tanh of NVlabs/denoising-diffusion-gan
  ``score_sde/models/ncsnpp_generator_adagn.py``, switched off there by ``--not_use_tanh``);
* ``output="eps"``: the noise prediction eps_theta(x_t, t) of DDPM (Ho et al. 2020, Eq. 14), the
  raw output unchanged.

The wrapper also owns z: ``z_dim`` is the width of the latent noise the backbone takes, and z is
None when ``z_dim == 0`` (eps networks). Samplers, trainers and the harness read ``z_dim`` and
``output`` from here.

The wrapper adds no parameters and is transparent to ``state_dict``: its keys are the backbone's
(no ``backbone.`` prefix), so generator weights saved before the wrapper existed, and released
checkpoints loaded into a backbone, load into a :class:`Denoiser` unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

OUTPUTS = ("x0", "eps")
_PREFIX = "backbone."


class Denoiser(nn.Module):
    """``D(x, t, z)``: the backbone's output read as x0 (through tanh) or as eps."""

    def __init__(self, backbone: nn.Module, *, output: str, z_dim: int) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r}; use one of {', '.join(OUTPUTS)}")
        if int(z_dim) != z_dim or z_dim < 0:
            raise ValueError(f"z_dim={z_dim!r} must be an integer >= 0")
        self.backbone = backbone
        self.output = output
        self.z_dim = int(z_dim)
        self.register_state_dict_post_hook(_drop_prefix)
        self.register_load_state_dict_pre_hook(_add_prefix)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                z: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, H, W], t [B] step index, z [B, z_dim] (None when z_dim == 0)."""
        if self.z_dim == 0 and z is not None:
            raise ValueError("this denoiser takes no z (z_dim = 0); pass z=None")
        if self.z_dim > 0 and (z is None or tuple(z.shape) != (x.shape[0], self.z_dim)):
            got = None if z is None else list(z.shape)
            raise ValueError(f"this denoiser needs z of shape [{x.shape[0]}, {self.z_dim}], "
                             f"got {got}")
        out = self.backbone(x, t, z)
        return torch.tanh(out) if self.output == "x0" else out

    def extra_repr(self) -> str:
        return f"output={self.output!r}, z_dim={self.z_dim}"


def _drop_prefix(module: nn.Module, state: dict[str, Any], prefix: str,
                 local_metadata: dict[str, Any]) -> None:
    """state_dict post-hook: ``<prefix>backbone.<key>`` -> ``<prefix><key>``, order kept."""
    inner = prefix + _PREFIX
    for key in [k for k in state if k.startswith(inner)]:
        state[prefix + key[len(inner):]] = state.pop(key)


def _add_prefix(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    """load_state_dict pre-hook, the inverse: keys under ``prefix`` go under ``backbone.``."""
    for key in [k for k in state if k.startswith(prefix)]:
        state[prefix + _PREFIX + key[len(prefix):]] = state.pop(key)
