"""Released official checkpoints in a cell (``checkpoint=FILE``) and ``genbench import``.

:mod:`genbench.training.released` reads and converts the files; this module fits them to the
configured network, and when they do not fit names the first mismatches and the backbone preset
they would fit: every registered preset of the file's family is built on the ``meta`` device
(shapes only, no memory, no initialisation cost) for the latent shape, and the one whose
parameter names and shapes equal the file's is suggested.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch

from genbench import config
from genbench.errors import UserError
from genbench.harness.build import build_backbone
from genbench.training.checkpoint import save_weights
from genbench.training.released import Released, check_fits, is_torch_file, load_converted

# registered backbone names whose presets a file of each family may fit
_FAMILY_NAMES = {"ncsnpp": ("ncsnpp",), "wavelet_ncsnpp": ("wavelet_ncsnpp",),
                 "uvit": ("uvit", "uvit_tiny", "uvit_mid", "uvit_large")}
# resolutions tried when no configuration fixes the latent (genbench import)
_RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)


@functools.cache
def _composed_section(name: str) -> str:
    return json.dumps(config.compose_plain([f"backbone={name}"])["backbone"])


def _preset_section(name: str) -> dict[str, Any]:
    """The backbone section ``backbone=<name>`` composes to (composed once per process)."""
    return json.loads(_composed_section(name))


def _shapes(cfg: dict[str, Any], latent_shape: tuple[int, int, int], objective: str
            ) -> dict[str, tuple[int, ...]] | None:
    try:
        with torch.device("meta"):
            net = build_backbone(cfg, latent_shape, objective)
    except (UserError, ValueError, RuntimeError, TypeError):
        return None
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def fitting_presets(released: Released, latent_shapes: list[tuple[int, int, int]],
                    latent_name: str = "pixel") -> list[tuple[str, tuple[int, int, int]]]:
    """(preset, latent shape) pairs whose network has exactly the file's names and shapes."""
    family = _FAMILY_NAMES.get(released.family)
    if family is None:
        return []
    objective = "adversarial" if released.implied.get("z_dim") else "eps"
    wanted = {k: tuple(v.shape) for k, v in released.state.items()}
    found = []
    for name in config.group_options("backbone"):
        try:
            section = _preset_section(name)
        except UserError:
            continue
        if section.get("name") not in family:
            continue
        for shape in latent_shapes:
            cfg = {"backbone": section, "latent": {"name": latent_name}}
            if _shapes(cfg, shape, objective) == wanted:
                found.append((name, shape))
    return found


def implied_latent_shapes(released: Released) -> list[tuple[int, int, int]]:
    """The latent shapes a file could be for, from the shapes of its weights."""
    channels = released.implied.get("in_channels")
    if channels is None:
        return []
    if released.implied.get("resolution"):
        return [(channels, released.implied["resolution"], released.implied["resolution"])]
    return [(channels, r, r) for r in _RESOLUTIONS]


def _hint(released: Released, latent_shape: tuple[int, int, int], latent_name: str) -> str:
    fits = fitting_presets(released, [latent_shape], latent_name)
    if fits:
        return f"; it fits backbone={fits[0][0]}"
    if released.family == "wavelet_ncsnpp":
        return ("; it is WaveDiff's WaveletNCSNpp (convH_0 keys): use backbone=wavelet_ncsnpp "
                "or a preset of it")
    fits = fitting_presets(released, implied_latent_shapes(released))
    if fits:
        name, shape = fits[0]
        return (f"; it fits backbone={name} on a {shape[0]}x{shape[1]}x{shape[2]} latent, not "
                f"the configured {latent_shape[0]}x{latent_shape[1]}x{latent_shape[2]}")
    return "; no registered backbone preset fits it"


def load_generator(path: str | Path, net: torch.nn.Module, cfg: dict[str, Any],
                   latent_shape: tuple[int, int, int], cache_dir: Path | None
                   ) -> dict[str, Any]:
    """Load a released generator file strictly into ``net``; returns what the record keeps:
    source, path, SHA-256, format and, for a published baseline, the numbers' source."""
    path = Path(path).expanduser()
    released, sha = load_converted(path, cache_dir)
    if released.role != "generator":
        raise UserError(f"checkpoint {path} is an autoencoder ({released.format}); pass it as "
                        f"latent.checkpoint={path}")
    name = (cfg.get("presets") or {}).get("backbone") or cfg["backbone"]["name"]
    check_fits(released.state, net, f"backbone {name!r}", path,
               _hint(released, latent_shape, cfg["latent"]["name"]))
    net.load_state_dict(released.state, strict=True)
    info: dict[str, Any] = {"source": "checkpoint", "path": str(path), "sha256": sha,
                            "format": released.format, "family": released.family}
    paper = cfg.get("paper") or {}
    if paper.get("source"):
        info["published_numbers_source"] = str(paper["source"])
    return info


def is_released_file(path: str | Path) -> bool:
    """A ``torch.save`` file (an official release), not genbench's safetensors."""
    path = Path(path).expanduser()
    return path.is_file() and is_torch_file(path)


def import_file(path: str | Path, out: str | Path, cache_dir: Path | None = None
                ) -> dict[str, Any]:
    """Convert a released file into genbench's safetensors format (``G_ema.`` generator keys,
    which ``checkpoint=OUT`` loads; ``autoencoder.model.`` keys, which ``latent.checkpoint=OUT``
    loads); returns the SHA-256, format and the configuration the file implies."""
    path = Path(path).expanduser()
    released, sha = load_converted(path, cache_dir)
    prefix = "G_ema" if released.role == "generator" else "autoencoder.model"
    holder = _StateHolder(released.state)
    meta = {"source_sha256": sha, "source_format": released.format}
    save_weights(Path(out), {prefix: holder}, metadata=meta)
    report: dict[str, Any] = {"sha256": sha, "format": released.format, "role": released.role,
                              "family": released.family, "implied": released.implied,
                              "dropped": len(released.dropped), "output": str(out)}
    if released.role == "generator":
        report["presets"] = [f"backbone={n} latent shape {'x'.join(map(str, s))}"
                             for n, s in fitting_presets(released,
                                                         implied_latent_shapes(released))]
        if released.family == "wavelet_ncsnpp" and not report["presets"]:
            report["presets"] = ["backbone=wavelet_ncsnpp (WaveDiff WaveletNCSNpp)"]
    return report


class _StateHolder(torch.nn.Module):
    """A module whose state dict is a given flat dict (to write it with save_weights)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._flat = state

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore
        return dict(self._flat)
