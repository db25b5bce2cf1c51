"""`genbench profile`: parameters, MACs and NFE for every backbone with every sampler."""

import json

import pytest

from genbench import registry
from genbench.config import compose_plain
from genbench.harness.profile import profile


@pytest.mark.parametrize("sampler", registry.names("sampler"))
@pytest.mark.parametrize("backbone", ["ncsnpp_ddgan_cifar10", "uvit_mid"])
def test_profile_cifar10_every_backbone_and_sampler(backbone, sampler):
    """Costs of a CIFAR-10 configuration without data files or training; NFE is counted."""
    steps = {"ddpm": 2, "ddim": 3}.get(sampler, 4)  # keep the counted sampling runs short
    cfg = compose_plain(["dataset=cifar10", "latent=pixel", f"backbone={backbone}",
                    f"sampler={sampler}", f"sampler.steps={steps}"])
    result = profile(cfg)
    assert result["nfe"] == steps
    assert result["params"] == result["params_denoiser"] > 1e6 and result["params_decoder"] == 0
    assert result["gmacs_denoiser"] > 0.1
    assert result["gmacs_per_sample"] == pytest.approx(steps * result["gmacs_denoiser"])
    adversarial = registry.get("sampler", sampler).extra.get("objective") == "adversarial"
    assert result["objective"] == ("adversarial" if adversarial else "eps")


@pytest.mark.slow
@pytest.mark.parametrize("sampler,steps", [("ddim", 50), ("ddpm", 1000)])
def test_profile_nfe_is_what_the_counter_saw(run_cli, sampler, steps):
    proc = run_cli("profile", "backbone=ncsnpp_tiny", f"sampler={sampler}",
                   f"sampler.steps={steps}", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["nfe"] == steps
