"""Step-for-step parity of the adversarial trainer with the official DDGAN, WaveDiff and LDDGAN
training loops.

The fixtures in tests/fixtures/{ddgan,wddgan,lddgan}_parity/ were recorded by running the official
code (repository and commit in each meta.json and README: NVlabs/denoising-diffusion-gan
``train_ddgan.py``, VinAIResearch/WaveDiff ``train_wddgan.py --rec_loss --use_pytorch_wavelet``,
thanhluantrinh/LDDGAN ``train_ldgan.py --rec_loss --sigmoid_learning --no_lr_decay``: the loop
body, ``q_sample_pairs``, ``sample_posterior``, the coefficients, ``EMA.py``, the official
``NCSNpp`` and ``Discriminator_small`` at a tiny size) on the CPU in float64 for four steps, one
batch per epoch, with every random draw injected and recorded under the name of the official
function that asked for it. Here genbench's own networks load the official initial weights
strictly (same parameter names), genbench's loop (:func:`genbench.training.loop.train`) runs the
same four steps on the same data in the same order with the same draws, and G, D and the EMA of
G must equal the official weights within 1e-5: D and G losses, R1 every ``lazy_reg`` steps, Adam,
the per-epoch cosine schedule, the EMA, WaveDiff's L1 term (and its Haar bands) and LDDGAN's
weighted learning included. Each fixture must also tell a changed loop apart.
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
from genbench.latents.wavelet import WaveletSpace
from genbench.training.adversarial import (
    AdversarialConfig,
    AdversarialTrainer,
    PhaseDraws,
    StepDraws,
)
from genbench.training.loop import train

FIXTURES = Path(__file__).parent / "fixtures"
ATOL = 1e-5


class Official:
    """One recorded official run: its folder, settings (``meta.json``) and tensors."""

    def __init__(self, name: str) -> None:
        self.dir = FIXTURES / name
        self.meta = json.loads((self.dir / "meta.json").read_text())
        self.args = self.meta["settings"]
        # both loops ran in float64 from float32 weights, data and draws (meta.json "dtype")
        self.dtype = torch.float64

    def load(self, what: str) -> dict[str, torch.Tensor]:
        return load_file(self.dir / f"{what}.safetensors")

    def config(self, **overrides) -> AdversarialConfig:
        """The official run's settings as genbench's (``--lazy_reg``, ``--r1_gamma`` ...)."""
        a = self.args
        cfg = AdversarialConfig(
            epochs=a["num_epoch"], batch_size=a["batch_size"], lr_g=a["lr_g"], lr_d=a["lr_d"],
            beta1=a["beta1"], beta2=a["beta2"], lr_decay=not a["no_lr_decay"], lr_min=1e-5,
            ema_decay=a["ema_decay"], r1_gamma=a["r1_gamma"], lazy_reg=a["lazy_reg"],
            rec_loss=("weighted" if a.get("sigmoid_learning") else "l1") if a.get("rec_loss")
            else "none", wl_delta=6.0, seed=0, ckpt_every=1000)  # train_ldgan.py: gamma = 6
        return dataclasses.replace(cfg, **overrides)

    def networks(self) -> tuple[Denoiser, DiscriminatorSmall]:
        a = self.args
        backbone = ncsnpp(
            in_channels=a["num_channels"], resolution=a["image_size"],
            nf=a["num_channels_dae"], ch_mult=tuple(a["ch_mult"]),
            num_res_blocks=a["num_res_blocks"], attn_resolutions=tuple(a["attn_resolutions"]),
            dropout=a["dropout"], z_dim=a["nz"], z_emb_dim=a["z_emb_dim"], n_mlp=a["n_mlp"])
        G = Denoiser(backbone, output="x0", z_dim=a["nz"])  # official tanh head
        D = DiscriminatorSmall(a["num_channels"], ngf=a["ngf"], t_emb_dim=a["t_emb_dim"],
                               num_layers=a.get("num_disc_layers", 4))
        # the official state dicts load strictly: the parameter names are the official ones
        G.load_state_dict(self.load("G_init"), strict=True)
        D.load_state_dict(self.load("D_init"), strict=True)
        return G.to(self.dtype), D.to(self.dtype)

    def encode(self):
        """What the loop maps images in [-1, 1] with: to float64, and for WaveDiff
        (--use_pytorch_wavelet) genbench's wavelet latent space, whose output the recorded
        batches (the official DWT's) must equal."""
        if self.args.get("use_pytorch_wavelet"):
            return lambda x: WaveletSpace().encode(x.to(self.dtype))
        return lambda x: x.to(self.dtype)


DDGAN = Official("ddgan_parity")  # NVlabs/denoising-diffusion-gan train_ddgan.py
WDDGAN = Official("wddgan_parity")  # VinAIResearch/WaveDiff train_wddgan.py --rec_loss
LDDGAN = Official("lddgan_parity")  # thanhluantrinh/LDDGAN train_ldgan.py --sigmoid_learning
RUNS = {"ddgan": DDGAN, "wddgan": WDDGAN, "lddgan": LDDGAN}


def official_draws(inputs: dict[str, torch.Tensor], step: int, swap: bool = False,
                   dtype: torch.dtype = torch.float64) -> StepDraws:
    """The draws the official run used at ``step`` (``swap``: x_k's and x_{k+1}'s noise
    exchanged, i.e. the order genbench had before)."""
    def phase(name: str) -> PhaseDraws:
        def get(what: str) -> torch.Tensor:
            value = inputs[f"step{step}.{name}.{what}"]
            return value if what == "k" else value.to(dtype)

        nxt, cur = get("noise_next"), get("noise_k")
        if swap:
            nxt, cur = cur, nxt
        return PhaseDraws(get("k"), nxt, cur, get("z"), get("posterior"))

    return StepDraws(phase("d"), phase("g"))


def run_genbench(run: Official, tmp_path: Path, swap: bool = False,
                 **overrides) -> AdversarialTrainer:
    inputs = run.load("inputs")
    G, D = run.networks()
    cfg = run.config(**overrides)
    a = run.args
    schedule = ddgan_schedule(a["num_timesteps"], beta_min=a["beta_min"], beta_max=a["beta_max"])
    trainer = AdversarialTrainer(G, D, schedule, cfg, torch.device("cpu"))

    def source(step: int, x0: torch.Tensor) -> StepDraws:
        # the loop feeds the batches the official run trained on (same images, same order;
        # for WaveDiff, genbench's Haar transform of them equals pytorch_wavelets')
        torch.testing.assert_close(x0.float(), inputs["batches"][step], rtol=0, atol=1e-6)
        return official_draws(inputs, step, swap)

    trainer.draw_source = source
    assert train(trainer, inputs["images"], tmp_path / "ckpt", cfg.loop(), encode=run.encode(),
                 progress=False)
    assert trainer.step == run.meta["steps"]
    return trainer


def max_differences(run: Official, trainer: AdversarialTrainer) -> dict[str, float]:
    out = {}
    for name, module, fixture in (("G", trainer.G, "G_final"), ("D", trainer.D, "D_final"),
                                  ("G_ema", trainer.G_ema.module, "G_ema_final")):
        expected = run.load(fixture)
        got = module.state_dict()
        assert set(got) == set(expected), name
        out[name] = max(float((got[k] - expected[k]).abs().max()) for k in expected)
    return out


@pytest.mark.parametrize("name", list(RUNS))
def test_fixture_is_from_the_official_code_and_small(name):
    run = RUNS[name]
    assert run.meta["official_repo"] in ("https://github.com/NVlabs/denoising-diffusion-gan",
                                         "https://github.com/VinAIResearch/WaveDiff",
                                         "https://github.com/thanhluantrinh/LDDGAN")
    assert len(run.meta["official_commit"]) == 40
    assert sum(f.stat().st_size for f in run.dir.iterdir()) < 1_000_000
    # the official draw order within a phase, as recorded from the official functions
    assert run.meta["draw_order"][:5] == ["step0.d.k", "step0.d.noise_next", "step0.d.noise_k",
                                          "step0.d.z", "step0.d.posterior"]


@pytest.mark.parametrize("name", list(RUNS))
def test_four_steps_match_the_official_loop(tmp_path, name):
    run = RUNS[name]
    trainer = run_genbench(run, tmp_path)
    diffs = max_differences(run, trainer)
    assert all(v <= ATOL for v in diffs.values()), diffs
    # the weights moved much more than the tolerance, so the comparison means something
    G0 = run.load("G_init")
    moved = max(float((trainer.G.state_dict()[k] - G0[k]).abs().max()) for k in G0)
    assert moved > 100 * ATOL
    assert "r1" in trainer.history[0] and "r1" not in trainer.history[1]  # lazy: steps 0, 2
    assert ("g_rec" in trainer.history[0]) == (name in ("wddgan", "lddgan"))


CHANGES = [
    {"r1_gamma": DDGAN.args["r1_gamma"] * 2},  # R1 weight
    {"lazy_reg": 1},  # R1 on every step
    {"lazy_reg": 3},  # R1 on steps 0, 3
    {"ema_decay": 0.99},
    {"lr_decay": False},  # no cosine schedule
    {"swap": True},  # x_k's noise drawn before x_{k+1}'s (genbench's order before this fix)
]


@pytest.mark.parametrize("change", CHANGES)
def test_the_fixture_detects_a_changed_loop(tmp_path, change):
    diffs = max_differences(DDGAN, run_genbench(DDGAN, tmp_path, **change))
    assert max(diffs.values()) > 10 * ATOL, diffs


def test_the_wavediff_fixture_detects_a_missing_l1_term(tmp_path):
    diffs = max_differences(WDDGAN, run_genbench(WDDGAN, tmp_path, rec_loss="none"))
    assert max(diffs.values()) > 10 * ATOL, diffs


def test_lddgan_weighted_learning_is_the_official_schedule():
    # train_ldgan.py lines 184-187, recorded by the driver: 1 - sigmoid(linspace(-6, 6, E + 1))
    trainer = AdversarialTrainer(*LDDGAN.networks(), ddgan_schedule(4), LDDGAN.config(),
                                 torch.device("cpu"))
    weights = [trainer.rec_weight(e) for e in range(LDDGAN.args["num_epoch"] + 1)]
    assert weights == pytest.approx(LDDGAN.meta["sigmoid_weights"], rel=1e-12)


@pytest.mark.parametrize("change", [{"rec_loss": "l1"}, {"wl_delta": 4.0}, {"rec_loss": "none"}])
def test_the_lddgan_fixture_detects_other_reconstruction_weights(tmp_path, change):
    diffs = max_differences(LDDGAN, run_genbench(LDDGAN, tmp_path, **change))
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
