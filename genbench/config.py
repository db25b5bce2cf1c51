"""Hydra at the edge: composition for the CLI and the grid; the harness gets plain dicts.

The config root is the repository's top-level ``registry/`` (one YAML per component preset,
one folder per kind, and ``hydra/sweeper/genbench.yaml``, genbench's grid sweeper);
``baselines/`` holds published experiment presets, selectable as ``baseline=NAME``. Both are
packaged into the wheel as ``genbench/_configs`` and ``genbench/_baselines`` so that a
non-editable install finds them; an editable install or a source checkout reads the top-level
folders. :func:`compose` builds one job's configuration (``genbench run``, ``profile``);
:func:`run_hydra` hands Hydra's own command line (``--multirun``, ``--cfg``) to ``hydra.main``.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from genbench.errors import UserError

_PACKAGE_DIR = Path(__file__).resolve().parent
BASELINE_GROUP = "baseline"
CONFIG_NAME = "config"  # registry/config.yaml
GROUPS = ("dataset", "latent", "backbone", "sampler", "train", "eval")


def _first_dir(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise UserError(f"genbench's config folder is missing (looked in {candidates[0]}); reinstall")


def config_root() -> Path:
    """Folder of the Hydra config tree (``registry/``)."""
    return _first_dir(_PACKAGE_DIR / "_configs", _PACKAGE_DIR.parent / "registry")


def baselines_root() -> Path:
    """Folder of the published baseline presets (``baselines/``)."""
    return _first_dir(_PACKAGE_DIR / "_baselines", _PACKAGE_DIR.parent / "baselines")


def baseline_names() -> list[str]:
    return sorted(p.stem for p in baselines_root().glob("*.yaml"))


def group_options(group: str) -> list[str]:
    """Preset names available for a config group (``backbone`` -> ncsnpp, ncsnpp_digits, ...)."""
    if group == BASELINE_GROUP:
        return baseline_names()
    return sorted(p.stem for p in (config_root() / group).glob("*.yaml"))


def selectable_options(group: str) -> list[str]:
    """YAML presets plus registered component names without a preset (see compose)."""
    options = set(group_options(group))
    if group in ("dataset", "latent", "backbone", "sampler"):
        from genbench import registry

        options |= set(registry.names(group))
    return sorted(options)


def _store_baselines() -> None:
    """Register every ``baselines/*.yaml`` as option of group ``baseline`` (global package)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name in baseline_names():
        node = OmegaConf.load(baselines_root() / f"{name}.yaml")
        store.store(group=BASELINE_GROUP, name=name, node=node, package="_global_")


def _factory_defaults(factory: Any) -> dict[str, Any]:
    """Keyword defaults of a factory that YAML can hold (shape arguments come from the harness)."""
    import inspect

    out: dict[str, Any] = {}
    for name, param in inspect.signature(factory).parameters.items():
        if name in ("in_channels", "resolution") or param.default is inspect.Parameter.empty:
            continue
        value = param.default
        if isinstance(value, tuple):
            value = list(value)
        if value is None or isinstance(value, (bool, int, float, str, list)):
            out[name] = value
    return out


def _store_registered_components() -> None:
    """Make every registered component selectable as ``group=name`` even without a YAML preset.

    A plugin's backbone ``my_net`` becomes ``backbone=my_net`` with its factory's defaults as
    keys (``backbone.width=64`` then overrides one); YAML presets of the same name win.
    """
    from hydra.core.config_store import ConfigStore

    from genbench import registry

    store = ConfigStore.instance()
    for kind in ("dataset", "latent", "backbone", "sampler"):
        presets = set(group_options(kind))
        for entry in registry.entries(kind):
            if entry.name not in presets:
                node = {"name": entry.name, **_factory_defaults(entry.factory)}
                store.store(group=kind, name=entry.name, node=node)


def register_configs() -> None:
    """Put the options that are not files of ``registry/`` into Hydra's ConfigStore.

    ``baseline=NAME`` (``baselines/``) and the registered components without a YAML preset;
    called before every composition, as plugins may have registered more components since.
    """
    _store_baselines()
    _store_registered_components()


# Hydra launchers that come in their own package: what to install for them (pyproject.toml's
# optional dependencies).
LAUNCHER_PACKAGES = {"joblib": ("hydra-joblib-launcher", "joblib"),
                     "submitit_local": ("hydra-submitit-launcher", "slurm"),
                     "submitit_slurm": ("hydra-submitit-launcher", "slurm")}


def _hydra_options(text: str, group: str) -> list[str]:
    """The options Hydra lists after ``Available options in 'GROUP':``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if f"Available options in '{group}'" in line:
            options = []
            for option in lines[i + 1:]:
                if not option.startswith(("\t", " ")):
                    break  # "Config search path:" follows
                options.append(option.strip())
            return options
    return []


def explain_launcher(value: str, error: str) -> UserError:
    """``hydra/launcher=VALUE`` that Hydra cannot find: the package to install for it."""
    if value in LAUNCHER_PACKAGES:
        package, extra = LAUNCHER_PACKAGES[value]
        return UserError(f"hydra/launcher={value} needs the {package} package, which is not "
                         f"installed: pip install -e \".[{extra}]\" in genbench's folder (or pip "
                         f"install {package})")
    known = _hydra_options(error, "hydra/launcher")
    extras = ", ".join(f"{name} (pip install -e \".[{extra}]\")"
                       for name, (_, extra) in LAUNCHER_PACKAGES.items() if name not in known)
    return UserError(f"unknown hydra/launcher {value!r}; installed: {', '.join(known) or 'basic'}"
                     + (f"; with their package: {extras}" if extras else ""))


def explain_compose_error(exc: Exception, overrides: list[str]) -> UserError:
    """Turn a Hydra composition error into one line with the closest valid names."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines else type(exc).__name__
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "hydra/launcher" and f"'hydra/launcher/{value}'" in str(exc):
            return explain_launcher(value, str(exc))
        if key in (*GROUPS, BASELINE_GROUP) and value and value not in selectable_options(key):
            options = selectable_options(key)
            close = difflib.get_close_matches(value, options, n=3, cutoff=0.4)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            return UserError(f"unknown {key} {value!r}; {hint}available: {', '.join(options)}")
    return UserError(f"bad configuration: {text}")


def choices(hydra_node: Any) -> dict[str, Any]:
    """The component presets a composed config selected (``hydra.runtime.choices`` without
    Hydra's own groups): recorded as ``presets``, they name the cell."""
    return {k: v for k, v in dict(hydra_node.runtime.choices).items()
            if not k.startswith("hydra")}


def compose(overrides: list[str] | None = None, *, with_hydra: bool = False) -> DictConfig:
    """Compose the primary config with Hydra overrides (``key=value``, ``group=option``).

    The result carries ``presets`` (:func:`choices`); ``with_hydra`` keeps Hydra's own node
    (launcher, sweeper, sweep folder) for the grid, which reads it.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides or [])
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_root()), version_base=None):
            cfg = hydra_compose(config_name=CONFIG_NAME, overrides=overrides,
                                return_hydra_config=True)
    except Exception as exc:  # hydra raises several kinds; all are bad input here
        raise explain_compose_error(exc, overrides) from None
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg["presets"] = choices(cfg.hydra)
        if not with_hydra:
            del cfg["hydra"]
    return cfg


def compose_baselines(folder: Path | None = None) -> dict[str, dict[str, Any] | UserError]:
    """Each experiment preset of ``folder`` (default: ``baselines/``) composed as
    ``baseline=NAME`` on the primary config, in one Hydra session: what it selects (``presets``,
    as :func:`compose` adds them) is Hydra's answer, not a second reading of its defaults list.
    Returned as plain containers (mandatory values left unset, such as ``dataset.root``, stay
    ``'???'``); a preset that does not compose maps to the :class:`UserError` that says why."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    folder = Path(folder) if folder is not None else baselines_root()
    store, composed = ConfigStore.instance(), {}
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_root()), version_base=None):
            for path in sorted(folder.glob("*.yaml")):
                override = f"{BASELINE_GROUP}={path.stem}"
                try:
                    store.store(group=BASELINE_GROUP, name=path.stem,
                                node=OmegaConf.load(path), package="_global_")
                    cfg = hydra_compose(config_name=CONFIG_NAME, overrides=[override],
                                        return_hydra_config=True)
                    with open_dict(cfg):
                        cfg["presets"] = choices(cfg.hydra)
                        del cfg["hydra"]
                    composed[path.stem] = OmegaConf.to_container(cfg, resolve=True,
                                                                 throw_on_missing=False)
                except Exception as exc:  # noqa: BLE001 - unreadable or not composable
                    composed[path.stem] = explain_compose_error(exc, [])  # Hydra's words
    finally:
        GlobalHydra.instance().clear()
        _store_baselines()  # presets of another folder do not stay selectable
    return composed


def run_hydra(task: Callable[[DictConfig], Any], argv: list[str]) -> None:
    """Run ``task`` through ``hydra.main`` on genbench's config, with Hydra's command line ``argv``.

    Exactly what a ``@hydra.main`` script does when started with these arguments
    (``--multirun key=a,b``, ``--cfg job``, ``hydra/launcher=joblib``...): the configured
    sweeper and launcher run the task once per job. ``hydra.main`` reads ``sys.argv``, so it is
    set for the call and restored after it.
    """
    import hydra

    register_configs()
    main = hydra.main(config_path=str(config_root()), config_name=CONFIG_NAME,
                      version_base=None)(task)
    saved = sys.argv
    sys.argv = [saved[0] if saved else "genbench", *argv]
    try:
        main()
    finally:
        sys.argv = saved


def compose_plain(overrides: list[str] | None = None) -> dict[str, Any]:
    """The plain configuration of one cell: :func:`compose` then :func:`to_plain` (what the
    harness, the tests and the benchmarks take)."""
    return to_plain(compose(overrides))


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """Resolve interpolations and return plain Python containers."""
    from omegaconf.errors import MissingMandatoryValue

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore
    except MissingMandatoryValue as exc:
        key = getattr(exc, "full_key", None) or str(exc)
        raise UserError(f"{key} is required: pass {key}=VALUE on the command line") from None
    except Exception as exc:
        raise UserError(f"bad configuration: {str(exc).splitlines()[0]}") from None
