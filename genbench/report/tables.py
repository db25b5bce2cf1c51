"""Benchmark records -> pandas tables.

Each run of a cell writes ``<results>/<experiment>/<cell>/result.json`` (schema version 1). This
module reads those records into one DataFrame (one row per record) and builds the summary table of
the trade-off the LDDGAN paper (Trinh and Hamagami 2024) reports in Table 3 (FID / recall / NFE /
time for a batch of 100) plus cost (GMACs, parameters, memory: its Table 2).

Quality numbers depend on the feature extractor that produced them, so the summary never puts two
extractors' numbers in one column: columns are named ``FID [<extractor>]``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from genbench import _io
from genbench.errors import UserError
from genbench.report.replicates import SEED_METRICS, configuration_key

__all__ = [
    "QUALITY_METRICS",
    "RESULT_FILENAME",
    "SCHEMA_VERSION",
    "RecordWarning",
    "flatten_config",
    "load_records",
    "quality_column",
    "short_names",
    "summary_table",
    "timing_flags",
]

RESULT_FILENAME = "result.json"
SCHEMA_VERSION = 1
# Metrics whose value depends on a feature extractor, with their display names.
QUALITY_METRICS: dict[str, str] = {
    "fid": "FID",
    "fid_infinity": "FID-infinity",
    "kid_mean": "KID",
    "kid_std": "KID std",
    "precision": "precision",
    "recall": "recall",
    # precision/recall on Inception pool features when no VGG16 weights: their own columns
    "precision[inception]": "precision[inception]",
    "recall[inception]": "recall[inception]",
}
CI_NAME = "FID 95% CI"  # FID's sampling interval (fid_ci), shown as "[low, high]"
UNKNOWN_EXTRACTOR = "unknown extractor"
# ``record["kind"]`` of scored images (``genbench eval``: no generator, so no time or cost);
# records without a kind are generated cells.
SCORED = "eval"
CELL = "cell"
# Columns every records frame has, even when empty.
BASE_COLUMNS: tuple[str, ...] = (
    "experiment", "cell", "status", "error", "created", "dataset", "resolution", "backbone",
    "latent", "sampler", "steps", "missing", "samples_path", "config", "config_flat",
    "metric_recipes", "path",
)  # fmt: skip


class RecordWarning(UserWarning):
    """A result.json that could not be read and was skipped."""


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b.c": value}``; lists stay as values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, name))
        else:
            flat[name] = value
    return flat


def _in_temporary(path: Path, root: Path) -> bool:
    """``path`` lies in a staging or set-aside folder of an atomic write, and is not the only copy
    of a record (an ``--overwrite`` killed between its renames leaves the old record set aside
    and none in place: that one is read, as the record of its cell)."""
    parts = path.relative_to(root).parts
    for i, part in enumerate(parts[:-1]):
        if _io.is_temporary(part):
            folder = root.joinpath(*parts[:i + 1])
            target = _io.set_aside_target(folder)
            sole = (i == len(parts) - 2 and target is not None and not target.exists()
                    and _io.previous_version(target)[:1] == [folder])
            if not sole:
                return True
    return False


def _find_result_files(paths: Iterable[str | Path]) -> list[Path]:
    """result.json files: given files as they are, directories searched recursively (skipping
    the hidden temporaries of atomic writes, :func:`genbench._io.is_temporary`)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob(RESULT_FILENAME))
                         if not _in_temporary(p, path))
        elif path.is_file():
            if not any(_io.is_temporary(part) for part in path.parent.parts):
                found.append(path)  # a killed writer's staging copy is not a record
        else:
            raise UserError(
                f"results path {path} does not exist; "
                f"pass a results directory or a {RESULT_FILENAME} file"
            )
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _read_record(path: Path) -> dict[str, Any]:
    """The parsed record, or ValueError naming what is wrong with it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    version = record.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ValueError(f"schema_version {version!r}, this genbench reads {SCHEMA_VERSION}")
    for key in ("cell", "status"):
        if not isinstance(record.get(key), str):
            raise ValueError(f"missing or non-string {key!r}")
    for key in ("config", "metrics", "metric_recipes", "missing", "timing", "artifacts"):
        if not isinstance(record.get(key) or {}, dict):
            raise ValueError(f"{key!r} is not an object")
    return record


def _component(config: Mapping[str, Any], kind: str) -> Any:
    """``config[kind]["name"]`` (or ``config[kind]`` when it is a plain string)."""
    value = config.get(kind)
    return value.get("name") if isinstance(value, Mapping) else value


def _missing_text(missing: Mapping[str, Any]) -> str | None:
    """``key: reason`` per missing metric; keys that share a reason are joined (``a, b: why``)."""
    keys: dict[str, list[str]] = {}
    for key, reason in missing.items():
        keys.setdefault(str(reason), []).append(str(key))
    return "; ".join(f"{', '.join(k)}: {reason}" for reason, k in keys.items()) or None


def _samples_label(config: Mapping[str, Any]) -> str | None:
    """What a scored-images record scored: the SAMPLES folder's or file's name, or its preset."""
    samples = config.get("samples")
    given = samples.get("given") if isinstance(samples, Mapping) else None
    if not isinstance(given, str) or not given:
        return None
    return given if given.startswith("dataset=") else (Path(given).name or given)


def is_scored(df: pd.DataFrame) -> pd.Series:
    """Boolean mask of the rows that are scored images (``genbench eval``), not generated."""
    if "kind" not in df.columns:
        return pd.Series([False] * len(df), index=df.index, dtype=bool)
    return (df["kind"] == SCORED).astype(bool)


def _resolution(record: dict[str, Any], dataset: Mapping[str, Any]) -> Any:
    """The configured resolution, else (an image folder at its own size, ``resolution: null``)
    the side of the image shape the cell recorded."""
    if dataset.get("resolution") is not None:
        return dataset.get("resolution")
    image = (record.get("shapes") or {}).get("image") if isinstance(record.get("shapes"),
                                                                     Mapping) else None
    return image[-1] if isinstance(image, list) and image else None


def _record_row(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """One flat row: identity, chosen config fields, metrics, extractors, timing, artifacts."""
    config = record.get("config") or {}
    dataset = config.get("dataset") if isinstance(config.get("dataset"), Mapping) else {}
    sampler = config.get("sampler") if isinstance(config.get("sampler"), Mapping) else {}
    recipes = record.get("metric_recipes") or {}
    missing = record.get("missing") or {}
    samples = (record.get("artifacts") or {}).get("samples")
    row: dict[str, Any] = {
        "experiment": record.get("experiment", path.parent.parent.name),
        "cell": record["cell"],
        "status": record["status"],
        "error": record.get("error"),
        "created": record.get("created"),
        # the preset name (cifar10, celebahq256) tells image_folder datasets apart
        "dataset": (config.get("presets") or {}).get("dataset") or _component(config, "dataset"),
        "resolution": _resolution(record, dataset),
        "backbone": _component(config, "backbone"),
        "latent": _component(config, "latent"),
        "sampler": _component(config, "sampler"),
        "steps": sampler.get("steps"),
        "kind": record.get("kind") if isinstance(record.get("kind"), str) else CELL,
        "missing": _missing_text(missing),
        "samples_path": str(path.parent / samples) if samples else None,
        "config": config,
        "config_flat": "\n".join(f"{k}={v}" for k, v in flatten_config(config).items()),
        "metric_recipes": recipes,
        "path": str(path),
        "seed": config.get("seed"),
        "config_key": configuration_key(config),
    }
    if row["kind"] == SCORED:
        row["scored"] = _samples_label(config)
    metrics = record.get("metrics") or {}
    reps = record.get("replicates")
    per_seed = reps.get("per_seed") if isinstance(reps, Mapping) else None
    if isinstance(per_seed, list) and per_seed:  # train.seeds=N: each seed's numbers
        row["replicates"] = [
            {"seed": p.get("seed"), **{k: (p.get("metrics") or {}).get(k) for k in SEED_METRICS}}
            for p in per_seed if isinstance(p, Mapping)]
    else:
        row["replicates"] = [{"seed": config.get("seed"),
                              **{k: metrics.get(k) for k in SEED_METRICS}}]
    row["n"] = len(row["replicates"])
    for name, value in metrics.items():
        row[name if name not in row else f"metric_{name}"] = value
    low, high = fid_ci_bounds(metrics.get("fid_ci"))
    row["fid_ci_low"], row["fid_ci_high"] = low, high
    for name, recipe in recipes.items():
        if isinstance(recipe, Mapping):
            row[f"{name}_extractor"] = recipe.get("extractor")
    memory = record.get("memory")
    if isinstance(memory, Mapping):
        row["memory_method"] = memory.get("method")
        row["memory_batch_size"] = memory.get("batch_size")
    timing = record.get("timing") or {}
    for name, value in timing.items():
        row[f"timing_{name}"] = value
    hardware = record.get("hardware") if isinstance(record.get("hardware"), Mapping) else {}
    # records from before the timing carried its conditions: the process's thread count then
    row.setdefault("timing_threads", hardware.get("torch_threads"))
    row.setdefault("timing_cpu_count", hardware.get("cpu_count"))
    training = record.get("training")
    consumed = training.get("consumed") if isinstance(training, Mapping) else None
    if isinstance(consumed, Mapping):  # what training consumed (genbench.training.budget)
        for name in ("images", "steps", "macs", "seconds"):
            row[f"train_{name}"] = consumed.get(name)
        row["train_budget"] = training.get("budget")
    # older or partial records: the timing block alone still places the cell on the time axis
    row.setdefault("time_per_batch_s", timing.get("median_s"))
    row.setdefault("time_per_batch_iqr_s", timing.get("iqr_s"))
    return row


def load_records(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Read result.json files (directories are searched recursively) into one DataFrame.

    One row per record; metrics flattened into columns of their own name (``fid``, ``nfe``,
    ``time_per_batch_s`` ...), the quality extractor of each metric in ``<metric>_extractor``,
    timing fields in ``timing_<field>``. Unreadable records are skipped with a
    :class:`RecordWarning` and listed in ``df.attrs["skipped"]`` as ``(path, reason)`` pairs.
    A path that does not exist is a UserError.
    """
    rows, skipped = [], []
    for path in _find_result_files(paths):
        try:
            rows.append(_record_row(_read_record(path), path))
        except ValueError as exc:
            skipped.append((str(path), str(exc)))
            warnings.warn(f"skipping {path}: {exc}", RecordWarning, stacklevel=2)
    frame = pd.DataFrame(rows)
    for column in BASE_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series([None] * len(frame), dtype=object)
    frame = frame[list(BASE_COLUMNS) + [c for c in frame.columns if c not in BASE_COLUMNS]]
    frame.attrs["skipped"] = skipped
    return frame


def extractor_of(df: pd.DataFrame, metric: str) -> pd.Series:
    """The extractor behind each row's ``metric`` (``UNKNOWN_EXTRACTOR`` when not recorded)."""
    column = f"{metric}_extractor"
    if column not in df.columns:
        return pd.Series([UNKNOWN_EXTRACTOR] * len(df), index=df.index, dtype=object)
    return df[column].map(lambda e: e if isinstance(e, str) and e else UNKNOWN_EXTRACTOR)


def quality_column(metric: str, extractor: str) -> str:
    """Column name of ``metric`` measured with ``extractor``, e.g. ``FID [digits-classifier]``."""
    return f"{QUALITY_METRICS.get(metric, metric)} [{extractor}]"


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df.columns:
        return pd.Series([math.nan] * len(df), index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def fast_path_label(settings: Any) -> str | None:
    """A record's ``timing.fast_path`` in a few words (``bf16 compile(reduce-overhead, CUDA
    graphs) channels_last``); None for the plain fp32 path or a record without one."""
    if not isinstance(settings, Mapping):
        return None
    parts = []
    if settings.get("precision") not in (None, "fp32"):
        parts.append(str(settings["precision"]))
    if settings.get("compile"):
        how = [str(settings.get("compile_mode") or "default")]
        if settings.get("cuda_graphs"):
            how.append("CUDA graphs")
        parts.append(f"compile({', '.join(how)})")
    if settings.get("channels_last"):
        parts.append("channels_last")
    return " ".join(parts) or None


def fid_ci_bounds(value: Any) -> tuple[float | None, float | None]:
    """``(low, high)`` of a record's ``fid_ci`` ([low, high]); ``(None, None)`` otherwise."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        bounds = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)
                  and math.isfinite(v)]
        if len(bounds) == 2 and bounds[0] <= bounds[1]:
            return float(bounds[0]), float(bounds[1])
    return None, None


def interval_text(low: Any, high: Any) -> str | None:
    """``"[low, high]"`` with 4 significant digits, None when either bound is missing."""
    try:
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return f"[{low:.4g}, {high:.4g}]"


def ci_column(extractor: str) -> str:
    """Column name of FID's sampling interval with ``extractor``, e.g. ``FID 95% CI [vgg16]``."""
    return f"{CI_NAME} [{extractor}]"


def ci_texts(df: pd.DataFrame) -> pd.Series:
    """Each row's ``fid_ci`` as ``"[low, high]"`` (None where it has none)."""
    low, high = _numeric(df, "fid_ci_low"), _numeric(df, "fid_ci_high")
    return pd.Series([interval_text(a, b) for a, b in zip(low, high)], index=df.index,
                     dtype=object)


def _quality_columns(df: pd.DataFrame) -> dict[str, pd.Series]:
    """One column per (quality metric, extractor) that has at least one value; after each FID
    column, FID's sampling interval as ``[low, high]`` when a row of it has one."""
    columns: dict[str, pd.Series] = {}
    intervals = ci_texts(df)
    for metric in QUALITY_METRICS:
        values = _numeric(df, metric)
        extractors = extractor_of(df, metric)
        for extractor in sorted(set(extractors[values.notna()])):
            columns[quality_column(metric, extractor)] = values.where(extractors == extractor)
            if metric == "fid":
                shown = intervals.where((extractors == extractor) & values.notna(), None)
                if shown.notna().any():
                    columns[ci_column(extractor)] = shown
    return columns


def _note(row: pd.Series) -> str | None:
    parts = [str(row[k]) for k in ("error", "missing") if isinstance(row.get(k), str) and row[k]]
    return "; ".join(parts) or None


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """The trade-off table: one row per record, sorted by dataset and cell.

    Columns: [experiment when several], name (what sets the record apart,
    :func:`short_names`), cell, dataset, backbone, latent, sampler, n (training
    seeds: a ``train.seeds=N`` record's quality numbers are means over N), NFE, one column
    per quality metric and extractor (``FID [inception-v3-compat]``; after it FID's 95% sampling
    interval ``FID 95% CI [...]`` as ``[low, high]``, and ``FID-infinity [...]``, ``KID [...]``,
    ``KID std [...]`` where recorded), the sampling fast path (:func:`fast_path_label`) and
    ``fast path FID - fp32 FID`` (its FID cost on the same seeds), time per batch and its IQR
    [s], the trials' coefficient of variation (time CV), timing device, batch size and threads,
    timing note (why a timing cannot be compared
    with the others, :func:`timing_flags`), GMACs per sample, parameters [M], peak memory [MB],
    the training compute consumed (images, steps, TMACs, device seconds, the budget if any),
    status and note (the error, or why a metric is missing).
    """
    table = pd.DataFrame(index=df.index)
    if df["experiment"].nunique(dropna=True) > 1:
        table["experiment"] = df["experiment"]
    table["name"] = short_names(df) if not df.empty else []
    for column in ("cell", "dataset", "backbone", "latent", "sampler"):
        table[column] = df[column]
    table["n"] = _numeric(df, "n").astype("Int64")  # training seeds behind the numbers
    table["NFE"] = _numeric(df, "nfe").astype("Int64")
    for name, values in _quality_columns(df).items():
        table[name] = values
    # the sampling fast path (eval.precision/compile/channels_last) and what it cost in quality:
    # FID minus the fp32 FID of the same seeds (both empty, and left out, for plain cells)
    fast = df["timing_fast_path"] if "timing_fast_path" in df.columns else [None] * len(df)
    table["fast path"] = [fast_path_label(v) for v in fast]
    table["fast path FID - fp32 FID"] = _numeric(df, "fid_delta_fp32")
    table["time/batch [s]"] = _numeric(df, "time_per_batch_s")
    table["time IQR [s]"] = _numeric(df, "time_per_batch_iqr_s")
    table["time CV"] = _numeric(df, "timing_cv")
    table["device"] = df["timing_device"] if "timing_device" in df.columns else None
    table["batch"] = _numeric(df, "timing_batch_size").astype("Int64")
    table["threads"] = _numeric(df, "timing_threads").astype("Int64")
    table["timing note"] = timing_flags(df)
    table["GMACs/sample"] = _numeric(df, "gmacs_per_sample")
    table["params [M]"] = _numeric(df, "params") / 1e6
    table["memory [MB]"] = _numeric(df, "peak_memory_mb")
    # the training compute each model consumed (cells sharing a model show the same numbers)
    table["train images"] = _numeric(df, "train_images").astype("Int64")
    table["train steps"] = _numeric(df, "train_steps").astype("Int64")
    table["train TMACs"] = _numeric(df, "train_macs") / 1e12
    table["train device s"] = _numeric(df, "train_seconds")
    table["train budget"] = df["train_budget"] if "train_budget" in df.columns else None
    table["status"] = df["status"]
    table["note"] = [_note(row) for _, row in df.iterrows()]
    return table.sort_values(["dataset", "cell"], kind="stable", na_position="last").reset_index(
        drop=True
    )


UNKNOWN_DATASET = "unknown dataset"


def finite_values(values: pd.Series, positive: bool) -> pd.Series:
    """Boolean mask: finite numbers (and > 0 on a log axis)."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    keep = numbers.notna() & numbers.map(math.isfinite)
    return keep & (numbers > 0) if positive else keep


def measured_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Ok rows with a finite FID, with ``_extractor``, ``_recall_extractor`` and ``_dataset``."""
    if df.empty or "fid" not in df.columns:
        return df.iloc[0:0].assign(_extractor=[], _recall_extractor=[], _dataset=[],
                                   _resolution=[])
    out = df[(df["status"] == "ok") & finite_values(df["fid"], positive=False)].copy()
    out["_extractor"] = extractor_of(df, "fid")[out.index]
    out["_recall_extractor"] = extractor_of(df, "recall")[out.index]
    out["_dataset"] = out["dataset"].map(lambda d: d if isinstance(d, str) else UNKNOWN_DATASET)
    resolution = pd.to_numeric(out["resolution"], errors="coerce")
    out["_resolution"] = [None if pd.isna(r) else int(r) for r in resolution]
    return out


NAME_FIELDS = ("experiment", "dataset", "latent", "backbone", "sampler", "steps")


def _name_field(row: pd.Series, name: str) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"s{int(value)}" if name == "steps" else str(value)


def short_names(group: pd.DataFrame) -> list[str]:
    """Short names for rows: only the fields that tell them apart.

    ``experiment``, ``dataset``, ``latent``, ``backbone``, ``sampler`` and ``steps`` (as
    ``s4``), keeping those that differ between the rows; sampler and steps always stay. Names
    that would still collide (cells that differ elsewhere: training seed, training settings) get
    ``seed N`` when the seeds differ, else the cell's hash (the whole cell name when even that
    collides); the whole configuration is in the record. Scored images (``genbench eval``) are
    ``scored <what was scored>``.
    """
    if group.empty:
        return []
    scored = is_scored(group)
    values = {n: [_name_field(row, n) for _, row in group.iterrows()] for n in NAME_FIELDS
              if n in group.columns}
    generated = ~scored.to_numpy()
    keep = [n for n, v in values.items()
            if len({x for x, g in zip(v, generated) if g}) > 1 or n in ("sampler", "steps")]
    names = [" ".join(p for p in parts if p) for parts in zip(*(values[n] for n in keep))]
    names = [f"scored {row.get('scored') or row['cell']}" if is_s else name
             for (_, row), name, is_s in zip(group.iterrows(), names, scored)]
    cells = group["cell"].astype(str).tolist()
    seeds = [_name_field(row, "seed") for _, row in group.iterrows()]
    out = []
    for name, cell, seed in zip(names, cells, seeds):
        if names.count(name) == 1 and name:
            out.append(name)
            continue
        twins = [s for n, s in zip(names, seeds) if n == name]
        suffix = f"seed {seed}" if seed and twins.count(seed) == 1 else cell.rsplit("-", 1)[-1]
        out.append(f"{name} {suffix}".strip())
    return [name if out.count(name) == 1 else cell for name, cell in zip(out, cells)]


LOADED = "taken under load"


def _condition(row: pd.Series, column: str) -> Any:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value) if isinstance(value, float) and value.is_integer() else value


def timing_flags(df: pd.DataFrame) -> pd.Series:
    """Why each row's timing cannot be compared with the others' (None where it can).

    The conditions of the timings (``timing.device``, ``timing.threads``, ``timing.batch_size``,
    ``timing.omp_wait_policy``: whether idle OpenMP workers spun, :mod:`genbench.process`) are
    compared with those most of the timed rows share; each difference is named (``device
    cuda:0 (most: cpu)``, ``4 threads (most: 1)``, ``batch 20 (most: 100)``, ``OMP_WAIT_POLICY
    unset (most: PASSIVE)``). A timing is also
    flagged as taken under load when the machine's 1-minute load average around its trials
    (``timing.load_1m_before``/``_after``) exceeded its logical CPUs: other processes competed
    for them. Rows without a time, and scored images, are None.
    """
    out = pd.Series([None] * len(df), index=df.index, dtype=object)
    if df.empty or "time_per_batch_s" not in df.columns:
        return out
    timed = df[finite_values(df["time_per_batch_s"], positive=True) & ~is_scored(df)]
    conditions = (("timing_device", "device {} (most: {})"),
                  ("timing_threads", "{} threads (most: {})"),
                  ("timing_batch_size", "batch {} (most: {})"),
                  ("timing_omp_wait_policy", "OMP_WAIT_POLICY {} (most: {})"))
    common: dict[str, Any] = {}
    for column, _ in conditions:
        values = [str(v) for v in (_condition(r, column) for _, r in timed.iterrows())
                  if v is not None]
        if values:
            common[column] = max(sorted(set(values)), key=values.count)
    for i, row in timed.iterrows():
        flags = []
        for column, text in conditions:
            value = _condition(row, column)
            if value is not None and column in common and str(value) != common[column]:
                flags.append(text.format(value, common[column]))
        loads = [v for v in (_condition(row, "timing_load_1m_before"),
                             _condition(row, "timing_load_1m_after"))
                 if isinstance(v, int | float)]
        cpus = _condition(row, "timing_cpu_count")
        if loads and isinstance(cpus, int | float) and max(loads) > cpus:
            flags.append(f"{LOADED} (1-min load {max(loads):.3g} on {int(cpus)} CPUs)")
        out[i] = "; ".join(flags) or None
    return out
