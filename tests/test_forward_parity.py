"""Forward parity with the official modules, and the official sampling random stream.

The fixtures were recorded by running the official code on the CPU (its CUDA op builds switched
off, so ``score_sde/op`` takes its native CPU paths) with small random weights; each folder's
README.md and meta.json name the repository, commit and settings:

* tests/fixtures/ncsnpp_forward_parity/: NVlabs/denoising-diffusion-gan
  ``score_sde/models/ncsnpp_generator_adagn.py`` ``NCSNpp`` (the DDGAN generator, tanh included)
  in two tiny layouts of the CIFAR-10 and the 256 px options;
* tests/fixtures/discriminator_parity/: the same repository's ``score_sde/models/discriminator.py``
  ``Discriminator_small`` and ``Discriminator_large``;
* tests/fixtures/uvit_parity/: baofff/U-ViT ``libs/uvit.py`` ``UViT`` (unconditional, the
  CIFAR-10 options and a variant with the time MLP and qkv biases), time input ``t * 999``;
* tests/fixtures/ddgan_sampling_parity/: ``test_ddgan.py``'s ``sample_from_model`` after
  ``torch.manual_seed(0)``, two batches of three, T = 4, with the tiny CIFAR-10 NCSN++ weights.

genbench's modules load the official state dicts with ``strict=True`` (same parameter names) and
must give the official outputs within 1e-5; a changed weight, input or setting must be detected.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genbench.backbones.denoiser import Denoiser
from genbench.backbones.discriminator import DiscriminatorLarge, DiscriminatorSmall
from genbench.backbones.ncsnpp import ncsnpp
from genbench.backbones.uvit import uvit
from genbench.data.base import to_uint8
from genbench.errors import UserError
from genbench.harness.generate import generate
from genbench.latents.pixel import PixelSpace
from genbench.samplers.ddgan import ddgan
from genbench.samplers.noise import OfficialStream, PerSampleRNG
from genbench.schema import check_eval

FIXTURES = Path(__file__).parent / "fixtures"
ATOL = 1e-5
DIRS = ("ncsnpp_forward_parity", "discriminator_parity", "uvit_parity", "ddgan_sampling_parity")


def meta(name: str) -> dict:
    return json.loads((FIXTURES / name / "meta.json").read_text())


def load(name: str, what: str) -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / name / f"{what}.safetensors")


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def perturbed(net: torch.nn.Module, key: str, delta: float = 1e-2) -> torch.nn.Module:
    """``net`` with ``delta`` added to the first element of parameter ``key`` (a state-dict
    name: a :class:`Denoiser` holds it under ``backbone.``)."""
    params = dict(net.named_parameters())
    with torch.no_grad():
        params.get(key, params.get(f"backbone.{key}")).view(-1)[0] += delta
    return net


@pytest.mark.parametrize("name", DIRS)
def test_fixtures_are_from_the_official_code_and_small(name):
    m = meta(name)
    assert m["official_repo"] in ("https://github.com/NVlabs/denoising-diffusion-gan",
                                  "https://github.com/baofff/U-ViT")
    assert len(m["official_commit"]) == 40
    assert (FIXTURES / name / "README.md").is_file()
    assert sum(f.stat().st_size for f in (FIXTURES / name).iterdir()) < 450_000


# --------------------------------------------------------------------------- NCSN++ (DDGAN G)

NCSNPP = meta("ncsnpp_forward_parity")["configs"]


def genbench_ncsnpp(config: str) -> Denoiser:
    """genbench's generator with the official run's settings (train_ddgan.py's argument names)
    and the official weights, loaded strictly."""
    a = NCSNPP[config]["args"]
    backbone = ncsnpp(
        in_channels=a["num_channels"], resolution=a["image_size"], nf=a["num_channels_dae"],
        ch_mult=a["ch_mult"], num_res_blocks=a["num_res_blocks"],
        attn_resolutions=a["attn_resolutions"], dropout=a["dropout"], z_dim=a["nz"],
        z_emb_dim=a["z_emb_dim"], n_mlp=a["n_mlp"], fir=a["fir"], fir_kernel=a["fir_kernel"],
        skip_rescale=a["skip_rescale"], resblock_type=a["resblock_type"],
        resamp_with_conv=a["resamp_with_conv"], progressive=a["progressive"],
        progressive_input=a["progressive_input"], progressive_combine=a["progressive_combine"],
        embedding_type=a["embedding_type"], fourier_scale=a["fourier_scale"])
    assert not a["not_use_tanh"] and a["centered"]  # the official tanh head, inputs in [-1, 1]
    net = Denoiser(backbone, output="x0", z_dim=a["nz"])
    net.load_state_dict(load("ncsnpp_forward_parity", f"{config}_weights"), strict=True)
    return net.eval()


@pytest.mark.parametrize("config", list(NCSNPP))
def test_ncsnpp_equals_the_official_generator(config):
    io = load("ncsnpp_forward_parity", f"{config}_io")
    net = genbench_ncsnpp(config)
    with torch.no_grad():
        out = net(io["x"], io["t"], io["z"])
    assert max_diff(out, io["out"]) <= ATOL
    assert float(io["out"].abs().mean()) > 0.05  # the redrawn zero-init weights: not trivial
    # every part counts: a changed weight in the attention block, another z, another step index
    attn = next(k for k in NCSNPP[config]["redrawn"] if k.endswith("NIN_3.W"))
    with torch.no_grad():
        assert max_diff(perturbed(genbench_ncsnpp(config), attn)(io["x"], io["t"], io["z"]),
                        io["out"]) > 10 * ATOL
        assert max_diff(net(io["x"], io["t"], io["z"].flip(0)), io["out"]) > 10 * ATOL
        assert max_diff(net(io["x"], io["t"].flip(0), io["z"]), io["out"]) > 10 * ATOL


# --------------------------------------------------------------------------- discriminators

DISCS = meta("discriminator_parity")["configs"]


def genbench_discriminator(kind: str) -> torch.nn.Module:
    m = DISCS[kind]
    cls = {"Discriminator_small": DiscriminatorSmall,
           "Discriminator_large": DiscriminatorLarge}[m["class"]]
    net = cls(m["nc"] // 2, ngf=m["ngf"], t_emb_dim=m["t_emb_dim"])  # official nc = 2C
    net.load_state_dict(load("discriminator_parity", f"{kind}_weights"), strict=True)
    return net.eval()


@pytest.mark.parametrize("kind", list(DISCS))
def test_discriminator_equals_the_official(kind):
    io = load("discriminator_parity", f"{kind}_io")
    expected = io["out"].squeeze(1)  # official [B, 1]; genbench's logits [B]
    net = genbench_discriminator(kind)
    with torch.no_grad():
        out = net(io["x_t"], io["t"], io["x_tp1"])  # train_ddgan.py: netD(x_t, t, x_tp1)
        assert max_diff(out, expected) <= ATOL
        assert float(expected.std()) > 1e-3  # the logits depend on the sample
        # the pair's order, the step and a weight are all seen
        assert max_diff(net(io["x_tp1"], io["t"], io["x_t"]), expected) > 10 * ATOL
        assert max_diff(net(io["x_t"], (io["t"] + 1) % 4, io["x_tp1"]), expected) > 10 * ATOL
        changed = perturbed(genbench_discriminator(kind), "end_linear.weight", 0.1)
        assert max_diff(changed(io["x_t"], io["t"], io["x_tp1"]), expected) > 10 * ATOL


def test_minibatch_stddev_groups_are_the_official_strided_ones():
    # Discriminator_small's fixture has 8 samples in two minibatch-stddev groups; the official
    # view(4, -1, ...) makes them strided, {0, 2, 4, 6} and {1, 3, 5, 7} (the parity above
    # already fails for contiguous groups). Moving samples between the groups changes the
    # logits; a permutation that keeps the groups only permutes them.
    io = load("discriminator_parity", "small_io")
    assert io["x_t"].shape[0] == 8
    net, expected = genbench_discriminator("small"), io["out"].squeeze(1)

    def logits(order):
        order = torch.tensor(order)
        with torch.no_grad():
            return net(io["x_t"][order], io["t"][order], io["x_tp1"][order]), expected[order]

    assert max_diff(*logits([1, 0, 3, 2, 5, 4, 7, 6])) <= ATOL  # groups swapped, kept
    assert max_diff(*logits([0, 4, 1, 5, 2, 6, 3, 7])) > 10 * ATOL  # groups mixed


# --------------------------------------------------------------------------- U-ViT

UVITS = meta("uvit_parity")["configs"]


def genbench_uvit(config: str, time_embedding: str = "uvit") -> torch.nn.Module:
    a = UVITS[config]["args"]
    assert a["num_classes"] == -1  # unconditional, as genbench's U-ViT
    net = uvit(in_channels=a["in_chans"], resolution=a["img_size"], patch_size=a["patch_size"],
               embed_dim=a["embed_dim"], depth=a["depth"], num_heads=a["num_heads"],
               mlp_ratio=a["mlp_ratio"], qkv_bias=a["qkv_bias"],
               mlp_time_embed=a["mlp_time_embed"], time_embedding=time_embedding)
    net.load_state_dict(load("uvit_parity", f"{config}_weights"), strict=True)
    return net.eval()


@pytest.mark.parametrize("config", list(UVITS))
def test_uvit_equals_the_official(config):
    io = load("uvit_parity", f"{config}_io")
    with torch.no_grad():
        out = genbench_uvit(config)(io["x"], io["t"])
        assert max_diff(out, io["out"]) <= ATOL
        assert float(io["out"].abs().mean()) > 0.05
        # genbench's default (NCSN++) time embedding is not the official one: detected
        assert max_diff(genbench_uvit(config, "ncsnpp")(io["x"], io["t"]), io["out"]) > 10 * ATOL
        changed = perturbed(genbench_uvit(config), "mid_block.attn.qkv.weight", 0.1)
        assert max_diff(changed(io["x"], io["t"]), io["out"]) > 10 * ATOL


def test_uvit_rejects_an_unknown_time_embedding():
    with pytest.raises(UserError, match="time_embedding"):
        uvit(in_channels=3, resolution=8, embed_dim=16, depth=2, num_heads=2,
             time_embedding="fourier")


# --------------------------------------------------------------------------- sampling stream

SAMPLING = meta("ddgan_sampling_parity")
OFFICIAL = load("ddgan_sampling_parity", "samples")


def sampling_setup():
    assert SAMPLING["ncsnpp"]["num_channels_dae"] == NCSNPP["cifar10"]["args"]["num_channels_dae"]
    assert not SAMPLING["use_geometric"]
    sampler = ddgan(steps=SAMPLING["num_timesteps"], beta_min=SAMPLING["beta_min"],
                    beta_max=SAMPLING["beta_max"])
    shape = tuple(OFFICIAL["batch0.x_T"].shape[1:])
    return genbench_ncsnpp("cifar10"), sampler, shape


def test_official_stream_gives_the_official_samples():
    net, sampler, shape = sampling_setup()
    b = SAMPLING["batch_size"]
    stream = OfficialStream(SAMPLING["seed"])
    for i in range(SAMPLING["batches"]):  # one stream over the batches, as the FID loop's
        x_T = stream.initial(b, *shape)
        assert torch.equal(x_T, OFFICIAL[f"batch{i}.x_T"])
        out = sampler.sample(net, x_T, stream.batch(b))
        assert max_diff(out, OFFICIAL[f"batch{i}.samples"]) <= ATOL, i
    # the samples are not the prediction of x_T alone: the draws matter
    assert float(OFFICIAL["batch1.samples"].abs().mean()) > 0.1


def test_other_streams_do_not_give_the_official_samples():
    net, sampler, shape = sampling_setup()
    b, expected = SAMPLING["batch_size"], OFFICIAL["batch0.samples"]
    # genbench's default per-sample streams
    rng = PerSampleRNG.for_range(SAMPLING["seed"], 0, b)
    assert max_diff(sampler.sample(net, rng.randn(*shape), rng), expected) > 10 * ATOL
    # the official x_T, but z and the noise from a fresh stream rather than after x_T
    stream = OfficialStream(SAMPLING["seed"])
    x_T = stream.initial(b, *shape)
    fresh = OfficialStream(SAMPLING["seed"]).batch(b)
    assert max_diff(sampler.sample(net, x_T, fresh), expected) > 10 * ATOL
    # the second batch from a restarted stream (the official loop does not reseed)
    restarted = OfficialStream(SAMPLING["seed"])
    out = sampler.sample(net, restarted.initial(b, *shape), restarted.batch(b))
    assert max_diff(out, OFFICIAL["batch1.samples"]) > 10 * ATOL


def test_harness_generate_with_eval_rng_official():
    net, sampler, shape = sampling_setup()
    b, n = SAMPLING["batch_size"], SAMPLING["batch_size"] * SAMPLING["batches"]
    common = dict(num_samples=n, batch_size=b, seed=SAMPLING["seed"],
                  device=torch.device("cpu"), progress=False)
    images = generate(net, PixelSpace(), sampler, shape, rng="official", **common)
    expected = to_uint8(torch.cat([OFFICIAL[f"batch{i}.samples"]
                                   for i in range(SAMPLING["batches"])]))
    # the float samples agree within 1e-5; a value that close to a rounding boundary may land
    # on the neighbouring level
    diff = (images.int() - expected.int()).abs()
    assert int(diff.max()) <= 1 and float((diff == 0).float().mean()) > 0.99
    per_sample = generate(net, PixelSpace(), sampler, shape, rng="per_sample", **common)
    assert float((per_sample.int() - expected.int()).abs().float().mean()) > 5
    with pytest.raises(UserError, match="eval.rng"):
        generate(net, PixelSpace(), sampler, shape, rng="global", **common)


def test_eval_rng_is_a_checked_setting():
    check_eval({"rng": "official"})
    check_eval({"rng": "per_sample"})
    with pytest.raises(UserError, match="rng"):
        check_eval({"rng": "official_order"})


def test_eval_rng_official_is_another_cell_and_the_default_keeps_the_old_names():
    from genbench.harness.cell import cell_name

    cfg = {"dataset": {"name": "digits"}, "latent": {"name": "pixel"},
           "backbone": {"name": "ncsnpp"}, "sampler": {"name": "ddgan", "steps": 4},
           "eval": {"seed": 42}}
    before = cell_name(cfg)  # a configuration from before eval.rng existed
    assert cell_name({**cfg, "eval": {"seed": 42, "rng": "per_sample"}}) == before
    assert cell_name({**cfg, "eval": {"seed": 42, "rng": "official"}}) != before
