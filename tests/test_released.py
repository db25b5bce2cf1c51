"""Released official checkpoints: conversion, strict fitting, safe reading, the LDDGAN
autoencoder's decode parity and ``genbench import``.

The files are written here in each official layout (genbench ships no weights): DDGAN/WaveDiff/
LDDGAN ``netG_*.pth`` (a DDP-wrapped flat state dict, ``module.`` prefix), U-ViT ``*.pth`` (a
plain state dict; the weights of tests/fixtures/uvit_released/ come from the official
``libs/uvit.py``), and LDM's autoencoder in a PyTorch Lightning checkpoint with loss weights
(tests/fixtures/lddgan_autoencoder/, made with the official LDDGAN code: see its README).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from untrusted_files import crafted_torch_file, one_line_error

from genbench import registry
from genbench.backbones.denoiser import Denoiser
from genbench.backbones.ncsnpp import ncsnpp
from genbench.errors import UserError
from genbench.harness.build import build_backbone
from genbench.harness.released import fitting_presets, import_file, load_generator
from genbench.training.autoencoder import fit_autoencoder
from genbench.training.checkpoint import load_weights
from genbench.training.released import CACHE_FOLDER, convert, load_converted, read_untrusted

FIXTURES = Path(__file__).parent / "fixtures"
AE = FIXTURES / "lddgan_autoencoder"
ATOL = 1e-5
TINY_SECTION = {"name": "ncsnpp", "nf": 16, "ch_mult": [1, 2], "num_res_blocks": 1,
                "attn_resolutions": [4], "z_dim": 8, "z_emb_dim": 32, "n_mlp": 2}


def _tiny_generator(seed: int = 0, **changes) -> Denoiser:
    cfg = {"backbone": {**TINY_SECTION, **changes}, "latent": {"name": "pixel"}}
    torch.manual_seed(seed)
    return build_backbone(cfg, (1, 8, 8), "adversarial")


def _save_netg(path: Path, net: torch.nn.Module) -> Path:
    """As train_ddgan.py saves netG_<epoch>.pth: the DDP-wrapped generator's state dict."""
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    return path


def _lightning_ckpt(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """A Lightning checkpoint as LDM's main.py writes one (state_dict plus training state)."""
    torch.save({"epoch": 3, "global_step": 120, "pytorch-lightning_version": "1.4.2",
                "state_dict": state, "optimizer_states": [{"state": {}, "param_groups": []}],
                "lr_schedulers": [], "callbacks": {"ModelCheckpoint": {"best_model_score": None}}},
               path)
    return path


# --------------------------------------------------------------------------- generators


def test_ddgan_netg_with_module_prefix_converts_and_loads_strictly(tmp_path):
    official = load_file(FIXTURES / "ddgan_parity" / "G_ema_final.safetensors")
    torch.save({f"module.{k}": v for k, v in official.items()}, tmp_path / "netG_1200.pth")
    released, sha = load_converted(tmp_path / "netG_1200.pth", tmp_path / "cache")
    assert released.family == "ncsnpp" and released.role == "generator"
    assert set(released.state) == set(official)
    assert released.implied == {"nf": 8, "in_channels": 3, "z_dim": 8, "z_emb_dim": 16,
                                "n_mlp": 2}
    # the conversion is cached by the file's SHA-256 and read back without unpickling
    cached = tmp_path / "cache" / CACHE_FOLDER / f"{sha}.safetensors"
    assert cached.is_file()
    again, _ = load_converted(tmp_path / "netG_1200.pth", tmp_path / "cache")
    assert all(torch.equal(again.state[k], official[k]) for k in official)
    a = json.loads((FIXTURES / "ddgan_parity" / "meta.json").read_text())["settings"]
    G = Denoiser(ncsnpp(in_channels=3, resolution=8, nf=8, ch_mult=(1, 2), num_res_blocks=1,
                        attn_resolutions=(4,), z_dim=8, z_emb_dim=16, n_mlp=a["n_mlp"]),
                 output="x0", z_dim=8)
    G.load_state_dict(released.state, strict=True)


def test_generator_through_the_cell_loader_records_the_sha(tmp_path):
    source = _tiny_generator(seed=3)
    path = _save_netg(tmp_path / "netG_7.pth", source)
    G = _tiny_generator(seed=4)
    cfg = {"backbone": TINY_SECTION, "latent": {"name": "pixel"},
           "paper": {"source": "Xiao et al. 2022, Table 1"}}
    info = load_generator(path, G, cfg, (1, 8, 8), tmp_path / "cache")
    assert info["source"] == "checkpoint" and len(info["sha256"]) == 64
    assert info["published_numbers_source"] == "Xiao et al. 2022, Table 1"
    for key, value in source.state_dict().items():
        assert torch.equal(G.state_dict()[key], value)


def test_a_mismatched_generator_is_refused_naming_mismatches_and_the_fitting_preset(tmp_path):
    path = _save_netg(tmp_path / "netG_1.pth", _tiny_generator())
    G = _tiny_generator(nf=32)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    cfg = {"backbone": {**TINY_SECTION, "nf": 32}, "latent": {"name": "pixel"},
           "presets": {"backbone": "ncsnpp_tiny_wide"}}
    with pytest.raises(UserError) as err:
        load_generator(path, G, cfg, (1, 8, 8), None)
    message = str(err.value)
    assert "does not fit the configured backbone 'ncsnpp_tiny_wide'" in message
    assert "all_modules.0.weight is [64, 16], the network's is [128, 32]" in message
    assert "it fits backbone=ncsnpp_tiny" in message
    assert "\n" not in message
    assert all(torch.equal(G.state_dict()[k], v) for k, v in before.items())  # nothing loaded


def test_a_file_with_a_missing_key_is_refused(tmp_path):
    state = {f"module.{k}": v for k, v in _tiny_generator().state_dict().items()}
    state.pop("module.z_transform.1.weight")
    torch.save(state, tmp_path / "netG_2.pth")
    cfg = {"backbone": TINY_SECTION, "latent": {"name": "pixel"}}
    with pytest.raises(UserError, match=r"missing z_transform\.1\.weight \[32, 8\]"):
        load_generator(tmp_path / "netG_2.pth", _tiny_generator(), cfg, (1, 8, 8), None)


def test_wavediff_wavelet_generator_is_recognised_by_its_keys():
    state = {"module.all_modules.0.weight": torch.zeros(256, 64),
             "module.all_modules.2.weight": torch.zeros(64, 12, 3, 3),
             "module.all_modules.3.convH_0.weight": torch.zeros(192, 64, 3, 3)}
    released = convert(state)
    assert released.family == "wavelet_ncsnpp"
    assert released.implied["in_channels"] == 12


def test_official_uvit_state_dict_loads_into_genbench_uvit(tmp_path):
    official = load_file(FIXTURES / "uvit_released" / "uvit_official_state.safetensors")
    torch.save(official, tmp_path / "cifar10_uvit_small.pth")
    released, _ = load_converted(tmp_path / "cifar10_uvit_small.pth", None)
    assert released.family == "uvit"
    assert released.implied == {"in_channels": 3, "patch_size": 2, "embed_dim": 32,
                                "resolution": 8, "depth": 2, "z_dim": 0}
    cfg = {"backbone": {"name": "uvit", "embed_dim": 32, "depth": 2, "num_heads": 2,
                        "z_dim": 0}, "latent": {"name": "pixel"}}
    net = build_backbone(cfg, (3, 8, 8), "eps")
    net.load_state_dict(released.state, strict=True)  # the official names, nothing mapped
    net_wrong = build_backbone({**cfg, "backbone": {**cfg["backbone"], "mlp_time_embed": True}},
                               (3, 8, 8), "eps")
    with pytest.raises(UserError, match="unexpected|missing"):
        load_generator(tmp_path / "cifar10_uvit_small.pth", net_wrong, cfg, (3, 8, 8), None)


# --------------------------------------------------------------------------- unsafe files


def test_a_crafted_checkpoint_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = crafted_torch_file(tmp_path / "netG_1200.pth", marker)
    with pytest.raises(UserError, match="cannot be read safely"):
        read_untrusted(path)
    cfg = {"backbone": TINY_SECTION, "latent": {"name": "pixel"}}
    with pytest.raises(UserError, match="cannot be read safely"):
        load_generator(path, _tiny_generator(), cfg, (1, 8, 8), tmp_path / "cache")
    assert not marker.exists()


def test_the_cli_import_of_a_crafted_file_is_one_line_and_runs_nothing(run_cli, tmp_path):
    marker = tmp_path / "ran"
    path = crafted_torch_file(tmp_path / "ae.ckpt", marker)
    line = one_line_error(run_cli("import", str(path), "-o", str(tmp_path / "out.safetensors")))
    assert "cannot be read safely" in line
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_training_checkpoints_and_vq_autoencoders_are_refused(tmp_path):
    with pytest.raises(UserError, match="training checkpoint"):
        convert({"netG_dict": {"a": torch.zeros(1)}, "netD_dict": {}})
    with pytest.raises(UserError, match="VQ autoencoder"):
        convert({"state_dict": {"encoder.conv_in.weight": torch.zeros(1),
                                "quantize.embedding.weight": torch.zeros(1)}})
    with pytest.raises(UserError, match="not a known released layout"):
        convert({"fc.weight": torch.zeros(1)})


# --------------------------------------------------------------------------- autoencoder


def _ae_space(path: Path, **changes):
    settings = dict(block_out_channels=[32, 32], layers_per_block=1, latent_channels=4,
                    attn_levels=[1], dropout=0.2, tanh_out=True, scale_factor=6.0,
                    check_range=False, checkpoint=str(path))
    return registry.create("latent", "kl", **{**settings, **changes})


def _ae_inputs():
    io = load_file(AE / "io.safetensors")
    images = ((io["images"] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return io, images


def _ae_file(tmp_path: Path, change=None) -> Path:
    state = {k: v.float() for k, v in load_file(AE / "ldm_state.safetensors").items()}
    if change:
        change(state)
    return _lightning_ckpt(tmp_path / "last.ckpt", state)


def test_lddgan_autoencoder_decodes_as_the_official_one(tmp_path):
    io, images = _ae_inputs()
    space = _ae_space(_ae_file(tmp_path))
    info = fit_autoencoder(space, images, cache_dir=tmp_path / "cache", device="cpu",
                           progress=False)
    assert info["source"] == "checkpoint" and info["dropped_keys"] == 2
    assert info["scale_factor"] == float(io["scale_factor"]) == 6.0
    with torch.no_grad():
        decoded = space.decode(io["latent"])
        mean = space.encode(io["images"]) * space.scale_factor
    assert (decoded - io["decoded"]).abs().max() < ATOL
    assert (mean - io["encode_mean"]).abs().max() < ATOL


@pytest.mark.parametrize("what", ["in-level attention", "tanh_out", "scale_factor"])
def test_the_autoencoder_fixture_detects_a_change(tmp_path, what):
    io, images = _ae_inputs()

    def swap_attention(state):  # the in-level attention diffusers' converter leaves out
        key = "decoder.up.1.attn.0.q.weight"
        state[key] = state["decoder.up.1.attn.0.k.weight"].clone()

    path = _ae_file(tmp_path, swap_attention if what == "in-level attention" else None)
    changes = {"tanh_out": {"tanh_out": False}, "scale_factor": {"scale_factor": 5.0}}
    space = _ae_space(path, **changes.get(what, {}))
    fit_autoencoder(space, images, cache_dir=tmp_path / "cache", device="cpu", progress=False)
    with torch.no_grad():
        assert (space.decode(io["latent"]) - io["decoded"]).abs().max() > 1e-3


def test_a_mismatched_autoencoder_is_refused_with_the_settings_it_implies(tmp_path):
    _, images = _ae_inputs()
    space = _ae_space(_ae_file(tmp_path), attn_levels=[])
    with pytest.raises(UserError) as err:
        fit_autoencoder(space, images, cache_dir=tmp_path / "cache", device="cpu",
                        progress=False)
    assert "unexpected decoder.up_blocks.0.attentions.0." in str(err.value)
    assert "latent.attn_levels=[1]" in str(err.value)


def test_cli_import_of_the_autoencoder_then_latent_checkpoint(run_cli, tmp_path):
    io, images = _ae_inputs()
    ckpt = _ae_file(tmp_path)
    out = tmp_path / "ae.safetensors"
    proc = run_cli("import", str(ckpt), "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sha256: " in proc.stdout and "ldm autoencoder" in proc.stdout
    assert "block_out_channels=[32, 32]" in proc.stdout and "attn_levels=[1]" in proc.stdout
    space = _ae_space(out)
    fit_autoencoder(space, images, cache_dir=tmp_path / "cache", device="cpu", progress=False)
    with torch.no_grad():
        assert (space.decode(io["latent"]) - io["decoded"]).abs().max() < ATOL


def test_import_of_a_generator_names_the_preset_and_loads_as_a_genbench_checkpoint(tmp_path):
    source = _tiny_generator(seed=5)
    path = _save_netg(tmp_path / "netG_9.pth", source)
    report = import_file(path, tmp_path / "g.safetensors")
    assert "backbone=ncsnpp_tiny latent shape 1x8x8" in report["presets"]
    G = _tiny_generator(seed=6)
    load_weights(tmp_path / "g.safetensors", {"G_ema": G})
    assert all(torch.equal(G.state_dict()[k], v) for k, v in source.state_dict().items())


def test_fitting_presets_finds_nothing_for_a_foreign_shape():
    released = convert({f"module.{k}": v for k, v in _tiny_generator(nf=24).state_dict().items()})
    assert fitting_presets(released, [(1, 8, 8)]) == []


# --------------------------------------------------------------------------- genbench run


def test_run_on_a_released_generator_records_its_sha256(run_cli, tmp_path):
    from conftest import TINY

    from genbench._io import sha256_file

    path = _save_netg(tmp_path / "netG_3.pth", _tiny_generator(seed=2))
    proc = run_cli("run", *TINY, "experiment=released", f"checkpoint={path}",
                   "eval.num_samples=16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list((tmp_path / "results" / "released").glob("*/result.json"))
    assert len(records) == 1
    training = json.loads(records[0].read_text())["training"]
    assert training["source"] == "checkpoint" and training["sha256"] == sha256_file(path)
    assert training["format"] == "ddgan netG (DDP-wrapped)"
    line = one_line_error(run_cli("run", *TINY, "experiment=released2", f"checkpoint={path}",
                                  "backbone.nf=32"))
    assert "does not fit the configured backbone 'ncsnpp_tiny'" in line
    assert "it fits backbone=ncsnpp_tiny" in line
