"""Published baselines (baselines/*.yaml): listed, composed, built without training, and costed.

Cost checks follow the LDDGAN paper (seeds/lddgan-paper.txt) Table 2 and REFERENCE.md A: the
paper's "FLOPs" are fvcore multiply-adds (genbench's MACs); parameters must agree within 1% and
MACs within 3%. Where the paper's numbers cannot be reproduced (LDDGAN's "including the decoder"
FLOPs, WDDGAN 256's WaveletNCSNpp, the U-ViT layouts) the baseline says so in ``paper.notes`` and
the tests check genbench's own counts, which those notes quote.

Profiling needs a dataset only for its image shape, so CIFAR-10 and the 256 px image folders are
stood in for by a few blank images. 256 px generators and autoencoder decoders take tens of
seconds on a 2-core CPU: those tests are marked slow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genbench.cli import _compose
from genbench.config import baseline_names
from genbench.errors import UserError

BASELINES = [
    "ddgan_cifar10", "wddgan_cifar10", "lddgan_cifar10",
    "ddgan_celebahq256", "wddgan_celebahq256", "lddgan_celebahq256",
    "ddgan_lsun256", "wddgan_lsun256", "lddgan_lsun256",
    "ddpm_cifar10", "ddim_cifar10",
    "lddgan_uvit_tiny_cifar10", "lddgan_uvit_mid_cifar10", "lddgan_uvit_large_cifar10",
]
PAPER_KEYS = {"method", "source", "dataset", "extractor", "fid", "recall", "nfe",
              "time_per_batch_s", "params_m", "gflops", "memory_gb", "notes"}
ADVERSARIAL = ("ddgan", "lddgan")

# What genbench builds: latent shape (C, H, W), denoiser and decoder parameters. The baselines'
# notes and the backbone presets quote these counts.
VQ_F4_DECODE, KL_F8_DECODE, KL_F2_DECODE = 32_985_359, 49_490_199, 8_631_575
BUILT = {
    "ddgan_cifar10": ((3, 32, 32), 48_432_515, 0),
    "wddgan_cifar10": ((12, 16, 16), 33_370_124, 0),
    "lddgan_cifar10": ((4, 16, 16), 33_329_668, KL_F2_DECODE),
    "ddgan_celebahq256": ((3, 256, 256), 39_726_979, 0),
    "ddgan_lsun256": ((3, 256, 256), 39_726_979, 0),
    "wddgan_celebahq256": ((12, 128, 128), 28_366_220, 0),
    "wddgan_lsun256": ((12, 128, 128), 28_366_220, 0),
    "lddgan_celebahq256": ((3, 64, 64), 48_413_315, VQ_F4_DECODE),
    "lddgan_lsun256": ((4, 32, 32), 48_416_772, KL_F8_DECODE),
    "ddpm_cifar10": ((3, 32, 32), 35_218_947, 0),
    "ddim_cifar10": ((3, 32, 32), 35_218_947, 0),
    "lddgan_uvit_tiny_cifar10": ((4, 16, 16), 18_490_468, KL_F2_DECODE),
    "lddgan_uvit_mid_cifar10": ((4, 16, 16), 51_253_156, KL_F2_DECODE),
    "lddgan_uvit_large_cifar10": ((4, 16, 16), 59_128_228, KL_F2_DECODE),
}


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory) -> dict[str, Path]:
    """Stand-in roots: an empty CIFAR-10 root (never read) and one 256 px image."""
    base = tmp_path_factory.mktemp("baseline_data")
    cifar = base / "cifar10"
    cifar.mkdir()
    images = base / "images"
    images.mkdir()
    Image.fromarray(np.full((256, 256, 3), 127, np.uint8)).save(images / "0.png")
    return {"cifar10": cifar, "image_folder": images}


def _config(name: str, roots: dict[str, Path], *extra: str) -> dict:
    root = roots["cifar10"] if name.endswith("cifar10") else roots["image_folder"]
    return _compose([f"baseline={name}", f"dataset.root={root}", "device=cpu", *extra])


def _profile(name: str, roots: dict[str, Path], *extra: str) -> dict:
    from genbench.harness.profile import profile

    return profile(_config(name, roots, *extra))


def _yaml_paper(name: str) -> dict:
    from omegaconf import OmegaConf

    from genbench.config import baselines_root

    return OmegaConf.to_container(OmegaConf.load(baselines_root() / f"{name}.yaml"))["paper"]


# --------------------------------------------------------------------------- listing, composing


def test_every_baseline_is_listed(run_cli):
    assert set(BASELINES) <= set(baseline_names())
    proc = run_cli("list", "baseline")
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("baseline")}
    assert set(BASELINES) <= listed


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_composes(name, data_roots):
    cfg = _config(name, data_roots)
    assert cfg["presets"]["baseline"] == name and cfg["experiment"] == name
    paper = cfg["paper"]
    assert set(paper) == PAPER_KEYS
    assert paper["extractor"] == "inception-v3-compat"
    assert paper["fid"] > 0 and paper["notes"].strip()
    assert paper["nfe"] == cfg["sampler"]["steps"]  # NFE = T (DDGAN family) or the step count
    assert not {"in_channels", "resolution"} & set(cfg["backbone"])  # come from the latent
    if cfg["sampler"]["name"] in ADVERSARIAL:
        assert cfg["train"]["adversarial"]["discriminator"]["kind"] in ("small", "large")


def test_256px_baselines_name_a_missing_dataset_root(tmp_path):
    from genbench.harness.build import build_dataset

    cfg = _compose(["baseline=lddgan_celebahq256", f"dataset.root={tmp_path / 'nope'}"])
    with pytest.raises(UserError, match="nope"):
        build_dataset(cfg)


def test_reconstruction_terms_follow_the_papers(data_roots):
    """WDDGAN: L1 with weight 1 in the train preset; LDDGAN: weighted learning (Table 6)."""
    for name in ("wddgan_cifar10", "wddgan_celebahq256", "wddgan_lsun256"):
        cfg = _config(name, data_roots)
        assert cfg["sampler"]["name"] == "ddgan"
        assert cfg["train"]["adversarial"]["rec_loss"] == "l1"
    for name in ("lddgan_cifar10", "lddgan_celebahq256", "lddgan_lsun256",
                 "lddgan_uvit_mid_cifar10"):
        cfg = _config(name, data_roots)
        assert (cfg["sampler"]["name"], cfg["sampler"]["rec_loss"]) == ("lddgan", "weighted")
        assert cfg["train"]["adversarial"]["lr_decay"] is False  # --no_lr_decay
    assert _config("ddgan_cifar10", data_roots)["train"]["adversarial"]["rec_loss"] == "none"


# ------------------------------------------------------------------- built without training


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_builds(name, data_roots):
    from genbench.harness.build import build_backbone, build_components
    from genbench.metrics.cost import count_parameters

    cfg = _config(name, data_roots)
    comps = build_components(cfg, load_data=False)
    shape, params_g, params_d = BUILT[name]
    assert comps.latent_shape == shape
    net = build_backbone(cfg, comps.latent_shape, comps.sampler.objective)
    assert count_parameters(net) == params_g
    decoder = comps.latent.decoder_module()
    assert (count_parameters(decoder) if decoder is not None else 0) == params_d


# Discriminator parameters; the CIFAR-10 ones are the official constructors' (REFERENCE.md A).
DISCRIMINATORS = {
    "ddgan_cifar10": 12_741_633, "wddgan_cifar10": 7_630_593, "lddgan_cifar10": 7_628_545,
    "ddgan_celebahq256": 27_737_217, "ddgan_lsun256": 27_737_217,
    "wddgan_celebahq256": 22_626_177, "wddgan_lsun256": 22_626_177,
    "lddgan_celebahq256": 17_510_529, "lddgan_lsun256": 17_510_785,
    "lddgan_uvit_mid_cifar10": 7_628_545,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminator_builds_for_the_latent(name, data_roots):
    import torch

    from genbench.backbones.discriminator import make_discriminator
    from genbench.harness.build import build_components
    from genbench.metrics.cost import count_parameters

    comps = build_components(_config(name, data_roots), load_data=False)
    disc = dict(comps.train["discriminator"])
    D = make_discriminator(disc.pop("kind"), in_channels=comps.latent_shape[0], **disc)
    assert count_parameters(D) == DISCRIMINATORS[name]
    if comps.latent_shape[-1] <= 64:  # one scored pair; 128/256 px ones cost seconds
        x = torch.zeros(2, *comps.latent_shape)
        with torch.no_grad():
            assert D(x, torch.zeros(2, dtype=torch.long), x).shape == (2,)


@pytest.mark.parametrize("name", ["ddgan_cifar10", "ddgan_celebahq256", "ddgan_lsun256"])
def test_ddgan_parameters_match_table2(name, data_roots):
    """Official DDGAN settings reproduce Table 2's parameter counts (48.43M, 39.73M)."""
    _, params_g, _ = BUILT[name]
    assert params_g == pytest.approx(_yaml_paper(name)["params_m"] * 1e6, rel=0.01)


def test_uvit_baselines_are_ordered_as_table11():
    """Tiny < Mid < Large, as Table 11 (whose layouts are unpublished: no closer check)."""
    sizes = [BUILT[f"lddgan_uvit_{s}_cifar10"][1] for s in ("tiny", "mid", "large")]
    papers = [_yaml_paper(f"lddgan_uvit_{s}_cifar10")["params_m"] for s in ("tiny", "mid", "large")]
    assert sizes == sorted(sizes) and papers == sorted(papers)


# ------------------------------------------------------------------------------ Table 2 costs


def test_wddgan_cifar10_cost_matches_table2(data_roots):
    result = _profile("wddgan_cifar10", data_roots)
    assert result["latent_shape"] == [12, 16, 16] and result["nfe"] == 4
    assert result["params"] == pytest.approx(33.37e6, rel=0.01)
    assert result["params_denoiser"] == pytest.approx(33.37e6, rel=0.01)
    assert result["params_decoder"] == 0  # the inverse Haar transform has no parameters
    assert result["gmacs_denoiser"] == pytest.approx(1.67, rel=0.03)
    assert result["gmacs_decoder"] < 0.001


def test_lddgan_cifar10_cost_matches_table2_and_reference(data_roots):
    """41.97M = 33.33M generator + 8.63M decode path; 1.665 GMACs/forward, 3.61 GMACs/decode."""
    result = _profile("lddgan_cifar10", data_roots)
    assert result["latent_shape"] == [4, 16, 16] and result["nfe"] == 4
    assert result["params"] == pytest.approx(41.97e6, rel=0.01)
    assert result["params_denoiser"] == pytest.approx(33.33e6, rel=0.01)
    assert result["params_decoder"] == pytest.approx(8.63e6, rel=0.01)
    assert result["gmacs_denoiser"] == pytest.approx(1.665, rel=0.03)
    assert result["gmacs_decoder"] == pytest.approx(3.61, rel=0.03)
    # The paper's 1.72 G "including the decoder" is less than the decoder alone (notes).
    assert result["gmacs_decoder"] > _yaml_paper("lddgan_cifar10")["gflops"]
    assert result["gmacs_per_sample"] == pytest.approx(
        4 * result["gmacs_denoiser"] + result["gmacs_decoder"], rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name,nfe", [("ddgan_celebahq256", 2), ("ddgan_lsun256", 4)])
def test_ddgan_256_cost_matches_table2(name, nfe, data_roots):
    result = _profile(name, data_roots)
    assert result["nfe"] == nfe and result["params_decoder"] == 0
    assert result["params"] == pytest.approx(39.73e6, rel=0.01)
    assert result["gmacs_denoiser"] == pytest.approx(70.82, rel=0.03)


@pytest.mark.slow
@pytest.mark.parametrize("name,gmacs_g", [("lddgan_celebahq256", 27.22),
                                          ("lddgan_lsun256", 7.04)])
def test_lddgan_256_decoder_exceeds_table2_total(name, gmacs_g, data_roots):
    """Table 2's 256 px LDDGAN FLOPs "including the decoder" are below the decoder's own cost."""
    result = _profile(name, data_roots)
    paper = _yaml_paper(name)
    assert result["nfe"] == paper["nfe"]
    assert result["gmacs_denoiser"] == pytest.approx(gmacs_g, rel=0.01)
    assert result["gmacs_decoder"] > 300 > paper["gflops"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wddgan_celebahq256", "lddgan_uvit_tiny_cifar10",
                                  "lddgan_uvit_mid_cifar10", "lddgan_uvit_large_cifar10"])
def test_profile_runs(name, data_roots):
    result = _profile(name, data_roots)
    shape, params_g, params_d = BUILT[name]
    assert result["latent_shape"] == list(shape) and result["nfe"] == _yaml_paper(name)["nfe"]
    assert (result["params_denoiser"], result["params_decoder"]) == (params_g, params_d)
    assert result["gmacs_denoiser"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddpm_cifar10", "ddim_cifar10"])
def test_eps_baselines_profile(name, data_roots):
    """The eps network samples (NFE counted); fewer steps than published keep it short."""
    result = _profile(name, data_roots, "sampler.steps=5")
    assert result["objective"] == "eps" and result["nfe"] == 5
    assert result["params_denoiser"] == BUILT[name][1]
    assert result["gmacs_denoiser"] == pytest.approx(6.02, rel=0.01)
