"""Cost measurements: NFE wrapper, parameters, MACs, peak memory, time per batch.

No timing thresholds are asserted beyond "at least the sleep time"; CUDA paths run only where a
GPU exists (marked ``gpu``).
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import flop_registry

from genbench.errors import UserError
from genbench.metrics.cost import (
    CPU_MEMORY_METHOD,
    CPU_TIME_METHOD,
    CUDA_MEMORY_METHOD,
    CUDA_TIME_METHOD,
    SDPA_FORMULAS,
    NFECounter,
    count_macs,
    count_parameters,
    measure_flops,
    peak_memory,
    time_per_batch,
)

MIB = 1 << 20
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class _Denoiser(nn.Module):
    z_dim = 7

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None = None):
        return self.net(x)


def test_nfe_counter_counts_calls_and_forwards_metadata() -> None:
    denoiser = _Denoiser()
    counted = NFECounter(denoiser)
    x = torch.zeros(2, 4)
    for step in range(4):
        out = counted(x, torch.full((2,), step), z=None)
    assert counted.calls == 4
    torch.testing.assert_close(out, denoiser(x, torch.zeros(2)))
    assert counted.z_dim == 7 and counted.net is denoiser.net
    assert count_parameters(counted) == count_parameters(denoiser) == 20
    counted.reset()
    assert counted.calls == 0
    with pytest.raises(AttributeError):
        _ = counted.not_an_attribute


def test_count_parameters_counts_shared_once_and_trainable() -> None:
    shared = nn.Linear(3, 5)
    model = nn.Sequential(shared, nn.ReLU(), nn.Linear(5, 3))
    model.append(shared.__class__(3, 5))
    model[3].weight = shared.weight  # tie a weight
    assert count_parameters(model) == (15 + 5) + (15 + 3) + 5
    model[2].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == (15 + 5) + 5


def test_macs_are_half_the_flops_of_conv_and_linear() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    linear = nn.Linear(8 * 8 * 8, 10)
    x = torch.randn(2, 3, 8, 8)
    counts = measure_flops(lambda: linear(conv(x).flatten(1)))
    expected_macs = 2 * (8 * 8 * 8 * 3 * 9) + 2 * (512 * 10)
    assert counts.macs == expected_macs and counts.flops == 2 * expected_macs
    assert set(counts.by_operator) >= {"aten.convolution", "aten.addmm"}
    assert count_macs(lambda: linear(conv(x).flatten(1))) == expected_macs


# Attention: B batch, H heads, L queries, S keys, E = Ev head width.
B, H, L, S, E = 2, 3, 5, 7, 4
ATTENTION_MACS = B * H * L * S * E  # one of the two matmuls, Q K^T or A V


def _qkv() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(B, H, n, E, generator=g, requires_grad=True) for n in (L, S, S))


@pytest.mark.parametrize("backend,kernel,backward_matmuls", [
    (None, "aten._scaled_dot_product_flash_attention_for_cpu", 5),  # torch's fused formula
    (SDPBackend.MATH, "aten.bmm", 4),  # two bmm, each with two in backward
])
def test_attention_is_counted_under_the_default_backend_and_math(backend, kernel,
                                                                 backward_matmuls) -> None:
    q, k, v = _qkv()
    with sdpa_kernel(backend) if backend else torch.enable_grad():
        forward = measure_flops(lambda: F.scaled_dot_product_attention(q, k, v))
        train = measure_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    assert forward.by_operator == {kernel: 2 * forward.macs}  # the kernel that ran was counted
    assert forward.macs == 2 * ATTENTION_MACS  # Q K^T and A V
    assert train.macs == (2 + backward_matmuls) * ATTENTION_MACS


def test_every_fused_attention_kernel_has_a_formula() -> None:
    """Each ``_scaled_dot_product_*`` kernel of this torch counts (the composite math path
    decomposes into bmm before the counter sees it); the added ones use torch's formulas."""
    names = {op.split("::")[1].split(".")[0] for op in torch._C._dispatch_get_all_op_names()
             if op.startswith("aten::_scaled_dot_product_")}
    kernels = {getattr(torch.ops.aten, n) for n in names - {"_scaled_dot_product_attention_math"}}
    assert torch.ops.aten._scaled_dot_product_flash_attention_for_cpu in kernels
    assert all(op in flop_registry or op in SDPA_FORMULAS for op in kernels)
    assert not set(SDPA_FORMULAS) & set(flop_registry)  # torch's own formulas are not replaced
    q, k, v = (t.detach().to("meta") for t in _qkv())
    grad_out = torch.empty(B, H, L, E, device="meta")
    for op, formula in SDPA_FORMULAS.items():
        if str(op).endswith("_backward"):
            assert formula(grad_out, q, k, v, out_val=None) == 2 * 5 * ATTENTION_MACS
        else:
            assert formula(q, k, v, out_val=None) == 2 * 2 * ATTENTION_MACS


def test_peak_memory_cpu_counts_allocations_inside_the_call() -> None:
    def allocate() -> torch.Tensor:
        big = torch.empty(40 * MIB // 4, dtype=torch.float32)
        big.fill_(1.0)
        return big.sum()

    megabytes, method = peak_memory(allocate, "cpu")
    assert megabytes >= 40 and method == CPU_MEMORY_METHOD == "cpu_live_tensor_storage_peak"


def test_peak_memory_cpu_ignores_memory_from_before_the_call() -> None:
    existing = torch.zeros(40 * MIB // 4)
    megabytes, _ = peak_memory(lambda: existing.add_(1.0)[:10].mul_(2.0), "cpu")
    assert megabytes < 1


def test_peak_memory_cpu_releases_freed_temporaries() -> None:
    def loop() -> None:
        for _ in range(5):
            temporary = torch.ones(4 * MIB // 4)  # 4 MiB, replaced each iteration
            del temporary

    megabytes, _ = peak_memory(loop, "cpu")
    assert 4 <= megabytes < 8.5


def test_peak_memory_cpu_sees_autograd_buffers() -> None:
    model = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024))
    x = torch.randn(256, 1024)
    forward, _ = peak_memory(lambda: model(x), "cpu")
    train, _ = peak_memory(lambda: model(x).square().mean().backward(), "cpu")
    assert forward >= 1.0 and train > forward  # gradients (8 MiB) and saved activations


def test_time_per_batch_runs_warmup_untimed_and_reports_summary() -> None:
    calls: list[int] = []

    def sleepy() -> None:
        calls.append(1)
        time.sleep(0.02)

    result = time_per_batch(sleepy, "cpu", warmup=2, trials=3)
    assert len(calls) == 2 + 3
    assert result["trials"] == 3 and result["warmup"] == 2
    assert result["median_s"] >= 0.02 and result["min_s"] >= 0.02
    assert result["method"] == CPU_TIME_METHOD == "perf_counter" and result["device"] == "cpu"
    for key in ("mean_s", "std_s", "q25_s", "q75_s", "iqr_s", "max_s"):
        assert result[key] >= 0
    # the conditions a report needs to flag timings that cannot be compared
    assert result["threads"] == torch.get_num_threads() and result["cpu_count"] >= 1
    assert result["load_1m_after"] is None or result["load_1m_after"] >= 0


def test_time_per_batch_rejects_bad_arguments() -> None:
    with pytest.raises(UserError):
        time_per_batch(lambda: None, "cpu", warmup=0, trials=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda_is_user_error() -> None:
    with pytest.raises(UserError, match="CUDA is not available"):
        peak_memory(lambda: None, "cuda")
    with pytest.raises(UserError, match="CUDA is not available"):
        time_per_batch(lambda: None, "cuda", warmup=0, trials=1)


class _FakeEvent:
    """Stands in for ``torch.cuda.Event``: remembers the stream it was recorded on."""

    recorded: list = []

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        self.stream = None

    def record(self, stream=None) -> None:
        self.stream = stream
        _FakeEvent.recorded.append(stream)

    def elapsed_time(self, end: _FakeEvent) -> float:
        return 5.0  # milliseconds


def test_cuda_events_go_on_the_timed_devices_stream(monkeypatch) -> None:
    """With device=cuda:1 in one process (cuda:0 current), the events must be recorded on cuda:1's
    stream, where the work runs: ``Event.record()`` alone records on the current device's. Fakes
    for the CUDA calls, so this runs without a GPU."""
    synced: list[torch.device] = []
    _FakeEvent.recorded = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("stream", device))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    calls = []
    result = time_per_batch(lambda: calls.append(1), "cuda:1", warmup=1, trials=2)
    cuda1 = torch.device("cuda", 1)
    assert _FakeEvent.recorded == [("stream", cuda1)] * 4  # start and end of each trial
    assert synced == [cuda1] * 4 and len(calls) == 3  # before and after each trial
    assert result["method"] == CUDA_TIME_METHOD and result["median_s"] == pytest.approx(0.005)
    assert result["device"] == "cuda:1 (Fake GPU)"


@pytest.mark.gpu
@cuda_only
def test_cuda_peak_memory_and_event_timing() -> None:
    device = torch.device("cuda")
    existing = torch.zeros(40 * MIB // 4, device=device)

    def allocate() -> torch.Tensor:
        return torch.ones(40 * MIB // 4, device=device).sum()

    megabytes, method = peak_memory(allocate, device)
    assert method == CUDA_MEMORY_METHOD and 40 <= megabytes < 42
    small, _ = peak_memory(lambda: existing.add_(1.0), device)
    assert small < 1
    result = time_per_batch(lambda: torch.cuda._sleep(1_000_000), device, warmup=1, trials=3)
    assert result["method"] == CUDA_TIME_METHOD and result["median_s"] > 0
    assert "cuda" in result["device"]
