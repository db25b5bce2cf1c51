"""benchmarks/gpu.py: its FLOP-floor arithmetic, and a CPU smoke run (--quick) so it cannot rot."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inception_throughput_without_weights_is_missing_with_the_reason(monkeypatch) -> None:
    """A GPU machine without the NVlabs Inception: (d) is recorded as missing, with the reason."""
    from genbench.errors import MissingWeightsError
    from genbench.metrics import features

    def absent(**_):
        raise MissingWeightsError("Inception weights not found (looked in X)")

    monkeypatch.setattr(features, "inception_extractor", absent)
    assert _module().inception_section(torch.device("cpu"), 4, 2, 1) == {
        "missing": "Inception weights not found (looked in X)"}


def test_the_peak_table_matches_device_names_most_specific_first() -> None:
    gpu = _module()
    assert gpu.peak_for("NVIDIA H200", "bf16", True) == (989.0, "H200 dense bf16")
    assert gpu.peak_for("NVIDIA H200 NVL", "bf16", True)[0] == 835.0
    assert gpu.peak_for("NVIDIA H100 80GB HBM3", "fp32", True) == (494.0, "H100 dense tf32")
    assert gpu.peak_for("NVIDIA H100 80GB HBM3", "fp32", False)[0] == 67.0
    assert gpu.peak_for("NVIDIA H100 PCIe", "fp16", True)[0] == 756.0
    assert gpu.peak_for("NVIDIA A100-SXM4-80GB", "bf16", True)[0] == 312.0
    assert gpu.peak_for("NVIDIA A10", "bf16", True)[0] == 125.0  # not the A100's row
    assert gpu.peak_for("NVIDIA L4", "fp16", True)[0] == 121.0  # not the L40S's row
    assert gpu.peak_for("Tesla V100-SXM2-16GB", "fp32", True) == (15.7, "V100 dense fp32")
    assert gpu.peak_for("Tesla V100-SXM2-16GB", "bf16", True)[0] is None  # no bf16 cores
    assert gpu.peak_for("Tesla T4", "fp16", True)[0] == 65.0
    assert gpu.peak_for("cpu", "fp32", False)[0] is None
    # names torch.cuda.get_device_name gives that an earlier row must not take
    assert gpu.peak_for("NVIDIA H100 NVL", "bf16", True) == (835.0, "H100 NVL dense bf16")
    assert gpu.peak_for("Tesla V100S-PCIE-32GB", "fp16", True)[0] == 130.0
    assert gpu.peak_for("Tesla V100-PCIE-16GB", "fp32", True)[0] == 14.0
    assert gpu.peak_for("NVIDIA A100 80GB PCIe", "fp32", True)[0] == 156.0  # TF32
    assert gpu.peak_for("NVIDIA GeForce RTX 4090", "fp16", True)[0] == 165.2
    assert gpu.peak_row("NVIDIA GeForce RTX 4090 Laptop GPU") is None
    for name in ("NVIDIA A10G", "NVIDIA L40", "NVIDIA H20"):  # no row of theirs: no floor
        assert gpu.peak_row(name) is None, name


def test_the_floor_is_two_flops_per_mac_at_the_peak() -> None:
    gpu = _module()
    # LDDGAN CIFAR-10: 10.3 GMACs per sample, batch 100, H200 bf16 989 TFLOP/s
    assert gpu.floor_seconds(10.3e9 * 100, 989.0) == pytest.approx(2 * 10.3e11 / 989e12)
    assert gpu.floor_seconds(1e9, None) is None


@pytest.mark.slow
def test_the_quick_run_measures_every_part_and_saves_json(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1500,
                          env={**os.environ, "OMP_NUM_THREADS": "1",
                               "PYTHONPATH": str(SCRIPT.parents[1])})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["quick"] and result["device"] == "cpu"
    assert [m["model"] for m in result["models"]] == ["ddgan_cifar10", "wddgan_cifar10",
                                                     "lddgan_cifar10"]
    for model in result["models"]:
        paths = {row["path"]: row for row in model["paths"]}
        assert set(paths) == {"fp32", "bf16", "bf16-channels_last"}
        assert paths["fp32"]["uint8_diff_to_fp32"]["max_abs"] == 0  # same seeds, same path
        assert paths["bf16"]["settings"]["precision"] == "bf16"
        for row in paths.values():  # (a), (b), (e)
            assert row["median_s"] > 0 and row["trials"] == 2 and row["method"] == "perf_counter"
            assert row["x_floor"] is None and "not in the peak table" in row["peak_used"]
            assert row["speedup_over_paper"] == pytest.approx(row["paper_s"] / row["median_s"])
            assert row["peak_memory_mb_per_sample"] > 0
        assert model["nfe"] == 4 and model["overhead"]["bare_replay_median_s"] > 0  # (c)
    assert {m["paths"][0]["paper_s"] for m in result["models"]} == {0.21, 0.08}
    inception = result["inception"]  # (d)
    assert inception["genbench"]["images_per_s"] > 0
    assert inception["torch_fidelity"]["images_per_s"] > 0
    assert "saved" in done.stdout and "harness overhead" in done.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_short_gpu_run_times_with_cuda_events_and_the_peak_table(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--models", "lddgan_cifar10",
                           "--paths", "fp32", "bf16-compile", "--warmup", "3", "--trials", "10",
                           "--overhead-trials", "10", "--inception-images", "200",
                           "--out", str(out)], capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHONPATH": str(SCRIPT.parents[1])})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    row = result["models"][0]["paths"][1]
    assert row["method"] == "cuda_event" and row["settings"]["cuda_graphs"] is True
    assert row["peak_memory_method"] == "cuda_max_memory_allocated"
    assert "CUDA-graph" in row["peak_memory_note"] and result["models"][0]["paths"][0][
        "peak_memory_note"] is None
    if _module().peak_row(result["device"]) is not None:
        assert row["x_floor"] > 1  # no run beats the FLOP floor
