"""DDPM/DDIM schedules, timestep spacings and samplers: closed forms, diffusers parity, NFE."""

import math

import diffusers
import numpy as np
import pytest
import torch

from genbench import registry
from genbench.backbones.denoiser import Denoiser
from genbench.backbones.ncsnpp import ncsnpp
from genbench.diffusion.gaussian import (
    SPACINGS,
    cosine_schedule,
    gaussian_schedule,
    linear_schedule,
    q_sample,
    respaced_betas,
    reverse_steps,
    sampling_timesteps,
)
from genbench.errors import UserError
from genbench.metrics.cost import NFECounter
from genbench.samplers.ddim import ddim, sample_ddim
from genbench.samplers.ddpm import ddpm, sample_ddpm
from genbench.samplers.noise import BatchRNG, PerSampleRNG

T = 1000


class FakeEps(torch.nn.Module):
    """A cheap, deterministic, nonlinear eps predictor of (x, t)."""

    def forward(self, x, t, z=None):
        assert z is None and t.dtype == torch.long and t.shape == (x.shape[0],)
        phase = t.to(x.dtype).view(-1, *([1] * (x.dim() - 1))) / T
        return 0.8 * torch.tanh(x) * torch.cos(3 * phase) + 0.2 * torch.sin(x + phase)


def _x_T(batch=3, seed=0):
    return torch.randn(batch, 2, 4, 4, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------ schedules


def test_linear_abar_at_step_1000_is_the_closed_form():
    sched = linear_schedule()
    betas = [1e-4 + i * (0.02 - 1e-4) / (T - 1) for i in range(T)]
    closed = math.prod(1.0 - b for b in betas)  # abar_T = prod_{i=1}^T (1 - beta_i)
    assert sched.alphas_cumprod[-1].item() == pytest.approx(closed, rel=1e-10)
    assert closed == pytest.approx(4.0358e-5, rel=1e-4)
    assert sched.betas[0].item() == pytest.approx(1e-4) and sched.betas[-1].item() == 0.02
    assert sched.num_train_steps == T and sched.betas.dtype == torch.float64


def test_cosine_schedule_follows_eq_17():
    sched = cosine_schedule()
    f = [math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(T + 1)]
    abar = [f[t + 1] / f[0] for t in range(T)]  # index t = paper step t + 1
    # betas are clipped at 0.999 only on the last step; before it abar is exactly f(t) / f(0)
    torch.testing.assert_close(sched.alphas_cumprod[:-1], torch.tensor(abar[:-1],
                               dtype=torch.float64), rtol=1e-9, atol=1e-12)
    assert sched.betas.max().item() == pytest.approx(0.999)
    assert sched.alphas_cumprod[T // 2].item() == pytest.approx(f[T // 2 + 1] / f[0])
    assert bool((sched.betas[1:] >= sched.betas[:-1]).all())


def test_schedules_match_diffusers():
    for kind, name in (("linear", "linear"), ("cosine", "squaredcos_cap_v2")):
        ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=name)
        ours = gaussian_schedule(kind)
        torch.testing.assert_close(ours.betas.float(), ref.betas, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ours.alphas_cumprod.float(), ref.alphas_cumprod, rtol=1e-4,
                                   atol=1e-7)


def test_bad_schedule_settings_are_user_errors():
    with pytest.raises(UserError, match="unknown schedule"):
        gaussian_schedule("sigmoid")
    with pytest.raises(UserError, match="beta_start"):
        linear_schedule(beta_start=0.03, beta_end=0.02)
    with pytest.raises(UserError, match="steps"):
        ddim(steps=1001)
    with pytest.raises(UserError, match="steps"):
        ddpm(steps=0)
    with pytest.raises(UserError, match="spacing"):
        ddim(spacing="uniform")
    with pytest.raises(UserError, match="eta"):
        ddim(eta=1.5)
    with pytest.raises(UserError, match="variance"):
        ddpm(variance="learned")


def test_q_sample_is_eq_4():
    sched = linear_schedule()
    x0, noise = torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), 2.0)
    out = q_sample(sched, x0, torch.tensor([0, 999]), noise)
    for i, t in enumerate((0, 999)):
        a = sched.alphas_cumprod[t].item()
        expected = math.sqrt(a) + 2 * math.sqrt(1 - a)
        torch.testing.assert_close(out[i], torch.full((1, 2, 2), expected), rtol=1e-6, atol=0)


# ------------------------------------------------------------------------------------ timesteps


def test_documented_spacing_examples():
    assert sampling_timesteps(T, 50, "leading")[:3] == [980, 960, 940]
    assert sampling_timesteps(T, 50, "leading")[-1] == 0
    assert sampling_timesteps(T, 20, "leading")[:3] == [950, 900, 850]
    assert sampling_timesteps(T, 50, "trailing")[:3] == [999, 979, 959]
    assert sampling_timesteps(T, 50, "trailing")[-1] == 19
    assert sampling_timesteps(T, 10, "linspace") == [999, 888, 777, 666, 555, 444, 333, 222,
                                                     111, 0]  # diffusers issue 7401
    quad = [int(s) for s in np.linspace(0, np.sqrt(T * 0.8), 10) ** 2][::-1]
    assert sampling_timesteps(T, 10, "quadratic") == quad  # DDIM official --skip_type quad


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 2, 3, 7, 10, 29, 50, 100, 250])
def test_spacings_descend_within_range(spacing, steps):
    ts = sampling_timesteps(T, steps, spacing)
    assert len(ts) == steps and 0 <= ts[-1] and ts[0] <= T - 1
    assert all(a > b for a, b in zip(ts, ts[1:])) or (spacing == "quadratic" and steps >= 30)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_all_steps_is_the_full_chain(spacing):
    assert sampling_timesteps(T, T, spacing) == list(range(T - 1, -1, -1))


def test_quadratic_repeats_are_identity_steps_as_in_the_official_code():
    ts = sampling_timesteps(T, 50, "quadratic")
    assert ts[-2:] == [0, 0] and len(ts) == 50  # int(linspace(0, sqrt(800), 50)^2) = 0, 0, 1, ..
    counter, x_T = NFECounter(FakeEps()), _x_T()
    out = sample_ddim(counter, x_T, reverse_steps(linear_schedule(), ts), BatchRNG(3, 0))
    assert counter.calls == 50
    deduplicated = sample_ddim(FakeEps(), x_T, reverse_steps(linear_schedule(), ts[:-1]),
                               BatchRNG(3, 0))
    torch.testing.assert_close(out, deduplicated, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps_match_diffusers(spacing):
    ref = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
    checked = 0
    for steps in list(range(1, 101)) + [125, 200, 333, 500, 999, 1000]:
        ref.set_timesteps(steps)
        expected = ref.timesteps.tolist()
        if len(expected) != steps:  # diffusers' float arange adds an element for some counts
            continue
        assert sampling_timesteps(T, steps, spacing) == expected, steps
        checked += 1
    assert checked > 90


def test_respaced_betas_keep_the_kept_alpha_bars():
    sched = linear_schedule()
    torch.testing.assert_close(respaced_betas(sched, list(range(T - 1, -1, -1))), sched.betas,
                               rtol=1e-9, atol=1e-15)
    kept = sampling_timesteps(T, 10, "linspace")
    abar = torch.cumprod(1 - respaced_betas(sched, kept), 0)
    torch.testing.assert_close(abar, sched.alphas_cumprod[kept[::-1]], rtol=1e-12, atol=0)


# ------------------------------------------------------------------------------------- samplers


def _reference_ddpm(net, x, sched, rng):
    """Ho et al. Algorithm 2 verbatim on the original betas (no clipping)."""
    betas, abar = sched.betas.tolist(), sched.alphas_cumprod.tolist()
    for t in range(T - 1, -1, -1):
        eps = net(x, torch.full((x.shape[0],), t), None)
        x = (x - betas[t] / math.sqrt(1 - abar[t]) * eps) / math.sqrt(1 - betas[t])
        if t > 0:
            var = (1 - abar[t - 1]) / (1 - abar[t]) * betas[t]  # beta-tilde
            x = x + math.sqrt(var) * rng.randn(*x.shape[1:])
    return x


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_respaced_ddpm_with_all_steps_equals_full_ddpm(spacing):
    sched, net = linear_schedule(), FakeEps()
    ts = sampling_timesteps(T, T, spacing)
    ours = sample_ddpm(net, _x_T(), reverse_steps(sched, ts), BatchRNG(3, 5), clip_x0=False)
    reference = _reference_ddpm(net, _x_T(), sched, BatchRNG(3, 5))
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)


def test_ddim_eta0_is_deterministic_given_x_T():
    sampler, net = ddim(steps=20, eta=0.0), FakeEps()
    a = sampler.sample(net, _x_T(), PerSampleRNG([1, 2, 3]))
    b = sampler.sample(net, _x_T(), PerSampleRNG([7, 8, 9]))
    assert torch.equal(a, b)
    noisy = ddim(steps=20, eta=1.0)
    c = noisy.sample(net, _x_T(), PerSampleRNG([1, 2, 3]))
    assert not torch.allclose(c, noisy.sample(net, _x_T(), PerSampleRNG([7, 8, 9])))


@pytest.mark.parametrize("name,steps", [("ddim", 50), ("ddpm", 1000), ("ddpm", 7), ("ddim", 1)])
def test_nfe_is_steps(name, steps):
    counter = NFECounter(FakeEps())
    sampler = registry.create("sampler", name, steps=steps)
    rng = PerSampleRNG.for_range(0, 0, 2)
    sampler.sample(counter, rng.randn(2, 4, 4), rng)
    assert counter.calls == steps == sampler.steps


@pytest.mark.parametrize("name,options", [
    ("ddpm", {"steps": 7, "spacing": "trailing"}), ("ddpm", {"steps": 5, "clip_x0": False}),
    ("ddim", {"steps": 6, "eta": 0.5}), ("ddim", {"steps": 30, "spacing": "quadratic"})])
def test_callback_sees_every_step_with_its_input_and_prediction(name, options):
    """One callback per denoiser call, in order; x is the call's input, x0 its prediction."""
    sampler, seen, calls = registry.create("sampler", name, **options), [], []

    class Recording(FakeEps):
        def forward(self, x, t, z=None):
            calls.append((x.clone(), int(t[0])))
            return super().forward(x, t, z)

    rng = PerSampleRNG.for_range(0, 0, 2)
    x_T = rng.randn(2, 4, 4)
    out = sampler.sample(Recording(), x_T, rng, callback=seen.append)
    assert len(seen) == len(calls) == sampler.steps
    assert [info["step"] for info in seen] == list(range(sampler.steps))
    assert [info["t"] for info in seen] == sampler.options["timesteps"] == [t for _, t in calls]
    assert torch.equal(seen[0]["x"], x_T)
    for info, (x, _) in zip(seen, calls):
        assert torch.equal(info["x"], x) and info["x0"].shape == x.shape
    abar = linear_schedule().alphas_cumprod[seen[-1]["t"]].item()
    eps = FakeEps()(seen[-1]["x"], torch.full((2,), seen[-1]["t"]))
    x0 = (seen[-1]["x"] - math.sqrt(1 - abar) * eps) / math.sqrt(abar)  # DDIM Eq. 9
    x0 = x0.clamp(-1, 1) if options.get("clip_x0", True) else x0  # both default to clipping
    torch.testing.assert_close(seen[-1]["x0"], x0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, seen[-1]["x0"], rtol=1e-5, atol=1e-6)  # last step: x0'


@pytest.mark.parametrize("factory", [ddpm, ddim])
def test_samples_do_not_depend_on_batch_size(factory):
    sampler, net = factory(steps=10, **({"eta": 0.5} if factory is ddim else {})), FakeEps()

    def draw(start, count):
        rng = PerSampleRNG.for_range(3, start, count)
        return sampler.sample(net, rng.randn(2, 4, 4), rng)

    whole = draw(0, 5)
    parts = torch.cat([draw(0, 2), draw(2, 3)])
    torch.testing.assert_close(whole, parts, atol=1e-6, rtol=0)


def test_training_key_is_the_schedule_and_shared_by_ddpm_and_ddim():
    a = ddpm(steps=1000, spacing="trailing", variance="large")
    b = ddim(steps=5, eta=0.3, spacing="quadratic", clip_x0=True)
    assert a.objective == b.objective == "eps"
    assert a.training_key == b.training_key == {
        "schedule": "linear", "num_train_steps": 1000, "beta_start": 1e-4, "beta_end": 0.02}
    assert ddim(schedule="cosine").training_key == ddpm(schedule="cosine").training_key
    assert ddim(schedule="cosine").training_key != b.training_key
    assert ddim(beta_end=0.03).training_key != b.training_key
    assert b.options["spacing"] == "quadratic" and len(b.options["timesteps"]) == 5


def test_ncsnpp_eps_backbone_runs_under_both_samplers():
    torch.manual_seed(0)
    backbone = ncsnpp(in_channels=1, resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1,
                      attn_resolutions=[], z_dim=0)
    net = Denoiser(backbone, output="eps", z_dim=0).eval()
    for sampler in (ddim(steps=3), ddpm(steps=3)):
        rng = PerSampleRNG.for_range(0, 0, 2)
        out = sampler.sample(net, rng.randn(1, 8, 8), rng)
        assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()


# --------------------------------------------------------------------------- diffusers parity


def _diffusers_loop(scheduler, net, x, generator, **step_kwargs):
    for t in scheduler.timesteps:
        eps = net(x, torch.full((x.shape[0],), int(t)), None)
        x = scheduler.step(eps, t, x, generator=generator, **step_kwargs).prev_sample
    return x


@pytest.mark.parametrize("steps,spacing,variance", [
    (1000, "leading", "small"), (50, "leading", "small"), (37, "linspace", "small"),
    (20, "trailing", "small"), (50, "leading", "large"), (20, "leading", "small")])
def test_ddpm_matches_diffusers_ddpm_scheduler(steps, spacing, variance):
    net, sched = FakeEps(), linear_schedule()
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, trained_betas=sched.betas.numpy(),
                                  clip_sample=True, timestep_spacing=spacing,
                                  variance_type=f"fixed_{variance}")
    ref.set_timesteps(steps)
    expected = _diffusers_loop(ref, net, _x_T(), torch.Generator().manual_seed(4))
    ts = sampling_timesteps(T, steps, spacing)
    assert ts == ref.timesteps.tolist()
    ours = sample_ddpm(net, _x_T(), reverse_steps(sched, ts), BatchRNG(3, 4), variance=variance)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps,spacing,eta,clip", [
    (50, "leading", 0.0, False), (10, "trailing", 0.0, False), (50, "leading", 0.5, False),
    (20, "leading", 1.0, True), (100, "trailing", 0.3, True)])
def test_ddim_matches_diffusers_ddim_scheduler(steps, spacing, eta, clip):
    net, sched = FakeEps(), linear_schedule()
    ref = diffusers.DDIMScheduler(num_train_timesteps=T, trained_betas=sched.betas.numpy(),
                                  clip_sample=clip, timestep_spacing=spacing,
                                  set_alpha_to_one=True)
    ref.set_timesteps(steps)
    expected = _diffusers_loop(ref, net, _x_T(), torch.Generator().manual_seed(4), eta=eta,
                               use_clipped_model_output=clip)
    ts = sampling_timesteps(T, steps, spacing)
    assert ts == ref.timesteps.tolist()
    ours = sample_ddim(net, _x_T(), reverse_steps(sched, ts), BatchRNG(3, 4), eta=eta,
                       clip_x0=clip)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
