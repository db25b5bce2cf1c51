"""``train.precision`` (fp32 | bf16 | fp16) and ``train.compile`` of the trainers, and
``latent.precision`` / ``latent.compile`` of the autoencoder's.

bf16 steps run on the CPU and land near, not on, the fp32 weights; fp16 runs with a loss scaler
(R1's gradient taken at the scale and divided by it; a skipped step is logged as such, not as a
divergence) and checkpoints the scaler; the settings are checked, recorded in the training info
and enter a model's cache key only when not at their defaults.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from test_budget import _nets  # the same tiny G and D (seeds 0 and 1)

from genbench import registry
from genbench.backbones.denoiser import Denoiser
from genbench.backbones.ncsnpp import ncsnpp
from genbench.diffusion.ddgan import ddgan_schedule
from genbench.diffusion.gaussian import linear_schedule
from genbench.errors import UserError
from genbench.harness.artifacts import training_payload
from genbench.precision import logged
from genbench.training.adversarial import AdversarialConfig, AdversarialTrainer
from genbench.training.autoencoder import AutoencoderTrainer, initialise_autoencoder
from genbench.training.eps import EpsConfig, EpsTrainer

CPU = torch.device("cpu")


def _adversarial(**settings) -> AdversarialTrainer:
    G, D = _nets()
    cfg = AdversarialConfig(**{"epochs": 2, "batch_size": 8, "ema_decay": 0.9, "lazy_reg": 1,
                               "seed": 0, **settings})
    return AdversarialTrainer(G, D, ddgan_schedule(2), cfg, CPU)


def _eps(**settings) -> EpsTrainer:
    torch.manual_seed(0)
    net = Denoiser(ncsnpp(in_channels=1, resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1,
                          attn_resolutions=[], z_dim=0, dropout=0.0), output="eps", z_dim=0)
    cfg = EpsConfig(**{"epochs": 1, "batch_size": 8, "warmup": 0, "ema_decay": 0.9,
                       "seed": 0, **settings})
    return EpsTrainer(net, linear_schedule(), cfg, CPU)


def _autoencoder(**settings) -> AutoencoderTrainer:
    """A tiny KL autoencoder whose PatchGAN (and the adaptive weight) is on from the first step."""
    space = registry.create("latent", "kl", image_channels=1, block_out_channels=[8, 16],
                            layers_per_block=1, latent_channels=4, attn_levels=[],
                            norm_num_groups=4, batch_size=8, lr=2e-3, disc_layers=1,
                            disc_channels=8, hflip=False, disc_start=0, kl_weight=1e-3,
                            **settings)
    initialise_autoencoder(space)
    return AutoencoderTrainer(space.autoencoder, 1, space.training, CPU, seed=space.seed)


def _x() -> torch.Tensor:
    return torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1


def _steps(trainer, n: int = 2) -> list[dict[str, float]]:
    return [trainer.train_step(_x(), 0) for _ in range(n)]


def _weights(trainer) -> dict[str, torch.Tensor]:
    return {f"{m}.{k}": v.detach().clone() for m, mod in trainer.modules().items()
            for k, v in mod.state_dict().items() if v.is_floating_point()}


def _max_difference(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("make", [_adversarial, _eps, _autoencoder],
                         ids=["adversarial", "eps", "autoencoder"])
def test_bf16_steps_run_and_differ_slightly_from_fp32(make):
    fp32, bf16 = make(), make(precision="bf16")
    losses32, losses16 = _steps(fp32), _steps(bf16)
    w32, w16 = _weights(fp32), _weights(bf16)
    assert all(math.isfinite(v) for step in losses16 for v in step.values())
    assert all(torch.isfinite(v).all() for v in w16.values())
    assert all(v.dtype == torch.float32 for v in w16.values())  # weights stay float32
    difference = _max_difference(w32, w16)
    # bf16 rounds the forward passes (8 bits of mantissa): near fp32 after two steps, not equal
    assert 0 < difference < 0.05, difference
    assert losses16[0].keys() == losses32[0].keys()
    assert abs(losses16[0][next(iter(losses16[0]))] - losses32[0][next(iter(losses32[0]))]) < 0.05


def test_fp16_adversarial_with_r1_uses_a_loss_scaler():
    """fp16 with R1 on every step: the scaler takes R1's gradient at its scale; the steps run,
    log ``fp16_skipped``, and the scaler's state goes into the checkpointed state and back."""
    trainer = _adversarial(precision="fp16")
    assert trainer.amp.scaler is not None
    losses = _steps(trainer, 3)
    assert all("fp16_skipped" in step and "r1" in step for step in losses)
    assert all(math.isfinite(v) for step in losses for v in step.values())
    state = trainer.state()
    assert state["scaler"]["scale"] == trainer.amp.scaler.get_scale()
    other = _adversarial(precision="fp16")
    other.load_state(copy.deepcopy(state))
    assert other.amp.scaler.state_dict() == trainer.amp.scaler.state_dict()
    fp32 = _adversarial()
    _steps(fp32, 3)
    if not any(step["fp16_skipped"] for step in losses):  # all applied: close to fp32
        assert _max_difference(_weights(fp32), _weights(trainer)) < 0.05


def test_fp16_r1_gradient_is_unscaled():
    """R1 under fp16 is R1 in fp32 up to fp16 rounding, not times the loss scale squared."""
    from genbench.training.adversarial import StepDraws, _losses_d

    trainer = _adversarial(precision="fp16")
    # at the initial 2^16 the output's own gradient overflows fp16 (max 65504): the scaler skips
    # that step and halves the scale; this checks a scale that fits
    trainer.amp.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    x0 = _x()
    draws = StepDraws.draw(2, x0, trainer.G.z_dim, torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.float16):
        r1_16 = _losses_d(trainer.G, trainer.D, trainer.sched, x0, trainer.cfg, 0, draws.d,
                          amp=trainer.amp)["r1"]
    r1_32 = _losses_d(trainer.G, trainer.D, trainer.sched, x0, trainer.cfg, 0, draws.d)["r1"]
    assert trainer.amp.scaler.get_scale() == 1024.0
    r1_16, r1_32 = float(r1_16.detach()), float(r1_32.detach())
    assert r1_32 > 0
    # this small D's outputs are ~1e-7, where fp16 keeps few bits: the two agree to a factor
    # well inside 2, while a penalty left at the scale would be 1024^2 = 1e6 times larger
    assert 0.5 < r1_16 / r1_32 < 2, (r1_16, r1_32)


def test_skipped_fp16_step_is_logged_not_diverged():
    """A skipped step is told by the scaler lowering its scale; values taken at the scale that
    overflowed are logged as 0, the scale-free losses as they are."""
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    assert logged(None, {"r1": math.inf}) == {"r1": math.inf}
    before = 1024.0
    scaler.scale(torch.ones(()))  # the scaler's first use in a step
    scaler.update(512.0)  # what update() does after a step with non-finite gradients
    assert logged(scaler, {"d_real": 0.7, "r1": math.inf}, before) == {
        "d_real": 0.7, "r1": 0.0, "fp16_skipped": 1.0}
    applied = scaler.get_scale()
    assert logged(scaler, {"loss": 0.5, "grad_norm": 2.0}, applied) == {
        "loss": 0.5, "grad_norm": 2.0, "fp16_skipped": 0.0}
    # a loss that is not scaled stays as it is, so a real divergence is still caught
    assert math.isnan(logged(scaler, {"loss": math.nan, "grad_norm": 1.0}, applied)["loss"])


def test_fp16_steps_skipped_by_the_scaler_are_logged():
    """At the initial scale 2^16 this tiny eps network's gradients overflow fp16: the scaler
    skips the step and halves the scale, and the log says so; once the scale fits, steps apply."""
    trainer = _eps(precision="fp16")
    scales, losses = [], []
    for _ in range(4):
        losses.append(trainer.train_step(_x(), 0))
        scales.append(trainer.amp.scaler.get_scale())
    previous = [2.0 ** 16] + scales[:-1]
    assert [s["fp16_skipped"] for s in losses] == [float(s < p) for s, p in zip(scales, previous)]
    assert all(math.isfinite(v) for step in losses for v in step.values())


def test_fp16_autoencoder_step_with_adaptive_weight():
    """latent.precision=fp16: one scaler for the autoencoder and PatchGAN optimisers, the
    adaptive weight (VQGAN Eq. 7) from gradients of the scaled losses divided by the scale,
    i.e. the fp32 weight up to fp16 rounding; the scaler's state is checkpointed."""
    fp16, fp32 = _autoencoder(precision="fp16"), _autoencoder()
    fp16.amp.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    step16, step32 = fp16.train_step(_x()), fp32.train_step(_x())
    assert {"d", "g", "d_weight", "fp16_skipped"} <= step16.keys()
    assert all(math.isfinite(v) for v in step16.values())
    assert step16["fp16_skipped"] == 0.0 and step32["d_weight"] > 0
    # the weight is a ratio of gradient norms: the scale (256) cancels
    assert 0.8 < step16["d_weight"] / step32["d_weight"] < 1.25, (step16, step32)
    assert fp16.state()["scaler"]["scale"] == fp16.amp.scaler.get_scale()
    other = _autoencoder(precision="fp16")
    other.load_state(copy.deepcopy(fp16.state()))
    assert other.amp.scaler.state_dict() == fp16.amp.scaler.state_dict()


def test_fp16_eps_step_unscales_before_clipping():
    trainer = _eps(precision="fp16", grad_clip=1.0)
    losses = _steps(trainer, 2)
    assert all(math.isfinite(v) for step in losses for v in step.values())
    applied = [s for s in losses if not s["fp16_skipped"]]
    fp32 = _eps(grad_clip=1.0)
    reference = _steps(fp32, 2)
    for step, ref in zip(losses, reference):  # the norm of the true gradient, not the scaled
        if not step["fp16_skipped"]:
            assert abs(step["grad_norm"] - ref["grad_norm"]) < 0.05 * ref["grad_norm"]
    assert applied or losses  # (a skipped first step is allowed: the scale starts at 2^16)


def test_settings_are_checked():
    with pytest.raises(UserError, match=r"train.precision='fp8'; use one of fp32, bf16, fp16"):
        AdversarialConfig(precision="fp8")
    with pytest.raises(UserError, match="train.precision"):
        EpsConfig(precision="half")
    with pytest.raises(UserError, match=r"latent.precision='half'; use one of"):
        _autoencoder(precision="half")
    from genbench.config import compose_plain
    from genbench.schema import validate

    cfg = compose_plain(["train.precision=fp8"])
    with pytest.raises(UserError, match="train.precision") as err:
        validate(cfg)
    assert "\n" not in str(err.value)
    validate(compose_plain(["train.precision=bf16", "train.compile=true"]))
    # the latent factory's own arguments (its value is checked when the space is built, above)
    validate(compose_plain(["latent=kl_tiny", "latent.precision=bf16", "latent.compile=true"]))


def test_cache_key_changes_only_off_the_defaults():
    def payload(**settings):
        return training_payload({"seed": 0}, {"epochs": 1, **settings}, {}, {}, {}, {},
                                "adversarial")

    assert payload() == payload(precision="fp32") == payload(compile=False)
    assert payload(precision="bf16") != payload()
    assert payload(compile=True) != payload()
    assert payload(precision="bf16")["train"]["precision"] == "bf16"
    # the autoencoder's key likewise (autoencoders fitted before keep theirs)
    from genbench.latents.autoencoder import AutoencoderTrainingConfig as AE

    assert AE().cache_key() == AE(precision="fp32", compile=False).cache_key()
    assert "precision" not in AE().cache_key() and "compile" not in AE().cache_key()
    assert AE(precision="bf16").cache_key()["precision"] == "bf16"
    assert AE(compile=True).cache_key() != AE().cache_key()


def test_training_info_records_precision_and_compile(tmp_path):
    """The cell's training section (train_or_load's info) says how it was trained."""
    from genbench.config import compose_plain
    from genbench.harness.artifacts import ModelCache
    from genbench.harness.build import build_components
    from genbench.harness.train import train_or_load

    cfg = compose_plain(["backbone=ncsnpp_tiny", "train=tiny", "train.batch_size=16",
                         "train.budget=images:16", "train.precision=bf16"])
    comps = build_components(cfg)
    _, info = train_or_load(cfg, comps, ModelCache(tmp_path), CPU, progress=False)
    assert info["source"] == "trained"
    assert info["precision"] == "bf16" and info["compile"] is False
    meta = ModelCache(tmp_path).meta(info["key"])
    assert meta["training"]["precision"] == "bf16"
    assert meta["payload"]["train"]["precision"] == "bf16"


@pytest.mark.slow
def test_compiled_eps_step_equals_eager():
    """train.compile (slow: ~4 min of inductor compilation on a busy 2-core CPU): the compiled
    forward gives the eager step's weights, and
    the trainer's modules (EMA, checkpoints) stay the plain ones."""
    eager, fast = _eps(), _eps(compile=True)
    assert fast.net_fwd is not fast.net and fast.modules()["net"] is fast.net
    _steps(eager, 1)
    _steps(fast, 1)
    assert _max_difference(_weights(eager), _weights(fast)) < 1e-5


def test_compiled_autoencoder_step_equals_eager(monkeypatch):
    """latent.compile: the autoencoder's training forward and the PatchGAN go through
    torch.compile; the adaptive weight's torch.autograd.grad runs through the compiled graphs
    (AOTAutograd's backward; the aot_eager backend keeps the test fast on a CPU, inductor only
    generates the kernels) and the step equals the eager one."""
    import functools

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    eager, fast = _autoencoder(), _autoencoder(compile=True)
    assert fast.ae_fwd != fast.ae.training_forward and fast.D_fwd is not fast.D
    assert fast.modules() == {"autoencoder": fast.ae, "discriminator": fast.D}
    steps = [(eager.train_step(_x()), fast.train_step(_x())) for _ in range(2)]
    for a, b in steps:
        assert a.keys() == b.keys() and abs(a["d_weight"] - b["d_weight"]) < 1e-4 * a["d_weight"]
    assert _max_difference(_weights(eager), _weights(fast)) < 1e-5


def test_autoencoder_fit_records_precision(tmp_path):
    """The fitted autoencoder's info (the cell's latent training section) says how it was
    trained, and a bf16 fit is another cache entry than the fp32 one."""
    from genbench.training.autoencoder import fit_autoencoder

    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    infos = []
    for precision in ("fp32", "bf16"):
        space = registry.create("latent", "kl", image_channels=1, block_out_channels=[8, 16],
                                layers_per_block=1, latent_channels=4, attn_levels=[],
                                norm_num_groups=4, batch_size=8, steps=2, disc_layers=1,
                                disc_channels=8, perceptual_weight=0.0, precision=precision)
        infos.append(fit_autoencoder(space, images, cache_dir=tmp_path, progress=False))
    assert [i["precision"] for i in infos] == ["fp32", "bf16"]
    assert infos[0]["compile"] is infos[1]["compile"] is False
    assert infos[0]["key"] != infos[1]["key"] and infos[1]["source"] == "trained"
