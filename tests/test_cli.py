"""The command line end to end: run, list, profile, report, bad input, plugins."""

import json
import textwrap
from pathlib import Path

import pytest
from conftest import TINY, write_distribution

from genbench.harness.record import METRIC_KEYS


def _one_line_error(proc):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_tiny_run_end_to_end(run_cli, tmp_path):
    proc = run_cli("run", *TINY, "experiment=smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list((tmp_path / "results" / "smoke").glob("*/result.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["status"] == "ok" and record["schema_version"] == 1
    for key in METRIC_KEYS:
        assert key in record["metrics"]
    assert record["metrics"]["nfe"] == 4  # counted by the wrapper, T = 4
    assert record["metrics"]["fid"] is not None and record["metrics"]["fid"] >= 0
    recipe = record["metric_recipes"]["fid"]
    assert recipe["extractor"] != "inception-v3-compat" or recipe.get("weights")
    assert "classifier" in recipe["extractor"]  # no Inception weights here: named as such
    for part in ("config", "versions", "hardware", "seeds", "timing"):
        assert record[part]
    cell = records[0].parent
    assert (cell / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (cell / "config.yaml").is_file()
    assert (tmp_path / "results" / "smoke" / "report.html").is_file()
    assert "record:" in proc.stdout and "FID" in proc.stdout
    again = run_cli("run", *TINY, "experiment=smoke")
    assert again.returncode == 0 and "already recorded" in again.stderr
    assert len(list((tmp_path / "results" / "smoke").glob("*/result.json"))) == 1


def test_unknown_component_exits_2_with_suggestion(run_cli, tmp_path):
    line = _one_line_error(run_cli("run", "backbone=ncsnp"))
    assert "did you mean ncsnpp" in line
    assert not (tmp_path / "results").exists()
    line = _one_line_error(run_cli("run", "sampler.name=ddgna", *TINY))
    assert "did you mean ddgan" in line
    assert not list(tmp_path.glob("results/*/*/result.json"))


def test_missing_weights_names_file_and_place(run_cli, tmp_path):
    # The Inception is always found (packaged): a configured file that is not there is the case
    # left, and it is an error whatever eval.feature_extractor says.
    for choice in ("inception", "auto"):
        line = _one_line_error(run_cli("run", *TINY, f"eval.feature_extractor={choice}",
                                       f"eval.inception_weights={tmp_path / 'nowhere.pth'}",
                                       env={"TORCH_HOME": str(tmp_path / "torch_home")}))
        assert "inception" in line.lower() and ".pth" in line and "nowhere.pth" in line
        assert "put" in line or "place" in line or "pass" in line
    assert not list(tmp_path.glob("results/*/*/result.json"))


def test_missing_checkpoint_exits_2(run_cli, tmp_path):
    line = _one_line_error(run_cli("run", *TINY, "checkpoint=/nonexistent/g.safetensors"))
    assert "/nonexistent/g.safetensors" in line


def test_cfg_prints_the_composed_config_and_runs_nothing(run_cli, tmp_path):
    import yaml

    job = run_cli("run", "--cfg", "job", "sampler=ddim", "sampler.steps=7")
    assert job.returncode == 0, job.stderr[-2000:]
    cfg = yaml.safe_load(job.stdout)
    assert cfg["sampler"]["name"] == "ddim" and cfg["sampler"]["steps"] == 7
    assert "hydra" not in cfg and cfg["dataset"]["name"] == "digits"
    hydra = yaml.safe_load(run_cli("run", "--cfg", "hydra").stdout)["hydra"]
    assert hydra["runtime"]["choices"]["hydra/sweeper"] == "genbench"
    assert hydra["job"]["chdir"] is False
    package = run_cli("run", "--cfg", "job", "--package", "sampler", "sampler.steps=3")
    assert yaml.safe_load(package.stdout)["steps"] == 3
    assert not list(tmp_path.iterdir())  # nothing written, nothing run
    line = _one_line_error(run_cli("run", "--cfg", "job", "sampler=ddimm"))
    assert "did you mean ddim" in line


def test_list(run_cli):
    out = run_cli("list", "backbone").stdout
    assert "ncsnpp" in out and "ncsnpp_digits" in out
    assert run_cli("list", "ncsn*").stdout.count("ncsnpp") >= 2
    assert "ddgan_cifar10" in run_cli("list", "baseline").stdout
    _one_line_error(run_cli("list", "widget"))


def test_profile_ddgan_cifar10_matches_paper(run_cli):
    """Paper Table 2: DDGAN CIFAR-10 generator 48.43M parameters, 7.05 GFLOPs (fvcore MACs)."""
    proc = run_cli("profile", "baseline=ddgan_cifar10", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    for key in ("params", "params_denoiser", "params_decoder", "gmacs_denoiser", "gmacs_decoder",
                "gmacs_per_sample", "nfe"):
        assert key in result
    assert result["params_denoiser"] == 48_432_515  # the official NCSNpp generator, exactly
    assert result["gmacs_denoiser"] == pytest.approx(7.052, rel=2.5e-3)  # official 7.052 GMACs
    assert result["gmacs_denoiser"] < 7.052  # FIR computed only at kept samples: -0.18%
    assert result["nfe"] == 4 and result["params_decoder"] == 0
    assert result["gmacs_per_sample"] == pytest.approx(4 * result["gmacs_denoiser"], rel=1e-6)


def test_report_command(run_cli, tmp_path):
    assert run_cli("run", *TINY, "experiment=rep", "report=false").returncode == 0
    proc = run_cli("report", "results/rep", "-o", "out/report.html")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "report.html").is_file()
    _one_line_error(run_cli("report", "results/nothing-here"))


def _write_plugin(root: Path) -> None:
    write_distribution(root, "toyplug", textwrap.dedent('''
        import torch
        from genbench.registry import register

        class ToyNet(torch.nn.Module):
            """A plain backbone: net(x, t, z); genbench's Denoiser adds tanh or reads eps."""

            def __init__(self, in_channels, width, z_dim):
                super().__init__()
                self.conv = torch.nn.Conv2d(in_channels, width, 3, padding=1)
                self.out = torch.nn.Conv2d(width, in_channels, 3, padding=1)
                self.z = torch.nn.Linear(max(z_dim, 1), width)

            def forward(self, x, t, z=None):
                h = self.conv(x) + t.float().view(-1, 1, 1, 1)
                if z is not None:
                    h = h + self.z(z)[:, :, None, None]
                return self.out(torch.relu(h))

        @register("backbone", "toy_convnet", paper="a test plugin")
        def toy_convnet(in_channels: int, resolution: int, width: int = 8, z_dim: int = 4):
            """A two-layer toy backbone from a third-party package."""
            return ToyNet(in_channels, width, z_dim)
    '''))


def test_plugin_registers_backbone_through_entry_point(run_cli, tmp_path):
    plugin_dir = tmp_path / "site"
    plugin_dir.mkdir()
    _write_plugin(plugin_dir)
    env = {"PYTHONPATH": str(plugin_dir)}
    listed = run_cli("list", "backbone", env=env)
    assert "toy_convnet" in listed.stdout and "toyplug" in listed.stdout
    proc = run_cli("profile", "backbone=toy_convnet", "backbone.width=16", "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    conv, out, z = 1 * 16 * 9 + 16, 16 * 1 * 9 + 1, 4 * 16 + 16
    assert result["params_denoiser"] == conv + out + z
    assert result["nfe"] == 4


def _readme_block(heading: str) -> str:
    """The first ```python block under README.md's ``heading``."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split(heading, 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_adding_a_component_example_runs_as_printed(run_cli, tmp_path):
    """README.md's plugin example, installed as a plugin, trains and samples with the default
    adversarial sampler and with an eps sampler."""
    plugin_dir = tmp_path / "site"
    plugin_dir.mkdir()
    write_distribution(plugin_dir, "my_plugin", _readme_block("## Adding a component"))
    env = {"PYTHONPATH": str(plugin_dir)}
    for sampler in ("ddgan", "ddim"):
        proc = run_cli("run", "backbone=my_net", "backbone.width=8", f"sampler={sampler}",
                       "train=tiny", "eval=tiny", "progress=false", "experiment=readme",
                       env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    records = list((tmp_path / "results" / "readme").glob("*/result.json"))
    assert len(records) == 2
    assert {json.loads(p.read_text())["status"] for p in records} == {"ok"}


def test_lddgan_on_vq_latents_end_to_end(run_cli, tmp_path):
    """LDDGAN through the CLI: fit a VQ autoencoder, train with weighted learning, decode."""
    proc = run_cli("run", *TINY, "dataset=digits16", "latent=vq_tiny", "sampler=lddgan",
                   "experiment=ldd")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (tmp_path / "results" / "ldd").glob("*/result.json")
    record = json.loads(path.read_text())
    assert record["sampler"]["name"] == "lddgan" and record["sampler"]["rec_loss"] == "weighted"
    assert "g_rec" in record["training"]["final_losses"]
    assert record["shapes"]["latent"] == [4, 8, 8]
    assert record["metrics"]["params_decoder"] > 0 and record["metrics"]["gmacs_decoder"] > 0
    assert record["metrics"]["rfid"] is not None and record["latent"]["fit"]["scale_factor"] > 0
    assert record["metric_recipes"]["rfid"]["split"] == "test"
    # a second cell on the same autoencoder reuses it, its model and its measured rFID
    again = run_cli("run", *TINY, "dataset=digits16", "latent=vq_tiny", "sampler=lddgan",
                    "experiment=ldd", "eval.num_samples=100")
    assert again.returncode == 0, again.stderr[-3000:]
    paths = (tmp_path / "results" / "ldd").glob("*/result.json")
    records = [json.loads(p.read_text()) for p in paths]
    assert len(records) == 2
    assert len({r["metrics"]["rfid"] for r in records}) == 1
    assert len(list((tmp_path / "results" / ".cache" / "rfid").glob("*.json"))) == 1
