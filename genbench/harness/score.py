"""Score any images: ``genbench eval SAMPLES [REFERENCE] [overrides] [--json]``.

What torch-fidelity's ``fidelity --input1 A --input2 B`` and clean-fid's ``compute_fid(A, B)``
do, inside genbench's evaluation: the metrics of ``eval.metrics``, with the extractors
:func:`~genbench.harness.evaluate.choose_extractors` picks, computed by
:func:`~genbench.harness.evaluate.measure_quality` (reference statistics cached by
:class:`~genbench.metrics.quality.ReferenceStatsCache`), recorded by the cell writer
(:func:`genbench.harness.record.write_cell`) as ``<results>/<experiment>/<cell>/result.json``
with ``"kind": "eval"``, so ``genbench report`` draws it beside generated cells.

Each side is one of

* a **folder** of images (png, jpg, jpeg, webp, bmp; recursive, sorted), read by the
  ``image_folder`` dataset: center-cropped to a square and PIL-bicubic resized (clean-fid's
  rule), 16-bit grey scaled to 8 bits; class subfolders give labels;
* an **.npz** of uint8 images, read with ``numpy.load(allow_pickle=False)``: the array
  ``arr_0`` (the layout of ADM's ``image_sample.py``, openai/guided-diffusion, and of its
  evaluator's reference batches), or the only array of the file; ``[N, H, W, C]`` (ADM),
  ``[N, C, H, W]`` when the last axis is not 1 or 3, or ``[N, H, W]`` (grey); C is 1 or 3 and
  the images square;
* a **dataset preset**, ``dataset=NAME`` (``dataset=cifar10``): the images of the preset's
  configured split, with the ``dataset.*`` overrides of the command line.

REFERENCE defaults to the configured dataset (``dataset=`` among the overrides, else the
default preset). The shape both sides are compared at comes from the side that has a fixed one
(an .npz or a dataset; the reference when both do, and then they must agree); a folder is read at
that shape. When both sides are folders, the reference's first image (sorted order) sets it: its
shorter edge and whether it is grey. Every image of SAMPLES is scored (``eval.num_samples`` is
the count a generated cell draws); ``eval.num_real`` limits the reference to its first images,
as for a cell.

The record holds no training or cost: those metrics are None with the reason
``"scored images: no generator"``. ``inputs`` records each side: what it is, where it is, a
summary of its files, and the SHA-256 of the uint8 images as scored
(:func:`genbench._io.tensor_fingerprint`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from genbench import _io
from genbench.data.base import ImageDataset, InMemoryImageDataset, all_images
from genbench.errors import MissingWeightsError, UserError, notice, short_reason
from genbench.harness import record as rec

KIND = "eval"
NO_GENERATOR = "scored images: no generator"
QUALITY_KEYS = ("fid", "fid_ci", "fid_infinity", "fid_at_n", "precision", "recall")
FOLDER, NPZ, DATASET = "folder", "npz", "dataset"
SAMPLES, REFERENCE = "SAMPLES", "REFERENCE"
# Top-level keys a `genbench eval` override may set (the others configure a generator).
EVAL_OVERRIDE_KEYS = ("dataset", "eval", "experiment", "cell", "results_dir", "cache_dir",
                      "device", "progress", "report")
_PRESET = re.compile(r"^dataset=([^=.\s][^=\s]*)$")
_NPZ_KEY = "arr_0"


# --------------------------------------------------------------------------- the command line


@dataclass(frozen=True)
class EvalArguments:
    """``genbench eval``'s words sorted out: the two sides as given, and the overrides."""

    samples: str
    reference: str | None
    overrides: list[str]


def _is_preset(word: str) -> bool:
    return bool(_PRESET.match(word)) and not Path(word).expanduser().exists()


def parse_arguments(words: list[str]) -> EvalArguments:
    """SAMPLES is the first word; REFERENCE the next one that is not an override (no ``=``), or
    a ``dataset=NAME`` (which is then also the configured dataset); the rest are overrides.
    A ``dataset=NAME`` given as SAMPLES is the samples' preset only."""
    if not words:
        raise UserError("genbench eval needs SAMPLES: a folder of images, an .npz of uint8 "
                        "images or dataset=NAME")
    samples, rest = words[0], list(words[1:])
    paths = [w for w in rest if "=" not in w]
    if len(paths) > 1:
        raise UserError(f"genbench eval takes SAMPLES and one REFERENCE; got also "
                        f"{', '.join(paths[1:])} (overrides are key=value)")
    reference = paths[0] if paths else None
    overrides = [w for w in rest if "=" in w]
    presets = [w for w in overrides if _is_preset(w)]
    if reference is None:
        reference = presets[-1] if presets else None
    elif presets:
        raise UserError(f"{REFERENCE} is {reference}; {presets[-1]} would be a second one: "
                        f"pass one of the two")
    for word in overrides:
        key = word.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("@", 1)[0]
        if key not in EVAL_OVERRIDE_KEYS:
            raise UserError(f"{word}: genbench eval scores given images, it has no generator "
                            f"to configure; it takes overrides of "
                            f"{', '.join(EVAL_OVERRIDE_KEYS)}")
    return EvalArguments(samples, reference, overrides)


# --------------------------------------------------------------------------- the two sides


@dataclass
class Side:
    """One side of the comparison, as given and as read."""

    role: str  # SAMPLES or REFERENCE
    kind: str  # FOLDER, NPZ or DATASET
    given: str
    label: str = ""  # short name for the cell name and the report
    path: Path | None = None
    preset: str | None = None
    dataset_cfg: dict[str, Any] | None = None
    dataset: ImageDataset | None = None  # a dataset side, or a folder once its shape is known
    images: torch.Tensor | None = None  # uint8 [N, C, H, W]: an .npz at once, others when read
    shape: tuple[int, int] | None = None  # (channels, side) when fixed by the input itself
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.role} {self.given}"


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+@,-]+", "_", text).strip("._-")[:40] or "images"


def open_side(role: str, given: str, dataset_cfg: dict[str, Any] | None = None,
              preset: str | None = None) -> Side:
    """A side from its word: ``dataset=NAME`` (``dataset_cfg`` is the composed section), an
    existing folder, or an existing ``.npz`` file (read at once)."""
    if _is_preset(given):
        if dataset_cfg is None:
            raise UserError(f"{role} {given}: the dataset preset was not composed")
        side = Side(role, DATASET, given, label=_label(preset or str(dataset_cfg["name"])),
                    preset=preset, dataset_cfg=dataset_cfg)
        side.dataset = _build_dataset(side)
        side.shape = (int(side.dataset.channels), int(side.dataset.resolution))
        return side
    path = Path(given).expanduser()
    if not path.exists():
        raise UserError(f"{role} {given}: no such file or folder; pass a folder of images, an "
                        f".npz of uint8 images or dataset=NAME")
    path = path.resolve()
    if path.is_dir():
        from genbench.data.datasets import folder_image_shape

        try:
            count, side_px, channels = folder_image_shape(path)
        except UserError as exc:
            raise UserError(f"{role} {given}: {exc}") from None
        side = Side(role, FOLDER, given, label=_label(path.name), path=path)
        side.info = {"files": count, "first_image": {"side": side_px, "channels": channels}}
        return side
    if path.suffix.lower() != ".npz":
        raise UserError(f"{role} {given} is a file but not an .npz; pass a folder of images, an "
                        f".npz of uint8 images (np.savez(path, images)) or dataset=NAME")
    images, layout, key = load_npz(path, role)
    side = Side(role, NPZ, given, label=_label(path.stem), path=path, images=images,
                shape=(int(images.shape[1]), int(images.shape[2])))
    side.info = {"file_sha256": _io.sha256_file(path), "array": key, "layout": layout}
    return side


def _build_dataset(side: Side) -> ImageDataset:
    from genbench.harness.build import build_dataset

    try:
        return build_dataset({"dataset": side.dataset_cfg})
    except UserError as exc:
        raise UserError(f"{side.describe()}: {exc}") from None


def load_npz(path: Path, role: str) -> tuple[torch.Tensor, str, str]:
    """uint8 images ``[N, C, H, W]``, the layout they were stored in and the array's name, from
    an .npz read with ``allow_pickle=False`` (see the module docstring for the layouts)."""
    where = f"{role} {path}"
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - zip, format and pickle refusals come in many types
        raise UserError(f"{where} cannot be read as an .npz of uint8 images "
                        f"({short_reason(exc)})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise UserError(f"{where} is a single .npy array, not an .npz archive; save the images "
                        f"with np.savez(path, images)")
    try:
        with loaded as data:
            names = list(data.files)
            key = _NPZ_KEY if _NPZ_KEY in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise UserError(f"{where} has no array {_NPZ_KEY!r} (the ADM layout) and not "
                                f"exactly one array ({', '.join(names) or 'none'}); save the "
                                f"images with np.savez(path, images)")
            array = data[key]
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip, format and pickle refusals come in many types
        raise UserError(f"{where} cannot be read as an .npz of uint8 images "
                        f"({short_reason(exc)})") from None
    if array.dtype != np.uint8:
        raise UserError(f"{where}: array {key!r} holds {array.dtype} values, not uint8 images; "
                        f"save images as uint8 0..255")
    if array.ndim == 3:
        array, layout = array[:, None], "NHW"
    elif array.ndim == 4 and array.shape[3] in (1, 3):
        array, layout = array.transpose(0, 3, 1, 2), "NHWC"
    elif array.ndim == 4 and array.shape[1] in (1, 3):
        layout = "NCHW"
    else:
        raise UserError(f"{where}: array {key!r} has shape {tuple(array.shape)}; expected uint8 "
                        f"images [N, H, W, C] (ADM), [N, C, H, W] or [N, H, W], C = 1 or 3")
    if array.shape[2] != array.shape[3]:
        raise UserError(f"{where}: images are {array.shape[2]}x{array.shape[3]}; genbench "
                        f"compares square images: center-crop them first")
    return torch.from_numpy(np.ascontiguousarray(array)), layout, key


def _shape_text(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}x{shape[1]}"


def common_shape(samples: Side, reference: Side) -> tuple[int, int]:
    """``(channels, side)`` both sides are compared at (the rule of the module docstring)."""
    fixed = [s for s in (reference, samples) if s.shape is not None]
    if len(fixed) == 2 and samples.shape != reference.shape:
        raise UserError(
            f"{SAMPLES} are {_shape_text(samples.shape)} images ({samples.given}), {REFERENCE} "
            f"{_shape_text(reference.shape)} ({reference.given}); an .npz or a dataset side "
            f"must match the other (a folder is read at the other side's shape; "
            f"dataset.resolution= and dataset.channels= change a dataset's)")
    if fixed:
        return fixed[0].shape  # type: ignore[return-value]
    first = reference.info["first_image"]
    return int(first["channels"]), int(first["side"])


def read_side(side: Side, shape: tuple[int, int], limit: int | None = None) -> None:
    """Read ``side``'s uint8 images (the first ``limit``) at ``shape`` and record what they
    are in ``side.info`` (with the SHA-256 of the images as scored)."""
    channels, resolution = shape
    if side.kind == FOLDER:
        from genbench.data.datasets import image_folder

        side.dataset = image_folder(root=str(side.path), resolution=resolution, split="all",
                                    channels=channels)
        files = side.dataset.files
        listing = [[p.relative_to(side.path).as_posix(), p.stat().st_size] for p in files]
        side.info |= {"listing_sha256": _io.json_hash(listing, 64),
                      "first_file": listing[0][0], "last_file": listing[-1][0],
                      "classes": side.dataset.num_classes,
                      "read": f"image_folder: center square, PIL bicubic to {resolution}x"
                              f"{resolution}, {'grey' if channels == 1 else 'RGB'}"}
    if side.kind == NPZ:
        side.images = side.images[:limit] if limit is not None else side.images
    else:
        side.images = all_images(side.dataset, limit=limit)[0]
    side.info["images"] = _io.tensor_fingerprint(side.images)
    side.info["count"] = int(side.images.shape[0])
    if side.images.shape[0] < 2:
        raise UserError(f"{side.describe()} holds {side.images.shape[0]} image(s); the metrics "
                        f"need at least 2 (FID is stable only with thousands)")


class _Preloaded(InMemoryImageDataset):
    """The reference images as read, keeping the identity of their source (the key of the
    cached reference statistics)."""

    def __init__(self, images: torch.Tensor, source: ImageDataset | None,
                 identity: dict[str, Any], name: str) -> None:
        super().__init__(images, torch.full((images.shape[0],), -1, dtype=torch.int64),
                         name=name, split="all", num_classes=None)
        self._identity = identity
        self.source = source

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)


def reference_dataset(side: Side) -> tuple[_Preloaded, ImageDataset]:
    """(the reference images as read, for the metrics; the dataset the fallback classifier
    trains on: the whole labelled source). A dataset preset keeps its own identity, so its
    reference statistics are shared with generated cells on it; a folder's and an .npz's
    identity adds the SHA-256 of their images."""
    images = side.images
    assert images is not None
    if side.kind == DATASET:
        source = side.dataset
        return _Preloaded(images, source, source.identity(), source.name), source
    content = side.info["images"]["sha256"]
    if side.kind == FOLDER:
        source = side.dataset
        identity = {**source.identity(), "content_sha256": content}
        return _Preloaded(images, source, identity, source.name), source
    identity = {"name": "npz", "split": "all", "resolution": int(images.shape[-1]),
                "channels": int(images.shape[1]), "size": int(images.shape[0]),
                "file": str(side.path), "content_sha256": content}
    preloaded = _Preloaded(images, None, identity, "npz")
    return preloaded, preloaded


@dataclass
class _Components:
    """What :func:`~genbench.harness.evaluate.choose_extractors` and
    :func:`~genbench.harness.evaluate.measure_quality` read of a cell's components."""

    dataset: ImageDataset


# --------------------------------------------------------------------------- scoring


def eval_cell_name(cfg: dict[str, Any], samples: Side, reference: Side) -> str:
    """``cell`` when set, else ``eval-<samples>-vs-<reference>-<hash>``, the hash covering the
    images of both sides as scored and the ``eval`` settings."""
    if cfg.get("cell") not in (None, ""):
        return rec.check_name(cfg["cell"], "cell")
    digest = _io.json_hash({"samples": samples.info["images"],
                            "reference": reference.info["images"], "eval": cfg["eval"]}, 8)
    return rec.check_name(f"eval-{samples.label}-vs-{reference.label}-{digest}", "cell")


def _side_record(side: Side) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": side.kind, "given": side.given}
    if side.path is not None:
        out["path"] = str(side.path)
    if side.kind == DATASET:
        out |= {"preset": side.preset, "dataset": side.dataset_cfg,
                "identity": side.dataset.identity()}
    return out | side.info


def _reference_config(reference: Side) -> dict[str, Any]:
    """The record's ``dataset`` section: the reference as a dataset configuration."""
    images = reference.images
    assert images is not None
    if reference.kind == DATASET:
        return dict(reference.dataset_cfg or {})
    if reference.kind == FOLDER:
        return {"name": "image_folder", "root": str(reference.path),
                "resolution": int(images.shape[-1]), "split": "all",
                "channels": int(images.shape[1])}
    return {"name": "npz", "path": str(reference.path), "resolution": int(images.shape[-1]),
            "channels": int(images.shape[1])}


def _extractors(cfg: dict[str, Any], source: ImageDataset, reference: Side, cache_dir: Path,
                device: torch.device, progress: bool):
    from genbench.harness.evaluate import choose_extractors

    try:
        chosen = choose_extractors(cfg["eval"], _Components(source), cache_dir, device, progress)
    except MissingWeightsError:
        choice = cfg["eval"].get("feature_extractor", "auto")
        if getattr(source, "num_classes", None) or choice == "inception":
            raise  # the weights' own message: which file, where to put it
        which = ("the feature classifier (eval.feature_extractor=classifier)"
                 if choice == "classifier" else
                 "the fallback feature classifier (no Inception/VGG16 weights were found)")
        raise MissingWeightsError(
            f"{which} trains on the reference's labels, which {REFERENCE} {reference.given} "
            f"does not have (a folder has labels when every image is in one of its class "
            f"subfolders); pass eval.inception_weights=PATH (and eval.vgg16_weights=PATH for "
            f"precision/recall) with eval.feature_extractor=auto, or score against a labelled "
            f"reference (dataset=NAME, or a folder with one subfolder per class)") from None
    for note in chosen[1]:
        notice(f"{note} (trained on the reference's labels; its numbers compare only with "
               f"numbers from the same extractor)")
    return chosen


def score_images(cfg: dict[str, Any], samples: Side, reference: Side, *,
                 overwrite: bool = False) -> tuple[dict[str, Any], Path, bool]:
    """Score ``samples`` against ``reference`` with the evaluation settings of ``cfg`` (a
    composed configuration, checked by :func:`genbench.schema.validate`) and write the record.

    Returns ``(record, cell folder, skipped)``: an existing ok record of the same images and
    settings is returned as it is (``skipped``) unless ``overwrite``. Bad input raises
    :class:`~genbench.errors.UserError` before anything is written.
    """
    from genbench.harness.cell import paths
    from genbench.harness.evaluate import Measurements, measure_quality
    from genbench.harness.generate import sample_grid_png
    from genbench.harness.system import hardware, package_versions, resolve_device

    started = time.perf_counter()
    shape = common_shape(samples, reference)
    limit = cfg["eval"].get("num_real")
    read_side(samples, shape)
    read_side(reference, shape, None if limit is None else int(limit))
    cell = eval_cell_name(cfg, samples, reference)
    experiment_dir, cell_dir, cache_dir = paths({**cfg, "cell": cell})
    _io.remove_stale_temporaries(experiment_dir)
    _io.remove_stale_temporaries_below(cache_dir)
    if rec.is_done(cell_dir) and not overwrite:
        return rec.read_record(cell_dir), cell_dir, True
    if cell_dir.exists() or cell_dir.is_symlink():
        why = rec.not_a_cell(cell_dir)
        if why is not None:
            raise UserError(f"{cell_dir} {why}; genbench replaces only its own folders: move it "
                            f"away or choose another cell=NAME")
    device = resolve_device(str(cfg.get("device", "auto")))
    progress = bool(cfg.get("progress", True))
    preloaded, source = reference_dataset(reference)
    extractors = _extractors(cfg, source, reference, cache_dir, device, progress)
    m = Measurements()
    assert samples.images is not None
    measure_quality(samples.images, _Components(preloaded), cfg["eval"], cache_dir, extractors, m)
    config = {k: cfg[k] for k in ("experiment", "results_dir", "cache_dir", "device", "progress",
                                  "report") if k in cfg}
    config |= {"cell": cfg.get("cell"),
               "presets": {"dataset": reference.label if reference.kind != DATASET
                           else reference.preset, "eval": (cfg.get("presets") or {}).get("eval")},
               "samples": {"kind": samples.kind, "given": samples.given,
                           **({"dataset": samples.dataset_cfg} if samples.dataset_cfg else {})},
               "dataset": _reference_config(reference), "eval": cfg["eval"]}
    record = rec.new_record(cfg.get("experiment") or "default", cell, config, kind=KIND,
                            versions=package_versions(), hardware=hardware(device))
    quality = {k: m.metrics.get(k) for k in QUALITY_KEYS}
    record.update(
        metrics={key: quality.get(key) for key in rec.METRIC_KEYS} | m.metrics,
        metric_recipes=m.recipes,
        missing=m.missing | {k: "not measured" for k in QUALITY_KEYS
                             if m.metrics.get(k) is None and k not in m.missing}
        | {k: NO_GENERATOR for k in rec.METRIC_KEYS if k not in QUALITY_KEYS},
        inputs={"samples": _side_record(samples), "reference": _side_record(reference)},
        shapes={"image": [shape[0], shape[1], shape[1]]},
        seconds=round(time.perf_counter() - started, 2),
        artifacts={"samples": rec.SAMPLES, "config": rec.CONFIG},
    )
    files = {rec.SAMPLES: sample_grid_png(samples.images, int(cfg["eval"].get("grid_size", 10))),
             rec.CONFIG: yaml.safe_dump(config, sort_keys=False).encode()}
    rec.write_cell(cell_dir, record, files, overwrite=overwrite)
    return record, cell_dir, False


def run_eval(words: list[str], *, overwrite: bool = False) -> tuple[dict[str, Any], Path, bool]:
    """``genbench eval``'s words (SAMPLES, REFERENCE, overrides) -> :func:`score_images`.

    The configuration is composed from the overrides (Hydra, :func:`genbench.config.compose`)
    and checked as a cell's is; a ``dataset=NAME`` SAMPLES is composed apart, with the same
    ``dataset.*`` overrides.
    """
    from genbench.config import compose_plain
    from genbench.schema import validate

    args = parse_arguments(words)
    cfg = compose_plain(args.overrides)
    validate(cfg)
    presets = cfg.get("presets") or {}
    if args.reference is None or _is_preset(args.reference):
        reference = open_side(REFERENCE, args.reference or f"dataset={presets.get('dataset')}",
                              dict(cfg["dataset"]), presets.get("dataset"))
    else:
        reference = open_side(REFERENCE, args.reference)
    if _is_preset(args.samples):
        name = args.samples.split("=", 1)[1]
        own = compose_plain([*(o for o in args.overrides if not _is_preset(o)), args.samples])
        validate(own)
        samples = open_side(SAMPLES, args.samples, dict(own["dataset"]),
                            (own.get("presets") or {}).get("dataset") or name)
    else:
        samples = open_side(SAMPLES, args.samples)
    return score_images(cfg, samples, reference, overwrite=overwrite)
