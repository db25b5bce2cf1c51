"""The DDGAN sampler: NFE = T by count, the posterior chain step by step, determinism,
independence from the batch size."""

import math

import pytest
import torch

from genbench.backbones.denoiser import Denoiser
from genbench.backbones.ncsnpp import ncsnpp
from genbench.diffusion.ddgan import ddgan_schedule, posterior_sample, time_grid, vp_alpha_bar
from genbench.metrics.cost import NFECounter
from genbench.samplers.ddgan import ddgan, sample_ddgan
from genbench.samplers.noise import BatchRNG, OfficialStream, PerSampleRNG


def _net():
    torch.manual_seed(0)
    backbone = ncsnpp(in_channels=1, resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1,
                      attn_resolutions=[], z_dim=4, z_emb_dim=16, n_mlp=1)
    return Denoiser(backbone, output="x0", z_dim=4).eval()


def _draw(sampler, net, seed, start, count):
    rng = PerSampleRNG.for_range(seed, start, count)
    return sampler.sample(net, rng.randn(1, 8, 8), rng)


def test_nfe_is_counted_and_equals_steps():
    for steps in (1, 2, 4):
        counter = NFECounter(_net())
        _draw(ddgan(steps=steps), counter, 0, 0, 3)
        assert counter.calls == steps


def test_same_seed_same_samples_and_different_seed_differs():
    net, sampler = _net(), ddgan(steps=4)
    a, b = _draw(sampler, net, 7, 0, 4), _draw(sampler, net, 7, 0, 4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, _draw(sampler, net, 8, 0, 4))


def test_samples_do_not_depend_on_batch_size():
    net, sampler = _net(), ddgan(steps=4)
    whole = _draw(sampler, net, 3, 0, 6)
    parts = torch.cat([_draw(sampler, net, 3, 0, 2), _draw(sampler, net, 3, 2, 1),
                       _draw(sampler, net, 3, 3, 3)])
    torch.testing.assert_close(whole, parts, atol=1e-5, rtol=0)


class Predictor(torch.nn.Module):
    """A cheap x0-predictor that depends on x, the step index k and z."""

    z_dim = 2

    def forward(self, x, t, z):
        k = t.to(x.dtype).view(-1, 1, 1, 1)
        return torch.tanh(0.7 * x * (1 + k) + 0.3 * z[:, :1, None, None] - 0.1 * k)


def _posterior_by_hand(steps, k, x0, x_next, noise):
    """DDPM Eq. 6-7 with DDGAN's coefficients (Xiao et al. 2022, Sec. 3.3; official
    ``Posterior_Coefficients``), from the VP alpha-bars, in float64: the hand-written step."""
    t = time_grid(steps).tolist()
    abar = [1.0 - 1e-8]  # beta_0 = 1e-8, the official placeholder
    for i in range(1, steps + 1):
        beta_i = 1 - vp_alpha_bar(torch.tensor(t[i]), 0.1, 20.0).item() / vp_alpha_bar(
            torch.tensor(t[i - 1]), 0.1, 20.0).item()
        abar.append(abar[-1] * (1 - beta_i))
    beta = 1 - abar[k + 1] / abar[k]  # beta_{k+1}
    mean_x0 = beta * math.sqrt(abar[k]) / (1 - abar[k + 1])
    mean_xt = (1 - abar[k]) * math.sqrt(1 - beta) / (1 - abar[k + 1])
    var = beta * (1 - abar[k]) / (1 - abar[k + 1])
    std = math.sqrt(var) if k > 0 else 0.0  # no noise on the last step
    return mean_x0 * x0 + mean_xt * x_next + std * noise


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_every_step_is_the_posterior_of_the_prediction(steps):
    """Each step k = T-1..0 draws x_k ~ q(x_k | x_{k+1}, x0') around the predictor's x0'."""
    sched, net, seen = ddgan_schedule(steps), Predictor(), []
    x_T = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    out = sample_ddgan(net, x_T, sched, BatchRNG(3, seed=9), callback=seen.append)
    assert [info["step"] for info in seen] == list(range(steps))
    assert [info["t"] for info in seen] == list(reversed(range(steps)))
    replay, x = BatchRNG(3, seed=9), x_T  # the same stream: z, then the noise, per step
    for info, k in zip(seen, reversed(range(steps))):
        z = replay.randn(2)
        x0 = net(x, torch.full((3,), k), z)
        torch.testing.assert_close(info["x"], x, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(info["x0"], x0, rtol=1e-5, atol=1e-5)
        x = _posterior_by_hand(steps, k, x0, x, replay.randn(2, 4, 4))
    torch.testing.assert_close(out, x, rtol=1e-4, atol=1e-5)


def test_last_step_returns_the_prediction_and_earlier_steps_mix_in_x():
    sched, net, seen = ddgan_schedule(4), Predictor(), []
    x_T = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(2))
    out = sample_ddgan(net, x_T, sched, BatchRNG(2, seed=0), callback=seen.append)
    torch.testing.assert_close(out, seen[-1]["x0"], rtol=1e-6, atol=1e-6)  # k = 0: x_0 = x0'
    assert float(sched.posterior_mean_coef_xt[1:].min()) > 0.05  # k > 0: x_{k+1} matters


def test_official_stream_draws_in_the_official_order():
    """eval.rng=official: ``torch.manual_seed(seed)`` once, then per batch x_T = randn(B, C, H,
    W) and per step z = randn(B, nz) and the posterior's randn_like(x), all from that one CPU
    stream, the next batch continuing it (NVlabs/denoising-diffusion-gan ``test_ddgan.py``
    ``sample_and_test`` and ``sample_from_model``); the global random state is left alone."""
    net, sampler, seed = _net(), ddgan(steps=3), 11
    before = torch.get_rng_state()
    stream = OfficialStream(seed)
    got = []
    for count in (3, 2):  # a last, smaller batch continues the same stream
        x_T = stream.initial(count, 1, 8, 8)
        seen = []
        got.append((x_T, sampler.sample(net, x_T, stream.batch(count), callback=seen.append)))
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(seed)  # the official script, by hand, on the global generator
    for count, (x_T, out) in zip((3, 2), got):
        x = torch.randn(count, 1, 8, 8)
        assert torch.equal(x, x_T)
        for k in reversed(range(3)):
            z = torch.randn(count, 4)
            t = torch.full((count,), k)
            x0 = net(x, t, z)
            x = posterior_sample(sampler.schedule, x0, x, t, torch.randn_like(x))
        assert torch.equal(x, out)
    torch.set_rng_state(before)
    # per-sample streams are another stream: the same seed does not give these samples
    rng = PerSampleRNG.for_range(seed, 0, 3)
    assert not torch.allclose(sampler.sample(net, rng.randn(1, 8, 8), rng), got[0][1])
