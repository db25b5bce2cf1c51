"""The typed schema of a composed configuration, checked before anything is built or trained.

A cell's configuration is plain containers (:func:`genbench.config.to_plain`); :func:`validate`
checks all of it against:

* :class:`TopLevel` and :class:`EvalSettings` here (types from their annotations, ranges and
  choices from each field's ``metadata``);
* the training settings of every objective: the fields of
  :class:`~genbench.training.adversarial.AdversarialConfig` and
  :class:`~genbench.training.eps.EpsConfig` (a ``train`` preset holds the keys common to every
  objective and one section per objective, so its top level is checked against the union of the
  sections' settings) with the ranges of :data:`TRAIN_RANGES`;
* the signatures of the registered factories for component sections (``dataset``, ``latent``,
  ``backbone``, ``sampler`` and ``train.adversarial.discriminator``): every key must be an
  argument of the factory, of the type its annotation says.

Every problem is a :class:`~genbench.errors.UserError` of one line naming the key; an unknown key
names the closest known ones (:func:`difflib.get_close_matches`), as Hydra's own hint for a
misspelt ``+key=`` would not. Where the results are written is checked too (a file in place of
the folder, a folder that cannot be written), without writing anything.
"""

from __future__ import annotations

import inspect
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from genbench.errors import UserError, unknown_key_error

# --------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Range:
    """Allowed values of a number (bounds inclusive unless ``open_low``) or a string."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False  # low < value rather than low <= value
    open_high: bool = False
    choices: tuple[Any, ...] = ()
    pattern: tuple[str, str] | None = None  # (regular expression a string must match, its name)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of range (None when it is in range)."""
        if self.choices and value not in self.choices:
            return f"use one of {', '.join(map(str, self.choices))}"
        if self.pattern and isinstance(value, str) and not re.fullmatch(self.pattern[0], value):
            return f"must be {self.pattern[1]}"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return f"must be {'>' if self.open_low else '>='} {_number(self.low)}"
        if self.high is not None and (value >= self.high if self.open_high else value > self.high):
            return f"must be {'<' if self.open_high else '<='} {_number(self.high)}"
        return None


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


AT_LEAST_1 = Range(low=1)
AT_LEAST_0 = Range(low=0)
POSITIVE = Range(low=0, open_low=True)
FRACTION = Range(low=0, high=1)  # decays
BETA = Range(low=0, high=1, open_high=True)  # Adam betas
SHA256 = Range(pattern=(r"[0-9a-fA-F]{64}", "a full SHA-256 (64 hex digits)"))


def _range(r: Range) -> dict[str, Range]:
    return {"range": r}


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class TopLevel:
    """The top level of ``registry/config.yaml`` (component sections are checked apart)."""

    experiment: str | int = "default"  # a plain name (YAML may read 2024 as a number)
    cell: str | int | None = None
    results_dir: str = "results"
    cache_dir: str | None = None
    device: str = "auto"
    seed: int = field(default=0, metadata=_range(AT_LEAST_0))
    progress: bool = True
    checkpoint: str | None = None
    report: bool = True
    presets: dict = field(default_factory=dict)  # what Hydra selected (config.choices)
    paper: dict = field(default_factory=dict)  # a baseline's published numbers (baselines/)


@dataclass(frozen=True)
class EvalSettings:
    """The ``eval`` section (registry/eval/*.yaml)."""

    num_samples: int = field(default=50000, metadata=_range(AT_LEAST_1))
    batch_size: int = field(default=100, metadata=_range(AT_LEAST_1))
    seed: int = field(default=42, metadata=_range(AT_LEAST_0))
    # sampling noise: per_sample (sample i from its own stream (seed, i)) or official (the
    # official DDGAN/WaveDiff/LDDGAN test scripts' one stream; genbench.samplers.noise)
    rng: str = field(default="per_sample", metadata=_range(
        Range(choices=("per_sample", "official"))))
    feature_extractor: str = field(default="auto", metadata=_range(
        Range(choices=("auto", "inception", "classifier"))))
    # the Inception's resize to 299: torch-fidelity's TF1.x bilinear, or clean-fid's "clean"
    resize: str = field(default="tf1", metadata=_range(Range(choices=("tf1", "clean"))))
    inception_weights: str | None = None
    vgg16_weights: str | None = None
    # a full SHA-256 to require instead of the official file's
    inception_sha256: str | None = field(default=None, metadata=_range(SHA256))
    vgg16_sha256: str | None = field(default=None, metadata=_range(SHA256))
    allow_download: bool = False
    num_real: int | None = field(default=None, metadata=_range(AT_LEAST_1))
    pr_k: int = field(default=3, metadata=_range(AT_LEAST_1))
    metrics: list[str] = field(default_factory=list)  # registered metric names
    # FID uncertainty (genbench.metrics.quality): half-samples for the 95% interval (0: off,
    # else >= CI_MIN_RESAMPLES) and subset sizes for FID-infinity (0: off, else >= 2)
    fid_ci_resamples: int = field(default=200, metadata=_range(AT_LEAST_0))
    fid_infinity_points: int = field(default=15, metadata=_range(AT_LEAST_0))
    time_batch_size: int = field(default=100, metadata=_range(AT_LEAST_1))
    time_warmup: int = field(default=10, metadata=_range(AT_LEAST_0))
    time_trials: int = field(default=300, metadata=_range(AT_LEAST_1))
    # the sampling fast path (genbench.harness.fastpath): autocast dtype of the networks,
    # torch.compile (mode reduce-overhead: CUDA graphs on a GPU), channels-last layout; a cell
    # with any of them also records fid_fp32 and fid_delta_fp32 (the same seeds in fp32)
    precision: str = field(default="fp32", metadata=_range(
        Range(choices=("fp32", "bf16", "fp16"))))
    compile: bool = False
    compile_mode: str = field(default="reduce-overhead", metadata=_range(
        Range(choices=("reduce-overhead", "default", "max-autotune",
                       "max-autotune-no-cudagraphs"))))
    channels_last: bool = False
    grid_size: int = field(default=10, metadata=_range(AT_LEAST_1))


# Ranges of the training settings (types come from the trainers' config dataclasses).
TRAIN_RANGES: dict[str, Range] = {
    "epochs": AT_LEAST_1, "batch_size": AT_LEAST_1, "ckpt_every": AT_LEAST_1,
    "lr": POSITIVE, "lr_g": POSITIVE, "lr_d": POSITIVE, "lr_min": AT_LEAST_0,
    "beta1": BETA, "beta2": BETA, "ema_decay": FRACTION, "r1_gamma": AT_LEAST_0,
    "lazy_reg": AT_LEAST_1, "wl_delta": POSITIVE, "weight_decay": AT_LEAST_0,
    "warmup": AT_LEAST_0, "grad_clip": AT_LEAST_0,
    "rec_loss": Range(choices=("none", "l1", "weighted")),
    "optimizer": Range(choices=("adam", "adamw")),
    "precision": Range(choices=("fp32", "bf16", "fp16")),  # genbench.precision
}
OBJECTIVE_SECTIONS = ("adversarial", "eps")
# ``train.seeds``: how many models a cell trains (seeds seed, seed+1, ...); the harness reads it,
# no trainer does, so it is not a training setting and not in any model's cache key.
SEEDS = "seeds"
DISCRIMINATOR = "discriminator"  # a sub-section of the adversarial settings
COMPONENT_SECTIONS = ("dataset", "latent", "backbone", "sampler")
# Factory arguments the harness passes itself (shapes, the denoiser's output): not config keys.
_HARNESS_ARGUMENTS = {"backbone": ("in_channels", "resolution"),
                      "discriminator": ("in_channels",)}


def objective_fields() -> dict[str, dict[str, str]]:
    """Per objective, its settings' names and type annotations (the trainers' dataclasses)."""
    from genbench.training.adversarial import AdversarialConfig
    from genbench.training.eps import EpsConfig

    out = {}
    for objective, cls in (("adversarial", AdversarialConfig), ("eps", EpsConfig)):
        out[objective] = {f.name: _annotation(f.type) for f in fields(cls) if f.name != "seed"}
    out["adversarial"][DISCRIMINATOR] = "dict"
    return out


def training_setting_names() -> set[str]:
    """Every training setting some objective reads (what a ``train`` preset's top level holds)."""
    return set().union(*objective_fields().values())


# --------------------------------------------------------------------------- types


def _annotation(annotation: Any) -> str:
    """An annotation as the text it is written as (``from __future__ import annotations``)."""
    if isinstance(annotation, str):
        return annotation
    if annotation is inspect.Parameter.empty:
        return "Any"
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation).replace("typing.", "")
    match = re.fullmatch(r"Optional\[(.*)\]", text)
    return f"{match.group(1)} | None" if match else text


def _split_union(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return [p for p in parts if p]


_SEQUENCES = ("list", "List", "Sequence", "tuple", "Tuple", "Iterable")
_PLURALS = {"int": "integers", "float": "numbers", "bool": "true/false values", "str": "strings"}
_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
          "None": "null", "dict": "a mapping of keys", "list": "a list"}


def _matches(value: Any, annotation: str) -> bool | None:
    """Whether ``value`` is of the annotated type (None: the annotation is not understood)."""
    known = False
    for alt in _split_union(annotation):
        outer, _, inner = alt.partition("[")
        outer = outer.strip()
        if outer in ("Any", "object"):
            return True
        if outer == "None" and value is None:
            return True
        if outer == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if outer == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if outer == "bool" and isinstance(value, bool):
            return True
        if outer == "str" and isinstance(value, str):
            return True
        if outer in ("dict", "Mapping") and isinstance(value, dict):
            return True
        if outer in _SEQUENCES:
            item = inner.rstrip("]").split(",")[0].strip() if inner else "Any"
            if isinstance(value, (list, tuple)) and all(_matches(v, item) is not False
                                                        for v in value):
                return True
        known = known or outer in (*_NAMES, "Mapping", *_SEQUENCES)
    return False if known else None


def _describe(annotation: str) -> str:
    words = []
    for alt in _split_union(annotation):
        outer, _, inner = alt.partition("[")
        outer = outer.strip()
        if outer in _SEQUENCES:
            item = inner.rstrip("]").split(",")[0].strip()
            words.append(f"a list of {_PLURALS.get(item, item)}" if item else "a list")
        else:
            words.append(_NAMES.get(outer, outer))
    return " or ".join(words)


def check_value(key: str, value: Any, annotation: str, allowed: Range | None = None) -> None:
    """One setting: its type, then its range; a one-line :class:`UserError` naming ``key``."""
    if _matches(value, annotation) is False:
        raise UserError(f"{key} must be {_describe(annotation)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{key}={value!r} is not a finite number")
    problem = allowed.problem(value) if allowed is not None and value is not None else None
    if problem:
        raise UserError(f"{key}={value!r}: {problem}")


unknown_key = unknown_key_error  # the error for a key nothing reads, with the closest ones


def _check_section(prefix: str, section: Mapping[str, Any], types: Mapping[str, str],
                   ranges: Mapping[str, Range], *, known: Iterable[str] | None = None) -> None:
    known = set(types if known is None else known)
    for key, value in section.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in known:
            raise unknown_key(full, key, known)
        if key in types:
            check_value(full, value, types[key], ranges.get(key))


def _dataclass_types(cls: type) -> tuple[dict[str, str], dict[str, Range]]:
    types = {f.name: _annotation(f.type) for f in fields(cls)}
    ranges = {f.name: f.metadata["range"] for f in fields(cls) if "range" in f.metadata}
    return types, ranges


# --------------------------------------------------------------------------- components


def check_component(kind: str, prefix: str, section: Any, *, name_key: str = "name") -> None:
    """A component section: a registered ``name`` and arguments its factory takes, typed."""
    from genbench import registry

    if not isinstance(section, dict):
        raise UserError(f"{prefix} must be a section of keys (with {name_key}: ...), "
                        f"not {section!r}")
    name = section.get(name_key)
    if not isinstance(name, str):
        raise UserError(f"{prefix}.{name_key} must name a registered {kind}; "
                        f"registered: {', '.join(registry.names(kind))}")
    entry = registry.get(kind, name)
    params = inspect.signature(entry.factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    harness = _HARNESS_ARGUMENTS.get(kind, ())
    arguments = {n: p for n, p in params.items()
                 if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
                 and n != "self"}
    for key, value in section.items():
        if key == name_key or (kind == "backbone" and key == "output"):
            continue  # the sampler decides a backbone's output (harness.build.build_backbone)
        full = f"{prefix}.{key}"
        if key in harness:
            raise UserError(f"{full} is set by genbench from the data and latent shapes; "
                            f"remove it from the configuration")
        if key not in arguments:
            if takes_any:
                continue  # a factory with **kwargs checks its own keys when it is built
            known = [n for n in arguments if n not in harness]
            raise unknown_key(full, key, known)
        check_value(full, value, _annotation(arguments[key].annotation))


# --------------------------------------------------------------------------- train / eval


def check_train(train: Any) -> None:
    """The ``train`` section: its top level against every objective's settings, each objective
    section against its own, the discriminator against its factory; ``train.seeds`` (default 1)
    is an integer >= 1."""
    if not isinstance(train, dict):
        raise UserError(f"train must be a section of training settings, not {train!r}")
    per_objective = objective_fields()
    types: dict[str, str] = {}
    for objective_types in per_objective.values():
        for key, annotation in objective_types.items():
            types.setdefault(key, annotation)
    for key, value in train.items():
        if key in OBJECTIVE_SECTIONS:
            if not isinstance(value, dict):
                raise UserError(f"train.{key} must be a section of {key} settings, not {value!r}")
            _check_section(f"train.{key}", {k: v for k, v in value.items()
                                            if k != DISCRIMINATOR},
                           per_objective[key], TRAIN_RANGES)
            if DISCRIMINATOR in value:
                if key != "adversarial":
                    raise unknown_key(f"train.{key}.{DISCRIMINATOR}", DISCRIMINATOR,
                                      per_objective[key])
                _check_discriminator(f"train.{key}.{DISCRIMINATOR}", value[DISCRIMINATOR])
        elif key == DISCRIMINATOR:
            _check_discriminator(f"train.{DISCRIMINATOR}", value)
        elif key == SEEDS:
            check_value(f"train.{SEEDS}", value, "int", AT_LEAST_1)
        elif key not in types:
            raise unknown_key(f"train.{key}", key,
                              [*sorted(types), SEEDS, *OBJECTIVE_SECTIONS])
        else:
            check_value(f"train.{key}", value, types[key], TRAIN_RANGES.get(key))
    _check_budgets(train)


def _check_budgets(train: dict[str, Any]) -> None:
    """``train.budget`` (and an objective section's): ``KIND:AMOUNT``, a known kind and an amount
    > 0 (:func:`genbench.training.budget.parse_budget`), before anything is trained."""
    from genbench.training.budget import parse_budget

    parse_budget(train.get("budget"), "train.budget")
    for objective in OBJECTIVE_SECTIONS:
        section = train.get(objective)
        if isinstance(section, dict):
            parse_budget(section.get("budget"), f"train.{objective}.budget")


def _check_discriminator(prefix: str, section: Any) -> None:
    if isinstance(section, dict) and "kind" not in section:
        section = {**section, "kind": "small"}  # harness.train's default
    check_component("discriminator", prefix, section, name_key="kind")


def check_eval(section: Any) -> None:
    """The ``eval`` section: :class:`EvalSettings`, metrics that are registered."""
    from genbench import registry

    if not isinstance(section, dict):
        raise UserError(f"eval must be a section of evaluation settings, not {section!r}")
    types, ranges = _dataclass_types(EvalSettings)
    _check_section("eval", section, types, ranges)
    for name in section.get("metrics") or []:
        registry.get("metric", name)  # unknown names: the closest registered ones
    _check_off_or_at_least(section, "fid_ci_resamples", _ci_min_resamples(),
                           "half-samples: a 95% interval's 2.5th and 97.5th percentiles of "
                           "fewer values are the extremes")
    _check_off_or_at_least(section, "fid_infinity_points", 2, "subset sizes: a line needs two")


def _ci_min_resamples() -> int:
    from genbench.metrics.quality import CI_MIN_RESAMPLES

    return CI_MIN_RESAMPLES


def _check_off_or_at_least(section: Mapping[str, Any], key: str, low: int, what: str) -> None:
    """``eval.<key>``: 0 (off) or at least ``low`` (the type and >= 0 are checked already)."""
    value = section.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < low:
        raise UserError(f"eval.{key}={value}: use 0 (off) or at least {low} {what}")


# --------------------------------------------------------------------------- paths


def check_writable_folder(key: str, value: Any) -> None:
    """A folder genbench will write into: not a file, and (where it exists, or the nearest
    folder above it) writable. Nothing is created."""
    if value in (None, ""):
        return
    path = Path(str(value)).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{key}={value} is a file, not a folder; pass {key}=FOLDER")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{key}={value}: {probe} is a file, not a folder; pass {key}=FOLDER")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{key}={value}: the folder {probe} cannot be written (read-only or no "
                        f"permission); pass {key}=FOLDER that you can write to")


# --------------------------------------------------------------------------- all


def validate(cfg: Mapping[str, Any]) -> None:
    """Check a cell's whole plain configuration; the first problem raises a one-line
    :class:`UserError`. Builds, trains and writes nothing."""
    types, ranges = _dataclass_types(TopLevel)
    known = [*types, *COMPONENT_SECTIONS, "train", "eval"]
    top = {k: v for k, v in cfg.items() if k not in (*COMPONENT_SECTIONS, "train", "eval")}
    _check_section("", top, types, ranges, known=known)
    for section in (*COMPONENT_SECTIONS, "train", "eval"):
        if section not in cfg:
            raise UserError(f"the configuration has no {section!r} section")
    for kind in COMPONENT_SECTIONS:
        check_component(kind, kind, cfg[kind])
    check_train(cfg["train"])
    check_eval(cfg["eval"])
    check_writable_folder("results_dir", cfg.get("results_dir") or "results")
    check_writable_folder("cache_dir", cfg.get("cache_dir"))
