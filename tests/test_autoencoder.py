"""KL and VQ autoencoder latent spaces: training, scale factor, caching, VQ decode, LPIPS, cost."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from genbench import registry
from genbench._io import json_hash
from genbench.backbones.patchgan import NLayerDiscriminator
from genbench.data.base import all_images, to_model_range
from genbench.errors import UserError
from genbench.latents.autoencoder import AutoencoderSpace
from genbench.latents.base import reconstruction_images
from genbench.metrics.cost import count_parameters, measure_flops
from genbench.training.autoencoder import (
    AutoencoderTrainer,
    fit_autoencoder,
    initialise_autoencoder,
)
from genbench.training.loop import train
from genbench.training.lpips import LPIPS, resolve_lpips

REPO = Path(__file__).resolve().parents[1]
TINY = dict(image_channels=1, block_out_channels=[8, 16], layers_per_block=1, latent_channels=4,
            attn_levels=[], norm_num_groups=4, batch_size=8, lr=2e-3, disc_layers=1,
            disc_channels=8, hflip=False, ckpt_every=10)
STEPS = 24


def _l1(space: AutoencoderSpace, x: torch.Tensor) -> float:
    ae = space.autoencoder.eval()
    with torch.no_grad():
        return float((ae.decode_latent(ae.encode_latent(x)).clamp(-1, 1) - x).abs().mean())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # These networks are tiny: on a busy 2-core machine two OpenMP threads spin against each
    # other and run 5-20x slower than one (measured); timing is not asserted, only runtime.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits16() -> torch.Tensor:
    dataset = registry.create("dataset", "digits", resolution=16, split="train", channels=1)
    return all_images(dataset, limit=256)[0]


def _fit(kind, images, cache, **overrides):
    space = registry.create("latent", kind, **{**TINY, "steps": STEPS, "disc_start": 16,
                                               **overrides})
    initialise_autoencoder(space)  # the initial weights fit_autoencoder trains from
    before = _l1(space, to_model_range(images[:64]))
    with pytest.MonkeyPatch.context() as mp:  # no LPIPS weights anywhere: the "missing" path
        mp.setenv("TORCH_HOME", str(cache / "torch_home"))
        mp.delenv("GENBENCH_WEIGHTS", raising=False)
        info = fit_autoencoder(space, images, cache_dir=cache, progress=False)
    return space, info, before


@pytest.fixture(scope="module")
def fitted_kl(digits16, tmp_path_factory):
    cache = tmp_path_factory.mktemp("kl")
    return (*_fit("kl", digits16, cache, kl_weight=0.0, dropout=0.1), cache)


@pytest.fixture(scope="module")
def fitted_vq(digits16, tmp_path_factory):
    cache = tmp_path_factory.mktemp("vq")
    return (*_fit("vq", digits16, cache, num_vq_embeddings=64), cache)


@pytest.mark.parametrize("which", ["fitted_kl", "fitted_vq"])
def test_training_reduces_reconstruction_error(which, request, digits16):
    space, info, before = request.getfixturevalue(which)[:3]
    after = _l1(space, to_model_range(digits16[:64]))
    assert info["source"] == "trained" and info["steps"] == STEPS
    assert after < 0.6 * before, (before, after)
    assert {"rec", "g", "d", "d_weight"} <= set(info["final_losses"])  # the PatchGAN took part


def test_kl_weight_zero_and_vq_terms_are_recorded(fitted_kl, fitted_vq):
    assert fitted_kl[0].training.kl_weight == 0.0 and "kl" in fitted_kl[1]["final_losses"]
    assert {"codebook", "commitment"} <= set(fitted_vq[1]["final_losses"])


@pytest.mark.parametrize("which", ["fitted_kl", "fitted_vq"])
def test_auto_scale_factor_puts_training_latents_in_unit_interval(which, request, digits16):
    space, info = request.getfixturevalue(which)[:2]
    x = to_model_range(digits16)
    with torch.no_grad():
        z = torch.cat([space.encode(x), space.encode(x.flip(-1))])  # denoiser training flips
    assert z.shape == (512, 4, 8, 8)
    assert z.abs().max() <= 1.0
    assert z.abs().max() > 0.99  # max |z| rounded up to 3 significant digits
    assert info["scale_factor"] == space.scale_factor >= info["latent_abs_max"]


def test_missing_lpips_weights_are_reported(fitted_kl):
    status = fitted_kl[1]["lpips"]
    assert status.startswith("missing: ") and "vgg16-397923af.pth" in status
    assert "latent.lpips_weights" in status


def test_second_fit_loads_from_cache_with_same_hash(fitted_kl, digits16):
    space, info, _, cache = fitted_kl
    again = registry.create("latent", "kl", **{**TINY, "steps": STEPS, "disc_start": 16,
                                               "kl_weight": 0.0, "dropout": 0.1})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(cache / "torch_home"))
        mp.delenv("GENBENCH_WEIGHTS", raising=False)
        info2 = fit_autoencoder(again, digits16, cache_dir=cache, progress=False)
    assert info2["source"] == "cache" and info2["key"] == info["key"]
    assert info2["scale_factor"] == info["scale_factor"]
    for a, b in zip(space.autoencoder.state_dict().values(),
                    again.autoencoder.state_dict().values()):
        assert torch.equal(a, b)
    assert again.identity() == space.identity()
    json.dumps(again.identity())
    assert again.identity()["artifact"] == info["key"]


def test_hash_changes_with_settings_and_data(digits16):
    base = dict(**TINY, steps=STEPS)

    def key(images=digits16, **overrides):
        space = registry.create("latent", "kl", **{**base, **overrides})
        return json_hash(space.artifact_payload(images, "missing"))

    reference = key()
    assert key() == reference
    assert key(ckpt_every=99) == reference  # not a training setting
    for overrides in ({"steps": STEPS + 1}, {"kl_weight": 0.5}, {"latent_channels": 3},
                      {"disc_start": 7}, {"seed": 1}, {"dropout": 0.1}):
        assert key(**overrides) != reference, overrides
    changed = digits16.clone()
    changed[0, 0, 0, 0] ^= 1
    assert key(images=changed) != reference


def test_fixed_scale_factor_is_checked_against_the_training_set(fitted_kl, digits16):
    _, info, _, cache = fitted_kl
    args = {**TINY, "steps": STEPS, "disc_start": 16, "kl_weight": 0.0, "dropout": 0.1}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(cache / "torch_home"))
        mp.delenv("GENBENCH_WEIGHTS", raising=False)
        small = registry.create("latent", "kl", scale_factor=info["latent_abs_max"] / 2, **args)
        with pytest.raises(UserError, match="scale_factor"):
            fit_autoencoder(small, digits16, cache_dir=cache, progress=False)  # loads, checks
        large = registry.create("latent", "kl", scale_factor=10 * info["latent_abs_max"], **args)
        info_large = fit_autoencoder(large, digits16, cache_dir=cache, progress=False)
        assert info_large["source"] == "cache"
    assert large.identity()["artifact"] == info["key"]  # a new scale reuses the autoencoder
    with pytest.raises(UserError):
        registry.create("latent", "kl", scale_factor=-1.0, **TINY)


def test_vq_decode_quantises(fitted_vq, digits16):
    space = fitted_vq[0]
    scale = space.scale_factor
    codes = space.autoencoder.model.quantize.embedding.weight

    def nearest(latent):  # the codes of scaled latents [N, C, H, W], as [N, C, H, W]
        flat = (latent * scale).permute(0, 2, 3, 1).reshape(-1, latent.shape[1])
        index = torch.cdist(flat, codes).argmin(1)
        shape = (latent.shape[0], latent.shape[2], latent.shape[3], -1)
        return index, codes[index].view(shape).permute(0, 3, 1, 2) / scale

    with torch.no_grad():
        z = space.encode(to_model_range(digits16[:8]))
        index, e = nearest(z)
        # halfway to its own code, a latent keeps that code (triangle inequality)
        nudged = z + 0.5 * (e - z)
        assert torch.equal(nearest(nudged)[0], index) and not torch.allclose(z, nudged)
        assert torch.equal(space.decode(z), space.decode(nudged))
        unquantised = space.autoencoder._decode_quantised(z * scale).clamp(-1, 1)
        assert not torch.allclose(space.decode(z), unquantised)


def test_reconstruction_images_for_rfid(fitted_kl, digits16):
    space = fitted_kl[0]
    recon = reconstruction_images(space, digits16[:20], batch_size=8)
    assert recon.dtype == torch.uint8 and recon.shape == digits16[:20].shape
    assert (recon.float() - digits16[:20].float()).abs().mean() < 40  # a rough reconstruction


def test_shape_errors_and_contract():
    space = registry.create("latent", "kl", **TINY)
    assert space.needs_fit and space.latent_shape((1, 16, 16)) == (4, 8, 8)
    with pytest.raises(UserError, match="channel"):
        space.latent_shape((3, 16, 16))
    with pytest.raises(UserError, match="f=2"):
        space.latent_shape((1, 15, 15))
    f4 = registry.create("latent", "vq", **{**TINY, "block_out_channels": [8, 8, 16]})
    with pytest.raises(UserError, match="f=4"):
        f4.latent_shape((1, 18, 18))
    with pytest.raises(RuntimeError, match="fit"):
        space.encode(torch.zeros(1, 1, 16, 16))
    assert space.decode(torch.zeros(2, 4, 8, 8)).shape == (2, 1, 16, 16)  # profiling before fit
    with pytest.raises(UserError):
        registry.create("latent", "kl", **{**TINY, "attn_levels": [5]})


def _ae_trainer(seed=3):
    space = registry.create("latent", "kl", **{**TINY, "steps": 6, "disc_start": 3,
                                               "dropout": 0.2, "kl_weight": 1e-3, "seed": seed,
                                               "hflip": True})
    initialise_autoencoder(space)
    return AutoencoderTrainer(space.autoencoder, 1, space.training, torch.device("cpu"),
                              seed=space.seed)


def test_resume_is_exact(digits16, tmp_path):
    """Dropout, posterior samples, flips and the PatchGAN (from step 3) all take part."""
    images = digits16[:64]
    full = _ae_trainer()
    assert train(full, images, tmp_path / "a", full.loop(), progress=False)
    part = _ae_trainer()
    assert not train(part, images, tmp_path / "b", part.loop(), progress=False, stop_after=4)
    torch.manual_seed(123)  # a fresh process has another global random state
    resumed = _ae_trainer()
    assert train(resumed, images, tmp_path / "b", resumed.loop(), progress=False)
    assert resumed.step == full.step == 6
    for name in ("autoencoder", "discriminator"):
        for (k, a), b in zip(full.modules()[name].state_dict().items(),
                             resumed.modules()[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"
    assert full.history == resumed.history and "d" in full.history[-1]


def test_initial_weights_follow_the_seed():
    a, b, c = (_ae_trainer(seed) for seed in (3, 3, 4))
    for name in ("autoencoder", "discriminator"):
        first = list(a.modules()[name].state_dict().values())
        assert all(torch.equal(x, y) for x, y in
                   zip(first, b.modules()[name].state_dict().values()))
        assert not all(torch.equal(x, y) for x, y in
                       zip(first, c.modules()[name].state_dict().values()))


def test_patch_discriminator_shapes():
    assert NLayerDiscriminator(3, 64, 3)(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 2, 2)
    patchgan = registry.create("discriminator", "patchgan", in_channels=1, ndf=8, n_layers=2)
    assert patchgan(torch.zeros(1, 1, 16, 16)).shape == (1, 1, 2, 2)
    assert NLayerDiscriminator.output_side(16, 2) == 2
    assert NLayerDiscriminator.output_side(32, 3) == 2
    assert NLayerDiscriminator.output_side(8, 3) < 1


def test_lpips_hook(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GENBENCH_WEIGHTS", raising=False)
    files, status = resolve_lpips(None)
    assert files == [] and status.startswith("missing: ")
    with pytest.raises(UserError, match="not found"):
        resolve_lpips(str(tmp_path / "nowhere"))  # a configured path must exist
    lpips = LPIPS()  # random weights of the right architecture
    torch.nn.init.uniform_(lpips.lin[0].weight, 0.0, 1.0)
    path = tmp_path / "lpips.safetensors"
    save_file({k: v.contiguous() for k, v in lpips.state_dict().items()}, str(path))
    files, status = resolve_lpips(str(path))
    assert status == "used"
    loaded = LPIPS.from_safetensors(files[0])
    g = torch.Generator().manual_seed(0)
    x, y = (torch.rand(2, 1, 16, 16, generator=g) * 2 - 1 for _ in range(2))
    assert torch.allclose(loaded(x, x), torch.zeros(2, 1, 1, 1))
    assert (loaded(x, y) > 0).all() and torch.allclose(loaded(x, y), lpips(x, y))


def test_training_with_lpips_weights_file(digits16, tmp_path):
    lpips = LPIPS()
    path = tmp_path / "lpips.safetensors"
    save_file({k: v.contiguous() for k, v in lpips.state_dict().items()}, str(path))
    space = registry.create("latent", "kl", **{**TINY, "steps": 3, "lpips_weights": str(path)})
    info = fit_autoencoder(space, digits16[:64], cache_dir=tmp_path, progress=False)
    assert info["lpips"] == "used" and info["steps"] == 3


def test_kl_f2_decoder_matches_official_cost(capsys):
    args = yaml.safe_load((REPO / "registry/latent/kl_f2.yaml").read_text())
    space = registry.create("latent", args.pop("name"), **args)
    assert space.latent_shape((3, 32, 32)) == (4, 16, 16)
    params = count_parameters(space.decoder_module())
    with torch.no_grad():
        counts = measure_flops(lambda: space.decode(torch.zeros(1, 4, 16, 16)))
    macs = counts.macs
    with capsys.disabled():
        print(f"\nkl_f2 decode path: {params:,} parameters (official 8,631,575), "
              f"{macs / 1e9:.4f} GMACs (official 3.613)")
    assert params == 8_631_575  # the official decoder + post_quant_conv, exactly
    assert macs == 3_613_003_776  # attention included (conv 3.210 G + linear/attention matmuls)
    # Four single-head attention layers at 16 x 16 (mid block, 3 in the first up block), 256
    # channels: Q K^T and A V, 2 x 256^2 x 256 MACs each, in the fused CPU kernel.
    attention = counts.by_operator["aten._scaled_dot_product_flash_attention_for_cpu"] // 2
    assert attention == 4 * 2 * 256**2 * 256 == 3_613_003_776 - 3_478_786_048  # was counted 0


PRESETS = sorted(p.stem for p in (REPO / "registry/latent").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_are_valid(preset):
    from genbench.config import compose_plain
    from genbench.latents.autoencoder import AutoencoderConfig

    # composed, so a preset that extends another (``defaults: [kl_digits]``) is read whole
    args = compose_plain([f"latent={preset}"])["latent"]
    name = args.pop("name")
    entry = registry.get("latent", name)
    assert set(args) <= set(entry.arguments())
    if name in ("kl", "vq"):
        fields = AutoencoderConfig.__dataclass_fields__
        arch = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items() if k in fields}
        expected_f = {"f2": 2, "f4": 4, "f8": 8}.get(preset.split("_")[-1], 2)
        assert AutoencoderConfig(kind=name, **arch).factor == expected_f


def test_consumed_training_compute_is_recorded(fitted_kl):
    """Images, steps and training MACs of the fit: AE-only steps before disc_start, then the
    discriminator's step and the adversarial terms on top (counted over real steps)."""
    from genbench.training.budget import StepCost

    _, info, _, _ = fitted_kl
    consumed, cost = info["consumed"], StepCost(**info["step_macs"])
    assert consumed["steps"] == STEPS and consumed["images"] == STEPS * TINY["batch_size"]
    assert cost.later_from == 16 and cost.later > 0 and cost.base > 0
    assert consumed["macs"] == 16 * cost.base + (STEPS - 16) * (cost.base + cost.later)
    assert consumed["seconds"] > 0
