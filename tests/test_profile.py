"""`genbench profile`: parameters, MACs and NFE for every backbone with every sampler."""

import json
import re

import pytest

from genbench import registry
from genbench.config import compose_plain
from genbench.harness.profile import profile


@pytest.mark.parametrize("sampler", registry.names("sampler"))
@pytest.mark.parametrize("backbone", ["ncsnpp_ddgan_cifar10", "uvit_mid"])
def test_profile_cifar10_every_backbone_and_sampler(backbone, sampler):
    """Costs of a CIFAR-10 configuration without data files or training; NFE is counted."""
    steps = {"ddpm": 2, "ddim": 3}.get(sampler, 4)  # keep the counted sampling runs short
    cfg = compose_plain(["dataset=cifar10", "latent=pixel", f"backbone={backbone}",
                    f"sampler={sampler}", f"sampler.steps={steps}"])
    result = profile(cfg)
    assert result["nfe"] == steps
    assert result["params"] == result["params_denoiser"] > 1e6 and result["params_decoder"] == 0
    assert result["gmacs_denoiser"] > 0.1
    assert result["gmacs_per_sample"] == pytest.approx(steps * result["gmacs_denoiser"])
    adversarial = registry.get("sampler", sampler).extra.get("objective") == "adversarial"
    assert result["objective"] == ("adversarial" if adversarial else "eps")


@pytest.mark.slow
@pytest.mark.parametrize("sampler,steps", [("ddim", 50), ("ddpm", 1000)])
def test_profile_nfe_is_what_the_counter_saw(run_cli, sampler, steps):
    proc = run_cli("profile", "backbone=ncsnpp_tiny", f"sampler={sampler}",
                   f"sampler.steps={steps}", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["nfe"] == steps


# --------------------------------------------------------------------------- the command's output

TINY_PROFILE = ["backbone=ncsnpp_tiny", "eval=tiny"]


def _main(args, capsys):
    from genbench import cli

    capsys.readouterr()
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_profile_rounds_for_people_and_json_keeps_every_digit(capsys):
    from genbench.report.experiment import significant

    # flags anywhere among the overrides
    code, out, err = _main(["profile", "backbone=ncsnpp_tiny", "--json", "eval=tiny", "--time"],
                           capsys)
    assert code == 0, err
    full = json.loads(out)  # stdout is the JSON alone: progress goes to stderr
    assert full["gmacs_denoiser"] == pytest.approx(full["gmacs_per_sample"] / full["nfe"])
    assert full["timing"]["batch_size"] == 20 and full["timing"]["trials"] == 2
    code, text, _ = _main(["profile", "--time", *TINY_PROFILE], capsys)
    assert code == 0
    lines = dict(line.split(None, 1) for line in text.splitlines())
    assert "{" not in text and "'" not in text  # no Python dict
    for number in re.findall(r"\d*\.\d+", text):  # no raw floats (10.813301086425781)
        assert len(number.replace(".", "").lstrip("0")) <= 3, (number, text)
    assert lines["NFE"] == "4"
    assert lines["parameters"].startswith(f"{full['params']:,} (")
    assert f"denoiser {significant(full['gmacs_denoiser'])}," in lines["GMACs/forward"]
    assert re.fullmatch(r"[\d.]+ s median, IQR [\d.]+ s, over 2 trials after 1 warm-ups "
                        r"\(\w+\)", lines["s/batch(20)"])
    assert f"{significant(full['peak_memory_mb'])} MB drawing one sample" in text


def test_long_profile_steps_say_what_they_do(capsys):
    code, _, err = _main(["profile", *TINY_PROFILE, "--time"], capsys)
    assert code == 0
    said = [line for line in err.splitlines() if line.startswith("genbench: profile: ")]
    assert any("timing a batch of 20: 1 warm-ups and 2 trials" in line for line in said), err
    assert "time (batch of 20)" in err and "3/3" in err  # the bar over warm-ups and trials
    code, _, err = _main(["profile", *TINY_PROFILE, "--time", "progress=false"], capsys)
    assert code == 0 and err == ""


@pytest.mark.parametrize("command", ["run", "profile"])
def test_a_comma_list_outside_a_grid_says_it_is_a_grid(command, capsys):
    code, out, err = _main([command, "sampler=ddgan,lddgan", "train=tiny"], capsys)
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert "sampler=ddgan,lddgan sweeps over several configurations" in line
    assert "unknown sampler" not in line
    assert ("genbench run --grid sampler=ddgan,lddgan train=tiny" in line if command == "run"
            else "e.g. sampler=ddgan" in line)
