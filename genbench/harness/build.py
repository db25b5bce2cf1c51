"""Build the components of one cell from its resolved configuration (plain dicts).

This is the one place where configuration meets library constructors: each component is made by
``registry.create(kind, name, **arguments)``; shape information flows dataset -> latent ->
backbone, and incompatible choices fail here with one clear line.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from genbench import registry
from genbench.backbones.denoiser import Denoiser
from genbench.errors import UserError, unknown_key_error
from genbench.samplers.base import Sampler
from genbench.schema import SEEDS, objective_fields, training_setting_names

# The objective each backbone output parameterization can serve.
_OUTPUT_FOR_OBJECTIVE = {"adversarial": "x0", "eps": "eps"}


def _args(section: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if "name" not in section:
        raise UserError(f"config section {section} has no 'name'")
    args = {k: v for k, v in section.items() if k != "name"}
    return str(section["name"]), args


def build_dataset(cfg: dict[str, Any]):
    name, args = _args(cfg["dataset"])
    return registry.create("dataset", name, **args)


def build_latent(cfg: dict[str, Any]):
    name, args = _args(cfg["latent"])
    return registry.create("latent", name, **args)


def build_sampler(cfg: dict[str, Any]) -> Sampler:
    name, args = _args(cfg["sampler"])
    return registry.create("sampler", name, **args)


def build_backbone(cfg: dict[str, Any], latent_shape: tuple[int, int, int],
                   objective: str) -> Denoiser:
    """The denoiser for a latent of ``latent_shape`` (C, H, W), checked against the objective.

    The registered backbone is a plain ``net(x, t, z)``; the sampler's objective decides what its
    output means (x0 through tanh for ``adversarial``, eps for ``eps``), which
    :class:`~genbench.backbones.denoiser.Denoiser` applies around it.
    """
    name, args = _args(cfg["backbone"])
    channels, height, width = latent_shape
    if height != width:
        raise UserError(f"backbones take square inputs; the latent is {channels}x{height}x{width}")
    wanted = _OUTPUT_FOR_OBJECTIVE.get(objective)
    if wanted is None:
        raise UserError(f"unknown training objective {objective!r}")
    args.pop("output", None)  # the sampler decides; a plugin factory's default does not
    entry = registry.get("backbone", name)
    if objective == "eps" and entry.accepts("z_dim"):
        args["z_dim"] = 0  # eps-prediction networks take no z
    try:
        backbone = registry.create("backbone", name, in_channels=channels, resolution=height,
                                   **args)
    except UserError as exc:
        raise UserError(f"backbone {name!r} cannot take the {channels}x{height}x{width} "
                        f"latent of {cfg['latent']['name']!r}: {exc}") from None
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"backbone {name!r} cannot be built for the {channels}x{height}x{width} "
                        f"latent of {cfg['latent']['name']!r}: {exc}") from None
    return Denoiser(backbone, output=wanted, z_dim=_z_dim(entry, args))


def _z_dim(entry: registry.Entry, args: dict[str, Any]) -> int:
    """The z width the backbone was built with: its argument, else the factory's default, else 0."""
    if "z_dim" in args:
        return int(args["z_dim"])
    default = inspect.signature(entry.factory).parameters.get("z_dim")
    if default is None or default.default is inspect.Parameter.empty:
        return 0
    return int(default.default)


OBJECTIVES = ("adversarial", "eps")


def objective_settings(train_cfg: dict[str, Any], objective: str) -> dict[str, Any]:
    """The training settings for ``objective``: the preset's common keys, then its section.

    A train preset holds keys common to every objective (epochs, batch_size, ema_decay, ...)
    and one section per objective (``adversarial:``, ``eps:``), so one preset serves every
    sampler; the sampler decides which section applies. Top-level keys of another objective
    are left out (that objective reads them); a key that no objective reads is a
    :class:`UserError` naming the closest known keys (:mod:`genbench.schema` checks the same
    before anything is built).
    """
    section = train_cfg.get(objective)
    if not isinstance(section, dict):
        have = [o for o in OBJECTIVES if isinstance(train_cfg.get(o), dict)]
        raise UserError(
            f"the sampler needs {objective} training but this train preset has no "
            f"'{objective}:' section (it has: {', '.join(have) or 'none'}); choose a train preset "
            f"with one, e.g. train=digits_cpu"
        )
    own = objective_fields()[objective]
    every = training_setting_names()
    common = {}
    for key, value in train_cfg.items():
        if key in OBJECTIVES or key == SEEDS:  # train.seeds: the harness's (harness.cell)
            continue
        if key not in every:  # a misspelt key is an error, never ignored
            raise unknown_key_error(f"train.{key}", key, sorted(every | set(OBJECTIVES)))
        if key in own:  # another objective's setting: that objective reads it
            common[key] = value
    for key in section:
        if key not in own:
            raise unknown_key_error(f"train.{objective}.{key}", key, sorted(own))
    return {**common, **section}


@dataclass
class Components:
    """Everything a cell is made of, built and shape-checked."""

    dataset: Any
    latent: Any
    sampler: Sampler
    image_shape: tuple[int, int, int]
    latent_shape: tuple[int, int, int]
    train: dict[str, Any]  # objective_settings() of the sampler's objective, with its options


def _declared_image_shape(cfg: dict[str, Any]) -> tuple[int, int, int] | None:
    """(C, H, W) from the dataset config alone, when it says so (built-in datasets do).

    None when the resolution is not given or is null (an image folder at its images' own size):
    the dataset is then made, which reads the folder's image headers, not its pixels."""
    data = cfg["dataset"]
    if data.get("resolution") is None:
        return None
    default_channels = 1 if data.get("name") == "digits" else 3
    resolution = int(data["resolution"])
    return int(data.get("channels", default_channels)), resolution, resolution


def build_components(cfg: dict[str, Any], *, load_data: bool = True) -> Components:
    """Build and shape-check a cell's components.

    ``load_data=False`` (``genbench profile``) takes the image shape from the dataset config
    and opens no files, so costs can be profiled on a machine without the data; an image folder
    at its native size (``dataset.resolution`` null) has its image headers read instead.
    """
    shape = None if load_data else _declared_image_shape(cfg)
    dataset = build_dataset(cfg) if shape is None else None
    latent = build_latent(cfg)
    sampler = build_sampler(cfg)
    train = {**objective_settings(cfg["train"], sampler.objective), **sampler.objective_options}
    image_shape = shape or (int(dataset.channels), int(dataset.resolution),
                            int(dataset.resolution))
    latent_shape = tuple(int(s) for s in latent.latent_shape(image_shape))
    return Components(dataset, latent, sampler, image_shape, latent_shape,  # type: ignore[arg-type]
                      train)
