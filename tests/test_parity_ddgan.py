"""Step-for-step parity of the adversarial trainer with the official DDGAN training loop.

The fixtures in tests/fixtures/ddgan_parity/ were recorded by running the official
NVlabs/denoising-diffusion-gan code (commit in meta.json: ``train_ddgan.py``'s loop body,
``q_sample_pairs``, ``sample_posterior``, the diffusion and posterior coefficients, ``EMA.py``,
and the official ``NCSNpp`` and ``Discriminator_small`` at a tiny size) on the CPU for four steps,
one batch per epoch, with every random draw injected and recorded under the name of the official
function that asked for it. Here genbench's own networks load the official initial weights
strictly (same parameter names), genbench's loop (:func:`genbench.training.loop.train`) runs the
same four steps on the same images in the same order with the same draws, and G, D and the EMA of
G must equal the official weights within 1e-5: D and G losses, R1 every ``lazy_reg`` steps, Adam,
the per-epoch cosine schedule and the EMA (official ``EMA.py``) included.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genbench.backbones.denoiser import Denoiser
from genbench.backbones.discriminator import DiscriminatorSmall
from genbench.backbones.ncsnpp import ncsnpp
from genbench.diffusion.ddgan import ddgan_schedule, q_sample_pairs
from genbench.training.adversarial import (
    AdversarialConfig,
    AdversarialTrainer,
    PhaseDraws,
    StepDraws,
)
from genbench.training.loop import train

FIX = Path(__file__).parent / "fixtures" / "ddgan_parity"
META = json.loads((FIX / "meta.json").read_text())
ARGS = META["settings"]
ATOL = 1e-5


def official_config(**overrides) -> AdversarialConfig:
    """The official run's settings as genbench's (``--lazy_reg``, ``--r1_gamma`` ...)."""
    cfg = AdversarialConfig(
        epochs=ARGS["num_epoch"], batch_size=ARGS["batch_size"], lr_g=ARGS["lr_g"],
        lr_d=ARGS["lr_d"], beta1=ARGS["beta1"], beta2=ARGS["beta2"],
        lr_decay=not ARGS["no_lr_decay"], lr_min=1e-5, ema_decay=ARGS["ema_decay"],
        r1_gamma=ARGS["r1_gamma"], lazy_reg=ARGS["lazy_reg"], rec_loss="none", seed=0,
        ckpt_every=1000)
    return dataclasses.replace(cfg, **overrides)


def networks() -> tuple[Denoiser, DiscriminatorSmall]:
    backbone = ncsnpp(
        in_channels=ARGS["num_channels"], resolution=ARGS["image_size"],
        nf=ARGS["num_channels_dae"], ch_mult=tuple(ARGS["ch_mult"]),
        num_res_blocks=ARGS["num_res_blocks"], attn_resolutions=tuple(ARGS["attn_resolutions"]),
        dropout=ARGS["dropout"], z_dim=ARGS["nz"], z_emb_dim=ARGS["z_emb_dim"],
        n_mlp=ARGS["n_mlp"])
    G = Denoiser(backbone, output="x0", z_dim=ARGS["nz"])  # official tanh head
    D = DiscriminatorSmall(ARGS["num_channels"], ngf=ARGS["ngf"], t_emb_dim=ARGS["t_emb_dim"])
    # the official state dicts load strictly: the parameter names are the official ones
    G.load_state_dict(load_file(FIX / "G_init.safetensors"), strict=True)
    D.load_state_dict(load_file(FIX / "D_init.safetensors"), strict=True)
    return G, D


def official_draws(inputs: dict[str, torch.Tensor], step: int, swap: bool = False) -> StepDraws:
    """The draws the official run used at ``step`` (``swap``: x_k's and x_{k+1}'s noise
    exchanged, i.e. the order genbench had before)."""
    def phase(name: str) -> PhaseDraws:
        get = lambda what: inputs[f"step{step}.{name}.{what}"]  # noqa: E731
        nxt, cur = get("noise_next"), get("noise_k")
        if swap:
            nxt, cur = cur, nxt
        return PhaseDraws(get("k"), nxt, cur, get("z"), get("posterior"))

    return StepDraws(phase("d"), phase("g"))


def run_genbench(tmp_path: Path, swap: bool = False, **overrides) -> AdversarialTrainer:
    inputs = load_file(FIX / "inputs.safetensors")
    G, D = networks()
    cfg = official_config(**overrides)
    trainer = AdversarialTrainer(G, D, ddgan_schedule(ARGS["num_timesteps"],
                                                      beta_min=ARGS["beta_min"],
                                                      beta_max=ARGS["beta_max"]),
                                 cfg, torch.device("cpu"))

    def source(step: int, x0: torch.Tensor) -> StepDraws:
        # the loop feeds the batches the official run saw (same images, same order)
        torch.testing.assert_close(x0, inputs["batches"][step], rtol=0, atol=0)
        return official_draws(inputs, step, swap)

    trainer.draw_source = source
    assert train(trainer, inputs["images"], tmp_path / "ckpt", cfg.loop(), progress=False)
    assert trainer.step == META["steps"]
    return trainer


def max_differences(trainer: AdversarialTrainer) -> dict[str, float]:
    out = {}
    for name, module, fixture in (("G", trainer.G, "G_final"), ("D", trainer.D, "D_final"),
                                  ("G_ema", trainer.G_ema.module, "G_ema_final")):
        expected = load_file(FIX / f"{fixture}.safetensors")
        got = module.state_dict()
        assert set(got) == set(expected), name
        out[name] = max(float((got[k] - expected[k]).abs().max()) for k in expected)
    return out


def test_fixture_is_from_the_official_code_and_small():
    assert META["official_repo"] == "https://github.com/NVlabs/denoising-diffusion-gan"
    assert len(META["official_commit"]) == 40
    assert sum(f.stat().st_size for f in FIX.iterdir()) < 1_000_000
    # the official draw order within a phase, as recorded from the official functions
    assert META["draw_order"][:5] == ["step0.d.k", "step0.d.noise_next", "step0.d.noise_k",
                                      "step0.d.z", "step0.d.posterior"]


def test_four_steps_match_the_official_loop(tmp_path):
    trainer = run_genbench(tmp_path)
    diffs = max_differences(trainer)
    assert all(v <= ATOL for v in diffs.values()), diffs
    # the weights moved much more than the tolerance, so the comparison means something
    G0 = load_file(FIX / "G_init.safetensors")
    moved = max(float((trainer.G.state_dict()[k] - G0[k]).abs().max()) for k in G0)
    assert moved > 100 * ATOL
    assert "r1" in trainer.history[0] and "r1" not in trainer.history[1]  # lazy: steps 0, 2


@pytest.mark.parametrize("change", [
    {"r1_gamma": ARGS["r1_gamma"] * 2},  # R1 weight
    {"lazy_reg": 1},  # R1 on every step
    {"lazy_reg": 3},  # R1 on steps 0, 3
    {"ema_decay": 0.99},
    {"lr_decay": False},  # no cosine schedule
    {"swap": True},  # x_k's noise drawn before x_{k+1}'s (genbench's order before this fix)
])
def test_the_fixture_detects_a_changed_loop(tmp_path, change):
    trainer = run_genbench(tmp_path, **change)
    diffs = max_differences(trainer)
    assert max(diffs.values()) > 10 * ATOL, diffs


def test_drawn_steps_follow_the_official_order():
    # StepDraws.draw takes from one stream what train_ddgan.py takes from torch's, in its order:
    # t, x_{t+1}'s noise, x_t's noise, latent_z, the posterior noise; for D, then for G.
    x0 = torch.zeros(3, 2, 4, 4)
    draws = StepDraws.draw(4, x0, 5, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    for phase in (draws.d, draws.g):
        assert torch.equal(phase.k, torch.randint(0, 4, (3,), generator=g))
        for got in (phase.noise_next, phase.noise_k):
            assert torch.equal(got, torch.randn(x0.shape, generator=g))
        assert torch.equal(phase.z, torch.randn((3, 5), generator=g))
        assert torch.equal(phase.posterior, torch.randn(x0.shape, generator=g))


def test_q_sample_pairs_draws_the_next_noise_first():
    s = ddgan_schedule(4)
    x0 = torch.rand(2, 1, 3, 3)
    k = torch.tensor([1, 2])
    drawn = q_sample_pairs(s, x0, k, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    first, second = torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g)
    given = q_sample_pairs(s, x0, k, noise_next=first, noise_k=second)
    for a, b in zip(drawn, given, strict=True):
        assert torch.equal(a, b)
    x_k, _ = given
    expected = s.sqrt_alphas_cumprod[k].view(-1, 1, 1, 1) * x0 + \
        s.sqrt_one_minus_alphas_cumprod[k].view(-1, 1, 1, 1) * second
    torch.testing.assert_close(x_k, expected)
