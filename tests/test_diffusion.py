"""DDGAN coefficients against values computed with the official code (NVlabs/denoising-diffusion-gan
``train_ddgan.py`` ``Diffusion_Coefficients`` / ``Posterior_Coefficients``) and closed forms."""

import math

import pytest
import torch

from genbench.diffusion.ddgan import (
    ddgan_schedule,
    posterior_sample,
    q_sample_pairs,
    time_grid,
    weighted_learning_weights,
)
from genbench.errors import UserError

# Official coefficients, beta_min 0.1, beta_max 20: beta_1..T, sqrt(abar_1..T), posterior
# variance k = 0..T-1
# (beta_min 0.1, beta_max 20)
TABLE = {
    2: ([0.92132, 0.99945], [0.28049, 0.00657], [0.0, 0.9209]),
    4: ([0.47826, 0.84921, 0.95642, 0.98740], [0.72232, 0.28049, 0.05856, 0.00657],
        [0.0, 0.4408, 0.8842, 0.9841]),
}


@pytest.mark.parametrize("steps", [2, 4])
def test_coefficients_match_reference_table(steps):
    betas, sqrt_abar, post_var = TABLE[steps]
    s = ddgan_schedule(steps)
    torch.testing.assert_close(s.betas[1:], torch.tensor(betas), atol=1e-4, rtol=0)
    torch.testing.assert_close(s.sqrt_alphas_cumprod[1:], torch.tensor(sqrt_abar), atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(s.posterior_variance, torch.tensor(post_var), atol=1e-4, rtol=0)


def test_time_grid_and_vp_closed_form():
    t = time_grid(4)
    assert t[0].item() == pytest.approx(1e-3) and t[-1].item() == pytest.approx(1.0)
    s = ddgan_schedule(4)
    # abar_T from the closed form, divided by abar(t_0) because the official cumprod restarts at t_0
    abar = lambda x: math.exp(-0.5 * x**2 * 19.9 - 0.1 * x)  # noqa: E731
    expected = abar(1.0) / abar(1e-3) * (1 - 1e-8)
    assert s.alphas_cumprod[-1].item() == pytest.approx(expected, rel=1e-5)


def test_last_step_returns_x0_prediction():
    s = ddgan_schedule(4)
    x0 = torch.randn(3, 2, 4, 4)
    x1 = torch.randn(3, 2, 4, 4)
    k = torch.zeros(3, dtype=torch.long)
    out = posterior_sample(s, x0, x1, k, noise=torch.randn_like(x0))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


def test_posterior_mean_is_gaussian_conditioning():
    """The posterior mean/variance equal the conditional of the joint Gaussian (x_k, x_{k+1})."""
    s = ddgan_schedule(4)
    for k in range(1, 4):
        abar_k, beta = s.alphas_cumprod[k].double(), s.betas[k + 1].double()
        # x_k = sqrt(abar_k) x0 + ..., x_{k+1} = sqrt(1-beta) x_k + sqrt(beta) e  (x0 given)
        var_k = 1 - abar_k
        cov = (1 - beta).sqrt() * var_k
        var_next = (1 - beta) * var_k + beta
        cond_var = var_k - cov**2 / var_next
        assert s.posterior_variance[k].item() == pytest.approx(cond_var.item(), rel=1e-4)
        coef_xt = cov / var_next
        assert s.posterior_mean_coef_xt[k].item() == pytest.approx(coef_xt.item(), rel=1e-4)


def test_q_sample_pairs_statistics():
    s = ddgan_schedule(4)
    g = torch.Generator().manual_seed(0)
    x0 = torch.ones(20000, 1)
    k = torch.full((20000,), 2, dtype=torch.long)
    x_k, x_next = q_sample_pairs(s, x0, k, g)
    assert x_k.mean().item() == pytest.approx(s.sqrt_alphas_cumprod[2].item(), abs=0.02)
    assert x_next.mean().item() == pytest.approx(s.sqrt_alphas_cumprod[3].item(), abs=0.02)
    assert x_next.var().item() == pytest.approx(1 - s.alphas_cumprod[3].item(), abs=0.03)


def test_geometric_schedule_rejects_degenerate_settings():
    with pytest.raises(UserError, match="geometric"):
        ddgan_schedule(4, kind="geometric")  # 0.1, 20: variance > 1 (official code: NaN)
    s = ddgan_schedule(4, beta_min=0.01, beta_max=0.9, kind="geometric")
    assert torch.isfinite(s.posterior_variance).all()


def test_weighted_learning_schedule_closed_form():
    w = weighted_learning_weights(100, delta=6.0)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert w[0].item() == pytest.approx(1 - sig(-6), rel=1e-9)  # 0.9975
    assert w[50].item() == pytest.approx(0.5, rel=1e-9)
    assert w[-1].item() == pytest.approx(1 - sig(6), rel=1e-9)  # 0.0025
    assert w[0].item() == pytest.approx(0.9975, abs=1e-4)
