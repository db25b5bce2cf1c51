"""The DDGAN sampler: NFE = T by count, determinism, independence from the batch size."""

import torch

from genbench.backbones.ncsnpp import ncsnpp
from genbench.diffusion.ddgan import ddgan_schedule
from genbench.metrics.cost import NFECounter
from genbench.samplers.ddgan import ddgan, sample_ddgan
from genbench.samplers.noise import BatchRNG, PerSampleRNG


def _net():
    torch.manual_seed(0)
    return ncsnpp(in_channels=1, resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1,
                  attn_resolutions=[], z_dim=4, z_emb_dim=16, n_mlp=1).eval()


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


def test_algorithm_follows_posterior_chain():
    """With a constant x0-predictor the chain is the posterior mean/variance recursion."""
    sched = ddgan_schedule(2)

    class Const(torch.nn.Module):
        z_dim = 2

        def forward(self, x, t, z):
            return torch.full_like(x, 0.5)

    rng = BatchRNG(1, seed=0)
    x_T = torch.zeros(1, 1, 1, 1)
    out = sample_ddgan(Const(), x_T, sched, rng, z_dim=2)
    torch.testing.assert_close(out, torch.full_like(out, 0.5), atol=1e-4, rtol=0)  # k=0: x0'
