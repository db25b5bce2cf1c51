"""Bad input, table-driven: every case ends in exit status 2 with one line on stderr, no traceback,
nothing written, and (for configuration errors) before any work starts.

Most cases run ``genbench.cli.main`` in this process (composition and validation take a fraction
of a second); a few run the installed command as a user would. The cases are those of issue 10
(wrong types, impossible values, misspelt keys, unusable results folders) plus misspellings of
every section.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
from conftest import TINY, write_distribution
from omegaconf import OmegaConf

from genbench import cli
from genbench._io import is_temporary
from genbench.errors import UserError
from genbench.schema import check_train, validate

# (id, extra arguments, words the error line must hold). Every case adds TINY.
CASES: list[tuple[str, list[str], list[str]]] = [
    # issue 10 item 10: Hydra's hint for a misspelt key, `+key=`, must not be ignored
    ("plus-misspelt-train-key", ["+train.epoch=3"], ["train.epoch", "did you mean epochs"]),
    ("plus-misspelt-adversarial", ["+train.adversarial.lr_gg=1e-4"], ["did you mean lr_g"]),
    ("plus-misspelt-eps", ["+train.eps.warmpu=3"], ["did you mean warmup"]),
    ("plus-misspelt-backbone", ["+backbone.nff=8"], ["backbone.nff", "did you mean nf"]),
    ("plus-misspelt-sampler", ["+sampler.stepz=2"], ["did you mean steps"]),
    ("plus-misspelt-eval", ["+eval.num_sample=5"], ["did you mean num_samples"]),
    ("plus-misspelt-dataset", ["+dataset.resolutoin=8"], ["did you mean resolution"]),
    ("plus-misspelt-discriminator", ["+train.adversarial.discriminator.nfg=3"],
     ["did you mean ngf"]),
    ("plus-unknown-top-level", ["+seeed=3"], ["'seeed'", "did you mean seed"]),
    ("plus-latent-without-arguments", ["+latent.scale=2"], ["latent.scale"]),
    # issue 10 item 11: wrong types
    ("epochs-abc", ["train.epochs=abc"], ["train.epochs", "integer"]),
    ("epochs-float", ["train.epochs=2.5"], ["train.epochs", "integer"]),
    ("seed-abc", ["seed=abc"], ["seed", "integer"]),
    ("steps-abc", ["sampler.steps=abc"], ["sampler.steps", "integer"]),
    ("steps-float", ["sampler.steps=2.5"], ["sampler.steps", "integer"]),
    ("lr-g-abc", ["train.adversarial.lr_g=abc"], ["train.adversarial.lr_g", "number"]),
    ("num-samples-abc", ["eval.num_samples=abc"], ["eval.num_samples", "integer"]),
    ("hflip-maybe", ["train.hflip=maybe"], ["train.hflip", "true or false"]),
    ("progress-maybe", ["progress=maybe"], ["progress", "true or false"]),
    ("discriminator-ngf-abc", ["train.adversarial.discriminator.ngf=abc"], ["ngf", "integer"]),
    ("backbone-nf-abc", ["backbone.nf=abc"], ["backbone.nf", "integer"]),
    ("train-section-scalar", ["train.adversarial=3"], ["train.adversarial", "section"]),
    # impossible values
    ("num-samples-0", ["eval.num_samples=0"], ["eval.num_samples", ">= 1"]),
    ("num-samples-negative", ["eval.num_samples=-1"], ["eval.num_samples", ">= 1"]),
    ("eval-batch-0", ["eval.batch_size=0"], ["eval.batch_size", ">= 1"]),
    ("inception-sha256-short", ["eval.inception_sha256=6726825d"],
     ["eval.inception_sha256", "64 hex digits"]),
    ("ckpt-every-0", ["train.ckpt_every=0"], ["train.ckpt_every", ">= 1"]),
    ("train-batch-0", ["train.batch_size=0"], ["train.batch_size", ">= 1"]),
    ("lr-g-negative", ["train.adversarial.lr_g=-1e-4"], ["train.adversarial.lr_g", "> 0"]),
    ("lr-d-zero", ["train.adversarial.lr_d=0"], ["train.adversarial.lr_d", "> 0"]),
    ("eps-lr-negative", ["sampler=ddim", "train.eps.lr=-1e-3"], ["train.eps.lr", "> 0"]),
    ("beta1-one", ["train.adversarial.beta1=1.0"], ["beta1", "< 1"]),
    ("ema-decay-above-1", ["train.ema_decay=1.5"], ["train.ema_decay", "<= 1"]),
    ("seed-negative", ["seed=-1"], ["seed", ">= 0"]),
    ("pr-k-0", ["eval.pr_k=0"], ["eval.pr_k", ">= 1"]),
    ("time-trials-0", ["eval.time_trials=0"], ["eval.time_trials", ">= 1"]),
    ("lr-nan", ["train.adversarial.lr_g=nan"], ["train.adversarial.lr_g", "finite"]),
    # choices
    ("feature-extractor-choice", ["eval.feature_extractor=incept"], ["auto, inception"]),
    ("resize-choice", ["eval.resize=bicubic"], ["eval.resize", "tf1, clean"]),
    ("rec-loss-choice", ["train.adversarial.rec_loss=l2"], ["none, l1, weighted"]),
    ("metric-unknown", ["eval.metrics=[fid,kidd]"], ["kidd", "did you mean kid"]),
    ("fid-ci-negative", ["eval.fid_ci_resamples=-1"], ["eval.fid_ci_resamples", ">= 0"]),
    ("fid-ci-too-few", ["eval.fid_ci_resamples=5"], ["eval.fid_ci_resamples=5", "at least 20"]),
    ("fid-ci-float", ["eval.fid_ci_resamples=2.5"], ["eval.fid_ci_resamples", "integer"]),
    ("fid-infinity-one", ["eval.fid_infinity_points=1"], ["eval.fid_infinity_points=1",
                                                          "at least 2"]),
    ("plus-misspelt-fid-ci", ["+eval.fid_ci_resample=5"], ["did you mean fid_ci_resamples"]),
    ("discriminator-unknown", ["train.adversarial.discriminator.kind=smal"],
     ["did you mean small"]),
    ("backbone-unknown", ["backbone=ncsnp"], ["did you mean ncsnpp"]),
    ("harness-argument", ["+backbone.in_channels=3"], ["backbone.in_channels", "set by genbench"]),
    # where results go
    ("results-dir-is-file", ["results_dir=afile"], ["results_dir=afile", "is a file"]),
    ("cache-dir-is-file", ["cache_dir=afile"], ["cache_dir=afile", "is a file"]),
    ("results-dir-below-file", ["results_dir=afile/results"], ["afile", "is a file"]),
    ("checkpoint-missing", ["checkpoint=missing.safetensors"], ["checkpoint file not found"]),
]


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("genbench: error: "), lines[0]
    return lines[0]


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.name != "afile")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty current folder holding only the file ``afile`` (a results_dir that is a file)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder\n")
    return tmp_path


def _main(args: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name,args,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_in_one_line_before_any_work(name, args, words, workdir, capsys):
    started = time.perf_counter()
    code, out, err = _main(["run", *TINY, *args], capsys)
    assert code == 2, err
    line = _one_line(err)
    for word in words:
        assert word in line, line
    assert "genbench: cell" not in err  # the announcement comes once validated, before training
    assert _files_under(workdir) == []  # nothing written: no results, no cache, no lock files
    assert (workdir / "afile").read_text() == "not a folder\n"
    assert time.perf_counter() - started < 30  # no training, no sampling


def test_the_table_has_at_least_30_cases():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("args", [["+train.epoch=3"], ["train.hflip=maybe"]])
def test_bad_input_through_the_installed_command(args, run_cli, tmp_path):
    proc = run_cli("run", *TINY, *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    _one_line(proc.stderr)
    assert list(tmp_path.iterdir()) == []


def test_profile_validates_too(workdir, capsys):
    code, _, err = _main(["profile", "+backbone.nff=8"], capsys)
    assert code == 2 and "did you mean nf" in _one_line(err)


def test_read_only_results_folder(workdir, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (permission bits do not apply to root)")
    locked = workdir / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = _main(["run", *TINY, f"results_dir={locked}/results"], capsys)
        assert code == 2 and "cannot be written" in _one_line(err)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_unwritable_results_folder_as_the_schema_sees_it(workdir, capsys, monkeypatch):
    """The same check as above where the tests run as root: os.access says no."""
    from genbench import schema

    monkeypatch.setattr(schema.os, "access", lambda path, mode: False)
    code, _, err = _main(["run", *TINY, "results_dir=out"], capsys)
    assert code == 2 and "cannot be written" in _one_line(err)
    assert _files_under(workdir) == []


def test_read_only_file_system_while_writing_is_one_line(workdir, capsys, monkeypatch):
    """EROFS from the first atomic write (simulated in-process): one line, no temporaries."""
    from genbench import _io

    def read_only(path, write):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(_io, "atomic_write_with", read_only)
    code, _, err = _main(["run", *TINY], capsys)
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("genbench: error")]
    assert len(errors) == 1 and "read-only" in errors[0], err
    assert "Traceback" not in err and _temporaries(workdir) == []


def test_misspelt_key_in_a_yaml_train_preset_is_refused():
    """A train preset is checked key by key: a typo in YAML is an error, not an ignored key."""
    preset = OmegaConf.to_container(OmegaConf.create(
        "epochs: 1\nbatch_size: 32\nckpt_evrey: 50\nadversarial:\n  lr_g: 1.0e-4\n"))
    with pytest.raises(UserError, match="did you mean ckpt_every"):
        check_train(preset)
    # a preset may hold every objective's section: eps keys are fine under an adversarial run
    check_train({"epochs": 1, "adversarial": {"lr_g": 1e-4}, "eps": {"lr": 1e-3, "warmup": 0}})
    from genbench.harness.build import objective_settings
    from genbench.training.adversarial import AdversarialConfig

    with pytest.raises(UserError, match="did you mean ckpt_every"):
        objective_settings(preset, "adversarial")
    with pytest.raises(UserError, match="did you mean ckpt_every"):
        AdversarialConfig.from_section(preset, seed=0)
    with pytest.raises(UserError, match="did you mean lr_g"):
        objective_settings({"epochs": 1, "adversarial": {"lr_gg": 1.0}}, "adversarial")
    # the eps settings of a preset are left out of the adversarial ones, and vice versa
    both = {"epochs": 2, "warmup": 3, "adversarial": {"lr_g": 1e-4}, "eps": {"lr": 1e-3}}
    settings = objective_settings(both, "adversarial")
    assert settings == {"epochs": 2, "lr_g": 1e-4}
    assert AdversarialConfig.from_section(settings, 0).epochs == 2
    assert objective_settings(both, "eps") == {"epochs": 2, "warmup": 3, "lr": 1e-3}


def test_every_shipped_preset_passes_the_schema():
    from genbench.config import compose_baselines, compose_plain, group_options

    for group in ("dataset", "latent", "backbone", "sampler", "train", "eval"):
        for option in group_options(group):
            extra = ["dataset.root=x"] if group == "dataset" and "digits" not in option else []
            validate(compose_plain([f"{group}={option}", *extra]))
    for name, cfg in compose_baselines().items():
        assert not isinstance(cfg, Exception), (name, cfg)
        cfg["dataset"]["root"] = "x"
        validate(cfg)


def test_report_output_that_is_a_folder(workdir, capsys):
    (workdir / "results").mkdir()
    (workdir / "out").mkdir()
    code, _, err = _main(["report", "results", "-o", "out"], capsys)
    assert code == 2 and "is a folder" in _one_line(err)
    assert list((workdir / "out").iterdir()) == []


# --------------------------------------------------------------------------- during the run


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temporary(p)]


def test_full_disk_while_checkpointing_is_one_line_and_leaves_no_partial_folder(
        workdir, capsys, monkeypatch):
    """ENOSPC in the middle of a checkpoint write (simulated: the weights file is half written,
    then the write fails as on a full disk)."""
    from genbench.training import checkpoint

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 1024)  # a partial file, as a full disk leaves
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    code, _, err = _main(["run", *TINY, "train.ckpt_every=5"], capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("genbench: error")]
    assert len(lines) == 1 and "no space left" in lines[0].lower(), err
    assert "Traceback" not in err
    assert _temporaries(workdir) == []  # the half-written staging folder is gone
    assert not list(workdir.glob("results/.cache/models/*/checkpoint"))  # no partial checkpoint
    assert not list(workdir.glob("results/*/*/result.json"))


def test_full_disk_reported_by_safetensors_is_one_line(workdir, capsys, monkeypatch):
    """safetensors reports a full disk as SafetensorError (an IoError with kind StorageFull), not
    OSError; checkpoints write their tensors through it."""
    from safetensors import SafetensorError

    from genbench.training import checkpoint

    def failing_save(tensors, filename, *a, **k):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                              'message: "No space left on device" })')

    monkeypatch.setattr(checkpoint, "save_file", failing_save)
    code, _, err = _main(["run", *TINY, "train.ckpt_every=5"], capsys)
    assert code == 2 and "no space left" in err.lower(), err
    assert len([line for line in err.splitlines() if line.startswith("genbench: error")]) == 1
    assert _temporaries(workdir) == []


def test_divergence_names_step_and_loss_and_suggests_lower_lr(workdir, capsys):
    code, _, err = _main(["run", *TINY, "train.adversarial.lr_g=1e8",
                          "train.adversarial.lr_d=1e8"], capsys)
    assert code == 2, err
    line = [line for line in err.splitlines() if line.startswith("genbench: error")][0]
    assert "diverged at step" in line and "non-finite loss" in line
    assert "lower the learning rate" in line and "train.adversarial.lr_g" in line
    assert "Traceback" not in err
    assert not list(workdir.glob("results/*/*/result.json"))


# --------------------------------------------------------------------------- plugins


def test_plugin_that_fails_to_import_is_one_warning_and_the_rest_works(run_cli, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    write_distribution(site, "brokenplug", "import not_installed_dependency_xyz\n")
    write_distribution(site, "goodplug", (
        "from genbench.registry import register\n\n"
        "@register('backbone', 'good_net', paper='a test plugin')\n"
        "def good_net(in_channels: int, resolution: int, width: int = 8):\n"
        "    '''A plugin that loads.'''\n"
        "    raise NotImplementedError\n"))
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    proc = run_cli("list", "backbone", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("genbench: warning: plugin 'brokenplug'")
    assert "not_installed_dependency_xyz" in lines[0] and "Traceback" not in proc.stderr
    assert "ncsnpp" in proc.stdout and "good_net" in proc.stdout  # built-ins and other plugins
