"""Cost measurements that wrap components and never edit them.

What the LDDGAN paper (Trinh and Hamagami 2024, arXiv 2406.11713) reports as cost, and how it is
measured here:

* NFE (Table 3): the number of denoiser forward calls in one sampling run, counted by
  :class:`NFECounter`, a wrapper around the denoiser.
* Parameters (Table 2, "Params M"): :func:`count_parameters`.
* FLOPs (Table 2, "FLOPs G"): fvcore's convention, one multiply-add counted once, i.e. MACs.
  :func:`count_macs` runs a call under ``torch.utils.flop_counter.FlopCounterMode``, which
  counts matmuls, convolutions and attention (2 FLOPs per multiply-add), and halves its total;
  k-diffusion's ``models/flops.py`` counts the same way, by a context manager around a call.
  The fused attention kernels that torch's counter has no formula for get torch's own
  (:data:`SDPA_FORMULAS`), so attention counts on every device.
* Memory (Table 2, "MEM GB"): :func:`peak_memory`, the CUDA allocator's peak on GPU and a
  tensor-storage tracker on CPU.
* Time (Table 3, "Time (s)" for a batch of 100): :func:`time_per_batch`, with untimed warm-up
  runs and CUDA events plus synchronisation on GPU, as the WaveDiff/LDDGAN ``--measure_time``
  scripts do (10 warm-up runs, ``torch.cuda.Event``, synchronize).
"""

from __future__ import annotations

import os
import statistics as stats
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from genbench.errors import UserError
from genbench.process import thread_conditions

MIB = float(1 << 20)

# Method strings recorded next to each measurement.
CUDA_MEMORY_METHOD = "cuda_max_memory_allocated"
CPU_MEMORY_METHOD = "cpu_live_tensor_storage_peak"
CUDA_TIME_METHOD = "cuda_event"
CPU_TIME_METHOD = "perf_counter"


class Forwarding(nn.Module):
    """A wrapper module whose attributes it lacks (``z_dim``, ``output``, ``num_timesteps``, ...)
    are read from the wrapped module ``inner``, so code that reads metadata from the denoiser
    works unchanged on the wrapper."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "inner":
                raise
            return getattr(super().__getattr__("inner"), name)


class NFECounter(Forwarding):
    """Counts forward calls of a wrapped denoiser; the count after one sampling run is its NFE.

    Attributes the wrapper does not have (``z_dim``, ``num_timesteps``, ...) are read from the
    wrapped module, so samplers that read metadata from the denoiser work unchanged.
    """

    def __init__(self, module: nn.Module | Callable[..., Any]) -> None:
        super().__init__()
        self.inner = module
        self.calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped module and count the call."""
        self.calls += 1
        return self.inner(*args, **kwargs)

    def reset(self) -> None:
        """Set the count back to zero."""
        self.calls = 0


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# Fused kernels behind ``torch.nn.functional.scaled_dot_product_attention`` (forward, backward) that
# may lack a FLOP formula in torch's registry (torch 2.14 has none for the first three; without one
# ``FlopCounterMode`` counts them as zero): the CPU flash kernel, the out-of-tree backends'
# "overrideable" kernel, and the MPS one. Their arguments start (query, key, value) and
# (grad_out, query, key, value), [B, H, L, E] as for torch's CUDA flash kernel.
_SDPA_KERNELS = {
    "_scaled_dot_product_flash_attention_for_cpu": "forward",
    "_scaled_dot_product_flash_attention_for_cpu_backward": "backward",
    "_scaled_dot_product_fused_attention_overrideable": "forward",
    "_scaled_dot_product_fused_attention_overrideable_backward": "backward",
    "_scaled_dot_product_attention_math_for_mps": "forward",
}


def _torch_formula(formula: Callable[..., int]) -> Callable[..., int]:
    """Pass torch's registered (already shape-wrapped) formula to ``FlopCounterMode`` as is."""
    def counted(*args: Any, **kwargs: Any) -> int:
        return formula(*args, **kwargs)

    counted._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode: do not wrap again
    return counted


def _missing_sdpa_formulas() -> dict[Any, Callable[..., int]]:
    """Torch's own formulas of its CUDA flash kernel for the SDPA kernels that lack one.

    Forward (torch's ``sdpa_flop``): the two matmuls Q K^T and A V, B*H*L*S*(E + Ev) MACs.
    Backward (``sdpa_backward_flop``): five matmuls, the scores recomputed as flash kernels do.
    A formula torch registers itself (a later release) is kept, not replaced.
    """
    aten = torch.ops.aten
    torch_formula = {
        "forward": flop_registry[aten._scaled_dot_product_flash_attention],
        "backward": flop_registry[aten._scaled_dot_product_flash_attention_backward],
    }
    formulas = {}
    for name, direction in _SDPA_KERNELS.items():
        op = getattr(aten, name, None)
        if op is not None and op not in flop_registry:
            formulas[op] = _torch_formula(torch_formula[direction])
    return formulas


SDPA_FORMULAS = _missing_sdpa_formulas()
"""``FlopCounterMode`` ``custom_mapping`` used by :func:`measure_flops`: op -> formula."""


@dataclass(frozen=True)
class FlopCount:
    """What ``FlopCounterMode`` saw during one call."""

    flops: int  # 2 per multiply-add (torch's convention)
    macs: int  # flops // 2: fvcore's and the LDDGAN paper's "FLOPs"
    by_operator: dict[str, int]  # flops per aten operator

    @property
    def gmacs(self) -> float:
        """MACs in units of 1e9."""
        return self.macs / 1e9


class _GlobalOnly:
    """Stands in for ``FlopCounterMode``'s module tracker: every count goes to "Global" only.

    The tracker's backward hooks make ``torch.autograd.grad`` with respect to a leaf fail
    ("A leaf node was passed to _will_engine_execute_node ...", torch 2.x), which R1's gradient
    of D with respect to its real input is; the totals here read only "Global" anyway.
    """

    parents = frozenset({"Global"})

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *args: Any) -> None:
        return None


def measure_flops(fn: Callable[[], Any], *, per_module: bool = True) -> FlopCount:
    """Run ``fn()`` once under ``FlopCounterMode`` and return its FLOP and MAC counts.

    Only operators with a FLOP formula (matmul, convolution, attention, ...) count; elementwise
    operations and normalisations do not, matching the conv+linear counts behind the LDDGAN paper's
    Table 2 (the official DDGAN CIFAR-10 generator: 7.05 G reported, 7.052 GMACs counted so).

    Attention is counted on every device, in whichever kernel ``scaled_dot_product_attention``
    picks: torch's formulas for its CUDA kernels, the same formulas (:data:`SDPA_FORMULAS`) for
    the fused CPU kernel (without them it counted zero: the kl_f2 decoder's four attention layers
    at 16 x 16, 3.479 instead of 3.613 GMACs), and the math backend's batched matmuls. Forward is
    2*B*H*L*S*E attention MACs (Q K^T and A V) in every kernel; backward is 5*B*H*L*S*E in the fused
    kernels (torch's formula: the scores are recomputed) and 4*B*H*L*S*E in the math backend.

    ``per_module=False`` turns off the counter's module tracking (the totals are the same): a
    training step that takes ``torch.autograd.grad`` of a leaf (R1) needs it off.
    """
    counter = FlopCounterMode(display=False, custom_mapping=SDPA_FORMULAS)
    if not per_module:
        counter.mod_tracker = _GlobalOnly()  # type: ignore[assignment]
    with counter:
        fn()
    by_operator = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    flops = int(counter.get_total_flops())
    return FlopCount(flops=flops, macs=flops // 2, by_operator=by_operator)


def count_macs(fn: Callable[[], Any]) -> int:
    """Multiply-accumulates of one call of ``fn`` (total FLOPs // 2); see :func:`measure_flops`."""
    return measure_flops(fn).macs


# --------------------------------------------------------------------------------------------
# Peak memory.


def _use_cuda(device: str | torch.device) -> bool:
    device = torch.device(device)
    if device.type != "cuda":
        return False
    if not torch.cuda.is_available():
        raise UserError(f"device {device} requested but CUDA is not available; use device=cpu")
    return True


class _StorageTracker(TorchDispatchMode):
    """Tracks bytes of tensor storages created while active, freeing them as they die.

    A storage counts if an operator returns it and it is not the storage of one of the
    operator's inputs (so views and in-place updates of pre-existing tensors do not count). A
    ``weakref.finalize`` on the storage subtracts its bytes when the storage is released.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()
        self._lock = threading.Lock()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        out = func(*args, **(kwargs or {}))
        inputs = {_storage_id(t) for t in tree_flatten((args, kwargs))[0] if _is_dense(t)}
        for tensor in tree_flatten(out)[0]:
            if _is_dense(tensor):
                self._track(tensor.untyped_storage(), inputs)
        return out

    def _track(self, storage: torch.UntypedStorage, inputs: set[int]) -> None:
        ident, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or ident in inputs or ident in self._tracked:
            return
        with self._lock:
            self._tracked.add(ident)
            self.live += size
            self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._release, ident, size)

    def _release(self, ident: int, size: int) -> None:
        with self._lock:
            if ident in self._tracked:
                self._tracked.discard(ident)
                self.live -= size


def _is_dense(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.layout == torch.strided


def _storage_id(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def peak_memory(fn: Callable[[], Any], device: str | torch.device) -> tuple[float, str]:
    """Peak memory (MiB, 2**20 bytes) that one call of ``fn()`` needs beyond what existed before.

    CUDA (method ``"cuda_max_memory_allocated"``): ``torch.cuda.max_memory_allocated`` after
    ``reset_peak_memory_stats``, minus ``memory_allocated`` just before the call (weights and
    inputs already on the device are not counted; add them from :func:`count_parameters` if
    wanted). Caching-allocator reserve and CUDA context are excluded.

    CPU (method ``"cpu_live_tensor_storage_peak"``): the peak total size of tensor storages that
    operators created during the call and that were still alive, tracked with a
    ``TorchDispatchMode`` and finalizers on the storages. Memory outside torch tensors (Python
    objects, numpy arrays, allocator slack, oneDNN scratch space) is not included.
    """
    if _use_cuda(device):
        return _cuda_peak(fn, torch.device(device)), CUDA_MEMORY_METHOD
    tracker = _StorageTracker()
    with tracker:
        fn()
    return tracker.peak / MIB, CPU_MEMORY_METHOD


def _cuda_peak(fn: Callable[[], Any], device: torch.device) -> float:
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / MIB


# --------------------------------------------------------------------------------------------
# Time per batch.


def _time_cuda(fn: Callable[[], Any], device: torch.device) -> float:
    # the events go on ``device``'s current stream, where its kernels run: Event.record() with
    # no stream records on the current device's, another GPU's when ``device`` is not current
    # (device=cuda:1 in one process), and the span would hold none of the work
    stream = torch.cuda.current_stream(device)
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(device)
    start.record(stream)
    fn()
    end.record(stream)
    torch.cuda.synchronize(device)
    return start.elapsed_time(end) / 1000.0  # elapsed_time is in milliseconds


def _time_cpu(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_per_batch(
    fn: Callable[[], Any], device: str | torch.device, warmup: int = 10, trials: int = 100,
    on_run: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Wall time of ``fn()`` (one batch) over ``trials`` timed runs after ``warmup`` untimed ones.

    GPU: each trial is bracketed by ``torch.cuda.Event`` records and ``synchronize`` (method
    ``"cuda_event"``). CPU: ``time.perf_counter`` around the call (method ``"perf_counter"``).
    ``on_run`` (a progress bar's ``update``) is called after every run, outside the timed span.

    Returns:
        ``median_s``, ``q25_s``, ``q75_s``, ``iqr_s``, ``mean_s``, ``std_s``, ``min_s``,
        ``max_s``, ``cv`` (the coefficient of variation of the trials, ``std_s / mean_s``: a
        few hundredths on a quiet machine, much more when other processes compete), ``trials``,
        ``warmup``, ``method``, ``device``, and the conditions: ``threads`` (torch's intra-op
        threads), ``cpu_count``, ``load_1m_before`` and ``load_1m_after`` (the 1-minute load
        average around the trials; None where the OS has none), ``affinity_cpus`` (the CPUs the
        process may run on), ``omp_wait_policy`` (``OMP_WAIT_POLICY`` as the process saw it,
        ``"unset"`` if unset: libgomp's workers then spin before they sleep) and
        ``threads_setup`` (whether genbench set it before torch loaded libgomp:
        :func:`genbench.process.thread_conditions`).
    """
    summary = time_interleaved([fn], device, warmup, trials, on_run)[0]
    del summary["interleaved_with"]  # one call, timed alone
    return summary


def time_interleaved(
    fns: list[Callable[[], Any]], device: str | torch.device, warmup: int = 10, trials: int = 100,
    on_run: Callable[[], Any] | None = None,
) -> list[dict[str, Any]]:
    """:func:`time_per_batch` of several calls at once, round-robin: the warm-ups of every call,
    then trial ``i`` of every call before trial ``i + 1`` of any, so that a change of the
    machine's state during the measurement (another process starting, the clock throttling)
    falls on all of them alike and their times stay comparable. One summary per call, as
    :func:`time_per_batch` returns, with ``interleaved_with`` (the number of calls timed
    together) and the same load averages (around the whole measurement)."""
    if warmup < 0 or trials < 1:
        raise UserError(f"timing needs warmup >= 0 and trials >= 1, got {warmup} and {trials}")
    device = torch.device(device)
    cuda = _use_cuda(device)
    after = on_run or (lambda: None)
    load_before = _load_average()
    for fn in fns:
        for _ in range(warmup):
            fn()
            after()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(trials):
        for fn, out in zip(fns, times):
            out.append(_time_cuda(fn, device) if cuda else _time_cpu(fn))
            after()
    conditions = _conditions(load_before, _load_average())
    method = CUDA_TIME_METHOD if cuda else CPU_TIME_METHOD
    return [_summary(t, warmup, method, device) | conditions | {"interleaved_with": len(fns)}
            for t in times]


def _load_average() -> float | None:
    """The 1-minute load average of the machine (``os.getloadavg``), None where unsupported."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _conditions(load_before: float | None, load_after: float | None) -> dict[str, Any]:
    """Under which conditions the timing ran, so that a report can flag timings that cannot be
    compared: torch's intra-op threads, the machine's logical CPUs and its 1-minute load
    average before and after the trials (other processes competing for the CPU)."""
    setup = thread_conditions()
    return {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "load_1m_before": load_before, "load_1m_after": load_after,
            "affinity_cpus": setup["affinity_cpus"],
            "omp_wait_policy": setup["env"]["OMP_WAIT_POLICY"] or "unset",
            "threads_setup": setup["threads_setup"]}


def _summary(times: list[float], warmup: int, method: str, device: torch.device) -> dict[str, Any]:
    q25, median, q75 = np.percentile(times, [25, 50, 75])
    return {
        "median_s": float(median),
        "q25_s": float(q25),
        "q75_s": float(q75),
        "iqr_s": float(q75 - q25),
        "mean_s": float(stats.fmean(times)),
        "std_s": float(stats.stdev(times)) if len(times) > 1 else 0.0,
        "cv": _cv(times),
        "min_s": float(min(times)),
        "max_s": float(max(times)),
        "trials": len(times),
        "warmup": warmup,
        "method": method,
        "device": str(device) if device.type != "cuda" else _cuda_name(device),
    }


def _cv(times: list[float]) -> float | None:
    """Coefficient of variation (sample standard deviation / mean) of the trials; 0 for one
    trial, None when the mean is 0."""
    mean = stats.fmean(times)
    if mean <= 0:
        return None
    return float(stats.stdev(times) / mean) if len(times) > 1 else 0.0


def _cuda_name(device: torch.device) -> str:
    return f"{device} ({torch.cuda.get_device_name(device)})"
