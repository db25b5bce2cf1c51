"""Data-parallel training on torch.distributed (gloo, 2 CPU processes).

A step at world size 2 with global batch B equals the one-process step with batch B (adversarial
with its R1 step, minibatch-stddev groups and EMA; eps with clipping and dropout; the
autoencoder, with dropout); only rank
0 writes checkpoints; a checkpoint written at world size 2 resumes at world size 1 to the weights
of an uninterrupted run; a global batch that does not split is a one-line error. One spawn of two
processes runs every distributed scenario (module fixture); the tests compare its results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from gloo_group import join, spawn

from genbench import distributed, registry
from genbench.backbones.denoiser import Denoiser
from genbench.backbones.ncsnpp import ncsnpp
from genbench.diffusion.ddgan import ddgan_schedule
from genbench.diffusion.gaussian import linear_schedule
from genbench.distributed import Context, batch_shard
from genbench.errors import UserError
from genbench.training import loop as loop_module
from genbench.training.adversarial import AdversarialConfig, AdversarialTrainer
from genbench.training.autoencoder import AutoencoderTrainer, initialise_autoencoder
from genbench.training.eps import EpsConfig, EpsTrainer
from genbench.training.loop import train

AE = dict(image_channels=1, block_out_channels=[8, 16], layers_per_block=1, latent_channels=4,
          attn_levels=[], norm_num_groups=4, batch_size=8, lr=2e-3, disc_layers=1,
          disc_channels=8, hflip=True, ckpt_every=10, kl_weight=1e-3, seed=3, dropout=0.1)


def _adversarial(**overrides) -> AdversarialTrainer:
    torch.manual_seed(0)
    G = ncsnpp(in_channels=1, resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1,
               attn_resolutions=[], z_dim=4, z_emb_dim=16, n_mlp=1)
    torch.manual_seed(1)
    D = registry.create("discriminator", "small", in_channels=1, ngf=4, t_emb_dim=8, num_layers=3)
    G, D = G.double(), D.double()
    cfg = AdversarialConfig(**{"epochs": 2, "batch_size": 8, "ema_decay": 0.9, "lazy_reg": 2,
                               "ckpt_every": 100, "seed": 0, "hflip": True,
                               "rec_loss": "weighted", **overrides})
    return AdversarialTrainer(G, D, ddgan_schedule(2), cfg, torch.device("cpu"))


def _eps() -> EpsTrainer:
    torch.manual_seed(0)
    net = Denoiser(ncsnpp(in_channels=1, resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1,
                          attn_resolutions=[], z_dim=0, dropout=0.1), output="eps", z_dim=0)
    net = net.double()
    cfg = EpsConfig(epochs=1, batch_size=8, warmup=0, ema_decay=0.9, grad_clip=0.05,
                    ckpt_every=100, seed=0)
    return EpsTrainer(net, linear_schedule(), cfg, torch.device("cpu"))


def _autoencoder(disc_start: int) -> AutoencoderTrainer:
    space = registry.create("latent", "kl", **{**AE, "steps": 2, "disc_start": disc_start})
    initialise_autoencoder(space)
    space.autoencoder.double()
    trainer = AutoencoderTrainer(space.autoencoder, 1, space.training, torch.device("cpu"),
                                 seed=space.seed)
    trainer.D.double()
    return trainer


def _float64(x: torch.Tensor) -> torch.Tensor:
    """Train in float64: the comparison then sees the sharding, not float32 rounding that Adam's
    first steps amplify where a gradient's terms cancel to nearly zero."""
    return x.double()


def _images(n: int, side: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (n, 1, side, side), generator=g, dtype=torch.uint8)


def _states(trainer) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().clone() for name, m in trainer.modules().items()
            for k, v in m.state_dict().items()}


def _loop(trainer):
    return trainer.loop() if isinstance(trainer, AutoencoderTrainer) else trainer.cfg.loop()


def _scenarios(root: str) -> dict[str, tuple]:
    """name -> (trainer, images, checkpoint folder, stop_after): run at every world size."""
    return {
        "adversarial": (_adversarial(), _images(16, 8), f"{root}/adv", None),
        "eps": (_eps(), _images(16, 8), f"{root}/eps", None),
        "ae": (_autoencoder(disc_start=10), _images(16, 16), f"{root}/ae", None),
        "ae_disc": (_autoencoder(disc_start=0), _images(16, 16), f"{root}/ae_disc", None),
        "part": (_adversarial(), _images(16, 8), f"{root}/resume", 3),  # stops mid-epoch 1
    }


def _worker(rank: int, world: int, port: int, root: str) -> None:
    join(rank, world, port)
    writes: list[str] = []
    real_save = loop_module.save_checkpoint

    def counting_save(folder, *args, **kwargs):
        writes.append(str(folder))
        return real_save(folder, *args, **kwargs)

    loop_module.save_checkpoint = counting_save
    out: dict[str, torch.Tensor] = {}
    history = {}
    for name, (trainer, images, ckpt, stop) in _scenarios(root).items():
        train(trainer, images, Path(ckpt), _loop(trainer), progress=False, stop_after=stop,
              encode=_float64)
        out.update({f"{name}/{k}": v for k, v in _states(trainer).items()})
        history[name] = trainer.history
    torch.save(out, f"{root}/rank{rank}.pt")
    with open(f"{root}/rank{rank}.json", "w") as f:
        json.dump({"writes": writes, "history": history}, f)
    distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    spawn(_worker, 2, str(root))
    ranks = [torch.load(root / f"rank{r}.pt", weights_only=True) for r in range(2)]
    logs = [json.loads((root / f"rank{r}.json").read_text()) for r in range(2)]
    return root, ranks, logs


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    torch.set_num_threads(1)
    out, history = {}, {}
    for name, (trainer, images, _ckpt, stop) in _scenarios(str(root)).items():
        train(trainer, images, root / name, _loop(trainer), progress=False, stop_after=stop,
              encode=_float64)
        out.update({f"{name}/{k}": v for k, v in _states(trainer).items()})
        history[name] = trainer.history
    return out, history


def _assert_close(a: dict, b: dict, prefix: str, atol: float = 1e-7) -> None:
    keys = [k for k in a if k.startswith(prefix + "/")]
    assert keys and keys == [k for k in b if k.startswith(prefix + "/")]
    for k in keys:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-6, msg=k)
        else:
            assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("scenario", ["adversarial", "eps", "ae"])
def test_world_size_two_equals_one_process(scenario, two_ranks, one_rank):
    """Two epochs of adversarial training (R1 on lazy steps, stddev groups, weighted learning,
    cosine decay, EMA); eps with an active gradient clip and dropout 0.1 (DDPM's CIFAR-10
    rate); the autoencoder before ``disc_start``, with dropout in its diffusers blocks."""
    _, ranks, logs = two_ranks
    single, history = one_rank
    for rank in ranks:
        _assert_close(rank, single, scenario)
    for log in logs:
        got = log["history"][scenario]
        assert len(got) == len(history[scenario])
        for a, b in zip(got, history[scenario]):
            assert a.keys() == b.keys()
            assert all(abs(a[k] - b[k]) <= 1e-9 * max(1.0, abs(b[k])) for k in a), (a, b)
    if scenario == "adversarial":
        assert "r1" in history[scenario][0] and "r1" not in history[scenario][1]


@pytest.mark.parametrize("scenario", ["adversarial", "eps", "ae"])
def test_perturbed_weight_is_detected(scenario, two_ranks, one_rank):
    """The comparison can fail: one weight of the one-process result moved by 1e-3."""
    _, ranks, _ = two_ranks
    single = dict(one_rank[0])
    key = next(k for k in single if k.startswith(scenario + "/") and "weight" in k)
    single[key] = single[key] + 1e-3
    with pytest.raises(AssertionError):
        _assert_close(ranks[0], single, scenario)


def test_discriminator_steps_keep_ranks_identical(two_ranks):
    """With the PatchGAN on (its BatchNorm sees each rank's rows) the ranks stay identical."""
    _, ranks, _ = two_ranks
    _assert_close(ranks[0], ranks[1], "ae_disc", atol=0)


def test_only_rank_zero_writes(two_ranks):
    root, _, logs = two_ranks
    assert logs[1]["writes"] == []
    assert sorted(logs[0]["writes"]) == sorted(
        str(root / d) for d in ("adv", "eps", "ae", "ae_disc", "resume"))
    assert (root / "adv").is_dir() and not list(root.glob("**/*.tmp*"))


def test_resume_from_world_size_two_at_world_size_one(two_ranks, one_rank):
    """The world-size-2 run stopped after 3 steps; finishing it in one process gives the
    weights of an uninterrupted one-process run."""
    root, _, _ = two_ranks
    single, _ = one_rank
    trainer = _adversarial()
    assert train(trainer, _images(16, 8), root / "resume", trainer.cfg.loop(), progress=False,
                 encode=_float64)
    assert trainer.step == 4
    resumed = {f"adversarial/{k}": v for k, v in _states(trainer).items()}
    _assert_close(resumed, single, "adversarial")


def test_global_batch_must_split_evenly():
    ctx = Context(rank=1, world_size=2)
    with pytest.raises(UserError, match=r"train.batch_size=6 .*multiple of 8") as err:
        batch_shard(ctx, 6, group=4)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="multiple of 2"):
        batch_shard(ctx, 7)
    # groups of 4 strided over 16 rows: rank 1 takes rows 2, 3 of every block of 4
    assert batch_shard(ctx, 16, group=4).positions.tolist() == [2, 3, 6, 7, 10, 11, 14, 15]
    assert batch_shard(Context(), 16) is None


def test_kl_posterior_draw_is_the_posterior_sample():
    """Drawing the KL posterior noise by hand (to slice it) keeps one process's values: the same
    as ``DiagonalGaussianDistribution.sample`` with the same generator, bit for bit."""
    space = registry.create("latent", "kl", **{**AE, "steps": 2, "dropout": 0.0})
    ae, x = space.autoencoder, torch.randn(2, 1, 16, 16)
    rec, _ = ae.training_forward(x, torch.Generator().manual_seed(1))
    posterior = ae.model.encode(x).latent_dist
    ref = ae.decode_latent(posterior.sample(generator=torch.Generator().manual_seed(1)))
    assert torch.equal(rec, ref)
    other, _ = ae.training_forward(x, torch.Generator().manual_seed(2))
    assert not torch.equal(rec, other)
