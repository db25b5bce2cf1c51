"""Training-compute budgets (train.budget), the compute a run consumed, and the report's figure."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import TINY

from genbench import registry
from genbench.backbones.denoiser import Denoiser
from genbench.backbones.ncsnpp import ncsnpp
from genbench.diffusion.ddgan import ddgan_schedule
from genbench.diffusion.gaussian import linear_schedule
from genbench.errors import UserError
from genbench.metrics.cost import measure_flops
from genbench.schema import check_train
from genbench.training.adversarial import AdversarialConfig, AdversarialTrainer
from genbench.training.budget import (
    Budget,
    Consumed,
    StepCost,
    budget_steps,
    measure_step_cost,
    parse_budget,
    step_cost_of,
)
from genbench.training.eps import EpsConfig, EpsTrainer
from genbench.training.loop import CONSUMED, train
from genbench.training.seeding import seeded_global_rng


def _nets():
    torch.manual_seed(0)
    G = ncsnpp(in_channels=1, resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1,
               attn_resolutions=[], z_dim=4, z_emb_dim=16, n_mlp=1)
    torch.manual_seed(1)
    D = registry.create("discriminator", "small", in_channels=1, ngf=4, t_emb_dim=8, num_layers=3)
    return G, D


def _settings(**overrides) -> AdversarialConfig:
    return AdversarialConfig(**{"epochs": 5, "batch_size": 8, "ema_decay": 0.9, "lazy_reg": 3,
                                "ckpt_every": 4, "seed": 0, **overrides})


def _trainer(cfg: AdversarialConfig, nets=None, copies: bool = False) -> AdversarialTrainer:
    G, D = nets or _nets()
    if copies:
        G, D = copy.deepcopy(G), copy.deepcopy(D)
    return AdversarialTrainer(G, D, ddgan_schedule(2), cfg, torch.device("cpu"))


def _images(n=24):
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)


def _batch(n=8):
    return _images(n).float() / 127.5 - 1


# --------------------------------------------------------------------------- syntax


@pytest.mark.parametrize("text, kind, amount", [
    ("images:50000", "images", 50000.0), ("macs:1.5e12", "macs", 1.5e12),
    ("seconds:2.5", "seconds", 2.5), (" macs : 10 ", "macs", 10.0)])
def test_budget_syntax(text, kind, amount):
    assert parse_budget(text) == Budget(kind, amount)
    assert parse_budget(None) is None


@pytest.mark.parametrize("text, said", [
    ("flops:10", "unknown budget kind 'flops'"), ("images:-3", "finite number > 0"),
    ("images:0", "finite number > 0"), ("seconds:nan", "finite number > 0"),
    ("images:ten", "'ten' is not a number"), ("images", "is not a budget"),
    ("images:1:2", "is not a budget"), ("macs:2.5", "whole number"), (5, "is not a budget")])
def test_bad_budget_is_one_user_error(text, said):
    with pytest.raises(UserError, match=said) as caught:
        parse_budget(text)
    assert "\n" not in str(caught.value) and "train.budget" in str(caught.value)


def test_schema_checks_the_budget_before_training():
    check_train({"epochs": 1, "budget": "images:64", "eps": {"budget": "macs:100"}})
    with pytest.raises(UserError, match="train.adversarial.budget"):
        check_train({"epochs": 1, "adversarial": {"budget": "seconds:-1"}})
    with pytest.raises(UserError, match="train.budget must be a string or null"):
        check_train({"budget": 5})


def test_budget_steps_is_the_first_step_boundary_at_the_budget():
    cost = StepCost(base=10, extra=5, every=3)  # steps 0, 3, 6, ... cost 15
    assert [cost.of(s) for s in range(7)] == [15, 10, 10, 15, 10, 10, 15]
    assert cost.total(7) == sum(cost.of(s) for s in range(7)) == 85
    for amount in range(1, 200):
        n = budget_steps(Budget("macs", amount), 8, cost)
        assert cost.total(n) >= amount > cost.total(n - 1)
    later = StepCost(base=10, later=7, later_from=4)  # an autoencoder's D from step 4
    assert [later.of(s) for s in range(6)] == [10, 10, 10, 10, 17, 17]
    assert later.total(6) == 74 and budget_steps(Budget("macs", 57), 8, later) == 5
    assert budget_steps(Budget("images", 64), 8, None) == 8
    assert budget_steps(Budget("images", 65), 8, None) == 9
    assert budget_steps(Budget("seconds", 3), 8, cost) is None


# --------------------------------------------------------------------------- MACs of a step


def test_step_cost_counts_a_real_training_step_forward_and_backward():
    """The probe counts on copies exactly what the real trainer's step runs, R1 steps cost more
    (double backward), and a step costs more than G's and D's forwards alone."""
    cfg = _settings()
    nets = _nets()
    x = _batch()
    macs = measure_step_cost(lambda: _trainer(cfg, nets, copies=True), x, cfg.cost_probes())
    assert set(macs) == {"r1", "plain"} and macs["r1"] > macs["plain"] > 0
    real = _trainer(cfg, nets)
    before = {k: v.clone() for k, v in real.G.state_dict().items()}
    with seeded_global_rng(0, "global", 0):
        counted = measure_flops(lambda: real.train_step(x, 0), per_module=False).macs
    assert counted == macs["r1"]  # step 0 is a lazy R1 step
    assert any(not torch.equal(before[k], v) for k, v in real.G.state_dict().items())
    G, D = nets
    k = torch.zeros(8, dtype=torch.long)
    forwards = (measure_flops(lambda: G(x, k, torch.zeros(8, G.z_dim))).macs
                + measure_flops(lambda: D(x, k, x)).macs)
    assert macs["plain"] > 2 * forwards  # G fwd x2, D fwd x3, and their backward passes
    eps_cfg = EpsConfig(epochs=1, batch_size=8, warmup=0)
    net = Denoiser(ncsnpp(in_channels=1, resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1,
                          attn_resolutions=[], z_dim=0), output="eps", z_dim=0)
    (eps,) = measure_step_cost(
        lambda: EpsTrainer(copy.deepcopy(net), linear_schedule(10), eps_cfg,
                           torch.device("cpu")), x, eps_cfg.cost_probes()).values()
    forward = measure_flops(lambda: net(x, k, None)).macs
    assert 2 * forward < eps <= 3 * forward  # forward + backward (input and weight grads)


# --------------------------------------------------------------------------- the loop


def _cost(cfg: AdversarialConfig) -> StepCost:
    nets = _nets()
    macs = measure_step_cost(lambda: _trainer(cfg, nets, copies=True), _batch(),
                             cfg.cost_probes())
    return step_cost_of(macs, cfg.lazy_reg)


def test_images_budget_stops_at_the_right_step(tmp_path):
    cfg = _settings(budget="images:60")  # 60 / 8 -> the 8th step reaches it (64 images)
    trainer, consumed = _trainer(cfg), Consumed()
    assert train(trainer, _images(), tmp_path / "c", cfg.loop(), progress=False,
                 consumed=consumed)
    assert trainer.step == 8 and consumed.steps == 8 and consumed.images == 64
    assert consumed.macs is None and consumed.seconds > 0  # no cost given: MACs unknown
    saved = json.loads((tmp_path / "c" / "state.json").read_text())["state"][CONSUMED]
    assert saved["images"] == 64 and saved["steps"] == 8


def test_macs_budget_matches_per_step_macs_times_steps(tmp_path):
    cfg = _settings(lazy_reg=3)
    cost = _cost(cfg)
    amount = cost.total(5) + 1  # reached by the 6th step, not the 5th
    cfg = _settings(lazy_reg=3, budget=f"macs:{amount}")
    trainer, consumed = _trainer(cfg), Consumed()
    train(trainer, _images(), tmp_path / "c", cfg.loop(), progress=False, cost=cost,
          consumed=consumed)
    assert trainer.step == 6 == consumed.steps
    r1_steps = len([s for s in range(6) if s % 3 == 0])  # steps 0 and 3
    assert consumed.macs == r1_steps * (cost.base + cost.extra) + (6 - r1_steps) * cost.base
    assert consumed.macs >= amount > cost.total(5)


def test_resume_after_interruption_gives_the_same_steps_weights_and_compute(tmp_path):
    cfg = _settings(budget="images:100", hflip=True)  # 13 steps, over the 3-step epochs
    cost = _cost(cfg)
    full, done = _trainer(cfg), Consumed()
    train(full, _images(), tmp_path / "a", cfg.loop(), progress=False, cost=cost, consumed=done)
    part = _trainer(cfg)
    assert not train(part, _images(), tmp_path / "b", cfg.loop(), progress=False, cost=cost,
                     stop_after=6, consumed=Consumed())
    torch.manual_seed(123)
    resumed, again = _trainer(cfg), Consumed()
    assert train(resumed, _images(), tmp_path / "b", cfg.loop(), progress=False, cost=cost,
                 consumed=again)
    assert full.step == resumed.step == 13
    for name in ("G", "G_ema", "D"):
        for (k, a), b in zip(full.modules()[name].state_dict().items(),
                             resumed.modules()[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"
    assert (again.images, again.steps, again.macs) == (done.images, done.steps, done.macs)
    assert again.macs == cost.total(13) and again.seconds > 0


def test_seconds_budget_stops_when_the_device_seconds_reach_it(tmp_path):
    cfg = _settings(budget="seconds:1e-9", epochs=3)  # any step takes longer
    trainer, consumed = _trainer(cfg), Consumed()
    train(trainer, _images(), tmp_path / "c", cfg.loop(), progress=False, consumed=consumed)
    assert trainer.step == 1 and consumed.seconds >= 1e-9


# --------------------------------------------------------------------------- end to end


def test_budget_run_records_consumed_compute_and_reports_it(run_cli, tmp_path):
    results = tmp_path / "r"
    result = run_cli("run", *TINY, f"results_dir={results}", "train.budget=images:100")
    assert result.returncode == 0, result.stderr[-3000:]
    (record_path,) = results.glob("default/*/result.json")
    training = json.loads(record_path.read_text())["training"]
    assert training["budget"] == "images:100" and training["steps"] == 4  # ceil(100 / 32)
    consumed, step = training["consumed"], training["step_macs"]
    assert consumed["images"] == 128 and consumed["steps"] == 4 and consumed["seconds"] > 0
    assert consumed["macs"] == StepCost(**step).total(4) and step["every"] == 4  # lazy_reg 4
    meta = json.loads((Path(training["folder"]) / "meta.json").read_text())
    assert meta["training"]["consumed"] == consumed
    cached = json.loads((Path(training["folder"]) / "step_cost.json").read_text())
    assert cached["macs"]["plain"] == step["base"]
    page = (results / "default" / "report.html").read_text()
    assert "training MACs consumed" in page and "train.budget=images:100" in page
    table = (results / "default" / "report.csv").read_text().splitlines()
    assert "train TMACs" in table[0] and ",128,4," in table[1]


def test_bad_budget_on_the_command_line_exits_2(run_cli, tmp_path):
    result = run_cli("run", *TINY, f"results_dir={tmp_path / 'r'}", "train.budget=epochs:3")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("genbench: error: train.budget='epochs:3': unknown budget kind")
    assert not (tmp_path / "r").exists()


def test_no_budget_keeps_the_model_keys_and_cell_names_of_before():
    """The presets' ``budget: null`` names the same models and cells as before budgets existed
    (a cache of trained models stays valid); a budget makes another model and cell."""
    from genbench.harness.artifacts import training_payload
    from genbench.harness.cell import cell_name

    def payload(train):
        return training_payload({"seed": 0}, train, {}, {}, {}, {}, "eps")

    assert payload({"epochs": 3, "budget": None}) == payload({"epochs": 3})
    assert payload({"epochs": 3, "budget": "images:64"}) != payload({"epochs": 3})
    cfg = {"dataset": {"name": "digits"}, "latent": {"name": "pixel"},
           "backbone": {"name": "ncsnpp"}, "sampler": {"name": "ddim", "steps": 4},
           "train": {"epochs": 3}}
    with_null = {**cfg, "train": {"epochs": 3, "budget": None}}
    with_budget = {**cfg, "train": {"epochs": 3, "budget": "macs:10"}}
    assert cell_name(with_null) == cell_name(cfg) != cell_name(with_budget)
