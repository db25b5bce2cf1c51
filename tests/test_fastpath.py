"""The sampling fast path (eval.precision, eval.compile, eval.channels_last) and its record.

CPU tests run bf16/fp16 autocast and channels-last on the tiny NCSN++ (torch supports both on
the CPU); torch.compile on the CPU takes minutes (Inductor's C++ build), so it is ``slow``. The
CUDA paths (autocast on the GPU, CUDA graphs through ``reduce-overhead``, CUDA-event timing) are
``gpu`` tests, skipped without a GPU.
"""

from __future__ import annotations

import pytest
import torch

from genbench.errors import UserError
from genbench.harness.fastpath import FastDenoiser, FastPath, prepare, uint8_difference

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def tiny():
    """The tiny digits DDGAN configuration: its components and a seeded random denoiser."""
    from genbench.config import compose_plain
    from genbench.harness.build import build_backbone, build_components

    cfg = compose_plain(["backbone=ncsnpp_tiny", "train=tiny", "eval=tiny", "progress=false"])
    comps = build_components(cfg, load_data=False)
    torch.manual_seed(0)
    net = build_backbone(cfg, comps.latent_shape, comps.sampler.objective).eval()
    return cfg, comps, net


def _draw(net, latent, comps, device="cpu", n=8, batch=4):
    from genbench.harness.generate import generate

    return generate(net, latent, comps.sampler, comps.latent_shape, num_samples=n,
                    batch_size=batch, seed=1, device=torch.device(device), progress=False)


def test_settings_are_checked_and_default_to_the_plain_path() -> None:
    assert not FastPath.from_eval({}).active
    assert FastPath.from_eval({"precision": "bf16"}).active
    assert FastPath.from_eval({"channels_last": True}).active
    assert FastPath.from_eval({"compile": True}).active
    with pytest.raises(UserError, match="eval.precision='fp8'"):
        FastPath.from_eval({"precision": "fp8"})
    with pytest.raises(UserError, match="eval.compile_mode"):
        FastPath(compile=True, compile_mode="fastest")
    cpu = FastPath(precision="bf16").settings(torch.device("cpu"))
    assert cpu["autocast"] == "torch.autocast('cpu', bfloat16)" and cpu["compile_mode"] is None
    assert cpu["cuda_graphs"] is False and cpu["tf32"] is None


def test_the_schema_rejects_an_unknown_precision() -> None:
    from genbench.config import compose_plain
    from genbench.schema import validate

    validate(compose_plain(["eval=tiny", "eval.precision=bf16", "eval.compile=true",
                            "eval.channels_last=true"]))
    with pytest.raises(UserError, match="precision"):
        validate(compose_plain(["eval=tiny", "eval.precision=int8"]))


def test_the_plain_path_is_the_given_networks(tiny) -> None:
    _, comps, net = tiny
    prepared = prepare(net, comps.latent, FastPath(), torch.device("cpu"))
    assert prepared.net is net and prepared.latent is comps.latent


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_runs_the_denoiser_in_half_precision_and_returns_float32(tiny,
                                                                         precision) -> None:
    _, comps, net = tiny
    x = torch.randn(3, *comps.latent_shape, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0, 1, 2])
    z = torch.randn(3, net.z_dim, generator=torch.Generator().manual_seed(3))
    fast = FastDenoiser(net, FastPath(precision=precision), torch.device("cpu"))
    assert fast.z_dim == net.z_dim  # the sampler's metadata reads through
    with torch.no_grad():
        plain, low = net(x, t, z), fast(x, t, z)
    assert low.dtype == torch.float32
    # half precision really ran (not bit-equal), and stays close to fp32 (x0 through tanh)
    assert not torch.equal(plain, low)
    assert (plain - low).abs().max() < 0.1


def test_channels_last_works_on_a_copy_and_changes_nothing_but_rounding(tiny) -> None:
    _, comps, net = tiny
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    prepared = prepare(net, comps.latent, FastPath(channels_last=True), torch.device("cpu"))
    copied = next(m for m in prepared.net.inner.modules() if isinstance(m, torch.nn.Conv2d))
    assert copied.weight.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.is_contiguous() and conv.weight.dim() == 4  # the given net untouched
    plain = _draw(net, comps.latent, comps)
    fast = _draw(prepared.net, prepared.latent, comps)
    assert uint8_difference(fast, plain)["max_abs"] <= 1


def test_bf16_samples_are_the_same_seeds_close_to_fp32(tiny) -> None:
    _, comps, net = tiny
    plain = _draw(net, comps.latent, comps)
    prepared = prepare(net, comps.latent, FastPath(precision="bf16"), torch.device("cpu"))
    fast = _draw(prepared.net, prepared.latent, comps)
    diff = uint8_difference(fast, plain)
    assert fast.shape == plain.shape and fast.dtype == torch.uint8
    assert diff["max_abs"] <= 8  # same noise: only rounding in the networks differs
    assert diff["identical_fraction"] < 1.0 or diff["mean_abs"] == 0.0


def test_uint8_difference_counts_pixels_and_samples() -> None:
    a = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    b = a.clone()
    b[1, 0, 0, 0] = 3
    b[2, 0, 1, 1] = 255
    found = uint8_difference(a, b)
    assert found == {"max_abs": 255, "mean_abs": pytest.approx(258 / 16),
                     "mean_per_sample_max_abs": pytest.approx(258 / 4),
                     "identical_fraction": 0.5}
    with pytest.raises(ValueError, match="differ in shape"):
        uint8_difference(a, b[:3])


def test_timing_uses_the_fast_path_and_says_so(tiny) -> None:
    from genbench.harness.evaluate import time_sampling

    _, comps, net = tiny
    ev = {"time_batch_size": 2, "time_warmup": 0, "time_trials": 1, "precision": "bf16",
          "channels_last": True}
    timing = time_sampling(net, comps, ev, torch.device("cpu"))
    assert timing["fast_path"]["precision"] == "bf16"
    assert timing["fast_path"]["channels_last"] is True
    plain = time_sampling(net, comps, {**ev, "precision": "fp32", "channels_last": False},
                          torch.device("cpu"))
    assert plain["fast_path"]["precision"] == "fp32" and plain["fast_path"]["autocast"] is None


def test_cell_names_keep_the_plain_paths_names() -> None:
    from genbench.config import compose_plain
    from genbench.harness.cell import cell_name

    cfg = compose_plain(["eval=tiny"])
    without = {**cfg, "eval": {k: v for k, v in cfg["eval"].items()
                               if k not in ("precision", "compile", "compile_mode",
                                            "channels_last")}}
    assert cell_name(cfg) == cell_name(without)
    assert cell_name(compose_plain(["eval=tiny", "eval.precision=bf16"])) != cell_name(cfg)
    assert cell_name(compose_plain(["eval=tiny", "eval.compile=true"])) != cell_name(cfg)


def test_the_fp32_reference_records_fid_and_its_difference(tiny, tmp_path) -> None:
    """measure_fp32_reference on the digits classifier's features: fid_fp32 is the FID of the
    fp32 samples (as measure_quality computes it), and a perturbed sample set is detected."""
    from genbench.config import compose_plain
    from genbench.harness.build import build_components
    from genbench.harness.evaluate import (
        Measurements,
        choose_extractors,
        measure_fp32_reference,
        measure_quality,
    )

    cfg = compose_plain(["backbone=ncsnpp_tiny", "train=tiny", "eval=tiny", "progress=false",
                         "eval.feature_extractor=classifier", "eval.metrics=[fid]",
                         "eval.fid_ci_resamples=0", "eval.fid_infinity_points=0"])
    comps = build_components(cfg)
    ev = cfg["eval"]
    cpu = torch.device("cpu")
    chosen = choose_extractors(ev, comps, tmp_path, cpu, False)
    _, _, net = tiny
    plain = _draw(net, comps.latent, comps, n=32, batch=16)
    prepared = prepare(net, comps.latent, FastPath(precision="bf16"), cpu)
    fast = _draw(prepared.net, prepared.latent, comps, n=32, batch=16)
    out, alone = Measurements(), Measurements()
    measure_quality(fast, comps, ev, tmp_path, chosen, out)
    measure_fp32_reference(fast, plain, comps, ev, tmp_path, chosen, out, prepared.settings())
    measure_quality(plain, comps, ev, tmp_path, chosen, alone)
    assert out.metrics["fid_fp32"] == pytest.approx(alone.metrics["fid"], rel=1e-9)
    assert out.metrics["fid_delta_fp32"] == pytest.approx(
        out.metrics["fid"] - alone.metrics["fid"], abs=1e-9)
    assert out.metrics["uint8_diff_fp32"] == uint8_difference(fast, plain)
    recipe = out.recipes["fid_delta_fp32"]
    assert recipe["fast_path"]["precision"] == "bf16" and "one extra" in recipe["protocol"]
    # a changed sample set is seen in the difference
    shifted = (fast.to(torch.int16) + 60).clamp(0, 255).to(torch.uint8)
    other = Measurements()
    measure_quality(shifted, comps, ev, tmp_path, chosen, other)
    measure_fp32_reference(shifted, plain, comps, ev, tmp_path, chosen, other,
                           prepared.settings())
    assert abs(other.metrics["fid_delta_fp32"]) > abs(out.metrics["fid_delta_fp32"])
    assert other.metrics["uint8_diff_fp32"]["max_abs"] >= 60


@pytest.mark.slow
def test_a_bf16_cell_records_its_fast_path_and_fid_against_fp32(tmp_path) -> None:
    from genbench.config import compose_plain
    from genbench.harness import record
    from genbench.harness.cell import paths, run_cell

    cfg = compose_plain(["backbone=ncsnpp_tiny", "train=tiny", "eval=tiny", "progress=false",
                         "report=false", "dataset.split=test", f"results_dir={tmp_path}",
                         "eval.feature_extractor=classifier", "eval.metrics=[fid]",
                         "eval.num_samples=64", "eval.precision=bf16",
                         "eval.channels_last=true", "eval.time_trials=2",
                         "eval.time_warmup=1"])
    run_cell(cfg)
    saved = record.read_record(paths(cfg)[1])
    metrics = saved["metrics"]
    assert saved["timing"]["fast_path"]["precision"] == "bf16"
    assert saved["config"]["eval"]["precision"] == "bf16"
    assert metrics["fid_delta_fp32"] == pytest.approx(metrics["fid"] - metrics["fid_fp32"])
    assert 0 <= metrics["uint8_diff_fp32"]["max_abs"] <= 255
    assert saved["metric_recipes"]["fid_fp32"]["fast_path"]["channels_last"] is True


class _Replay(torch.nn.Module):
    """A CUDA graph's replay, faked: every call writes its result into one output buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = torch.zeros(2, 3)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None,
                z: torch.Tensor | None = None) -> torch.Tensor:
        self.buffer.copy_(2 * x)
        return self.buffer


class _Decoded:
    """A latent space with a decoder (so that the fast path compiles its decode)."""

    def decoder_module(self) -> torch.nn.Module:
        return torch.nn.Identity()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


def test_float32_outputs_of_cuda_graph_replays_are_copied_out() -> None:
    """Under reduce-overhead on a GPU the next replay overwrites the last output: the denoiser's
    and the decode's float32 outputs are handed on as copies (fp32 has no cast that copies)."""
    from genbench.harness.fastpath import FastLatent

    cuda, t = torch.device("cuda"), torch.zeros(2, dtype=torch.long)
    for fast, copies in ((FastPath(compile=True), True),
                         (FastPath(compile=True, compile_mode="max-autotune-no-cudagraphs"),
                          False)):
        assert fast.uses_cuda_graphs(cuda) is copies
        denoiser = FastDenoiser(torch.nn.Identity(), fast, cuda)  # compiled lazily: no GPU used
        latent = FastLatent(_Decoded(), fast, cuda)
        denoiser._call, latent._decode = _Replay(), _Replay()
        for run in (lambda x, d=denoiser: d(x, t), latent.decode):
            first = run(torch.ones(2, 3))
            second = run(torch.full((2, 3), 5.0))
            assert torch.equal(second, torch.full((2, 3), 10.0))
            assert torch.equal(first, torch.full((2, 3), 2.0 if copies else 10.0))


@pytest.mark.slow
def test_compile_on_the_cpu_gives_the_plain_samples(tiny) -> None:
    """torch.compile (Inductor, mode default) on the CPU: minutes for the tiny NCSN++."""
    _, comps, net = tiny
    prepared = prepare(net, comps.latent, FastPath(compile=True, compile_mode="default"),
                       torch.device("cpu"))
    fast = _draw(prepared.net, prepared.latent, comps)
    assert uint8_difference(fast, _draw(net, comps.latent, comps))["max_abs"] <= 1


# ------------------------------------------------------------------------------- CUDA only


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("fast", [FastPath(precision="bf16"), FastPath(precision="fp16"),
                                  FastPath(channels_last=True, precision="bf16"),
                                  FastPath(compile=True, precision="bf16"),
                                  FastPath(compile=True)],
                         ids=["bf16", "fp16", "bf16-channels_last", "bf16-compile-cudagraphs",
                              "fp32-compile-cudagraphs"])
def test_cuda_fast_paths_sample_the_same_seeds_close_to_fp32(tiny, fast) -> None:
    import copy

    from torch._dynamo.utils import counters

    _, comps, net = tiny
    cuda = torch.device("cuda")
    gpu_net = copy.deepcopy(net).to(cuda)  # the module's fixture stays on the CPU
    latent = comps.latent.to(cuda)  # pixel space: nothing to move
    plain = _draw(gpu_net, latent, comps, device="cuda", n=16, batch=8)
    prepared = prepare(gpu_net, latent, fast, cuda)
    assert prepared.settings()["cuda_graphs"] == fast.compile
    counters.clear()
    first = _draw(prepared.net, prepared.latent, comps, device="cuda", n=16, batch=8)
    again = _draw(prepared.net, prepared.latent, comps, device="cuda", n=16, batch=8)
    # the record's cuda_graphs is true: Inductor must not have skipped the graphs (a CPU tensor
    # or a mutated input in the forward makes it fall back to plain kernels, with a warning)
    assert counters["inductor"]["cudagraph_skips"] == 0
    # graph replays reuse their output buffers: the wrapper copies them out, else a sampler
    # holding an earlier output would read a later call's numbers (the fp32 path's output is
    # float32 already: only the copy-out protects it)
    assert uint8_difference(first, again)["max_abs"] <= 1
    assert uint8_difference(first, plain)["max_abs"] <= 8


@pytest.mark.gpu
@CUDA
def test_cuda_timing_of_a_fast_path_uses_cuda_events(tiny) -> None:
    import copy

    from genbench.harness.evaluate import time_sampling

    _, comps, net = tiny
    cuda = torch.device("cuda")
    ev = {"time_batch_size": 8, "time_warmup": 3, "time_trials": 5, "precision": "bf16",
          "compile": True}
    timing = time_sampling(copy.deepcopy(net).to(cuda), comps, ev, cuda)
    assert timing["method"] == "cuda_event" and timing["fast_path"]["cuda_graphs"] is True
    assert timing["median_s"] > 0 and "tf32" in timing["fast_path"]
