"""Fault injection: runs killed at named points lose nothing, duplicate nothing and resume to the
same result; cell/experiment names cannot reach outside their folder; Ctrl-C says what a rerun
does.

Kill points are genbench._io.fault_point's (``GENBENCH_FAULT=POINT[@N][:kill|interrupt]``):
``kill`` is ``os._exit(137)``, as SIGKILL (no cleanup runs); ``interrupt`` raises
KeyboardInterrupt, as Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TINY

from genbench import _io
from genbench.errors import UserError
from genbench.harness import record as rec
from genbench.report.tables import load_records

KILLED = 137


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if _io.is_temporary(p)]


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _write(cell: Path, value: int, **kwargs) -> Path:
    return rec.write_cell(cell, {"cell": cell.name, "status": "ok", "value": value},
                          {rec.SAMPLES: bytes([value])}, **kwargs)


def _in_child(code: str, fault: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``code`` (genbench imported as in these tests) in a process killed at ``fault``."""
    env = {**os.environ, _io.FAULT_ENV: fault}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


_WRITE_IN_CHILD = """
    import sys
    from pathlib import Path
    from genbench.harness import record as rec
    cell = Path(sys.argv[-1] if len(sys.argv) > 1 else "exp/cell")
    rec.write_cell(cell, {{"cell": cell.name, "status": "ok", "value": {value}}},
                   {{rec.SAMPLES: bytes([{value}])}}, overwrite={overwrite})
"""


# --------------------------------------------------------------------------- records, killed


def test_kill_between_result_json_and_the_rename_leaves_no_second_record(tmp_path):
    exp = tmp_path / "exp"
    proc = _in_child(_WRITE_IN_CHILD.format(value=1, overwrite=False), "record.staged", tmp_path)
    assert proc.returncode == KILLED, proc.stderr
    staged = _temporaries(exp)
    assert len(staged) == 1 and (staged[0] / rec.RESULT).is_file()  # complete, hidden
    assert load_records([exp]).empty  # the staging copy is not a record: there is none yet
    assert not rec.is_recorded(exp / "cell")
    assert _io.remove_stale_temporaries(exp) == staged  # what the next writer does first
    _write(exp / "cell", 2)
    records = load_records([exp])
    assert len(records) == 1 and records.iloc[0]["cell"] == "cell"
    assert sorted(p.name for p in exp.iterdir()) == ["cell"]


def test_kill_inside_an_overwrite_keeps_the_old_record_for_readers_and_writers(tmp_path):
    exp = tmp_path / "exp"
    _write(exp / "cell", 1)
    proc = _in_child(_WRITE_IN_CHILD.format(value=2, overwrite=True), "record.aside", tmp_path)
    assert proc.returncode == KILLED, proc.stderr
    assert not (exp / "cell").exists()  # between the two renames
    records = load_records([exp])  # the report reads the set-aside record, once
    assert len(records) == 1 and records.iloc[0]["cell"] == "cell"
    assert _io.remove_stale_temporaries(exp) != []  # the staged new one goes ...
    assert rec.read_record(exp / "cell")["value"] == 1  # ... the old one is back in place
    assert sorted(p.name for p in exp.iterdir()) == ["cell"]


def test_kill_after_an_overwrite_swapped_keeps_the_new_record(tmp_path):
    exp = tmp_path / "exp"
    _write(exp / "cell", 1)
    proc = _in_child(_WRITE_IN_CHILD.format(value=2, overwrite=True), "record.swapped", tmp_path)
    assert proc.returncode == KILLED, proc.stderr
    assert len(load_records([exp])) == 1  # the old one aside is not read twice
    _io.remove_stale_temporaries(exp)
    assert rec.read_record(exp / "cell")["value"] == 2
    assert sorted(p.name for p in exp.iterdir()) == ["cell"]


def test_a_live_writers_temporaries_are_kept_a_killed_ones_removed(tmp_path):
    """Cleaning beside a concurrent writer (a grid's other worker) removes nothing of its."""
    target = tmp_path / "cell"
    code = f"""
        import sys
        from genbench import _io
        with _io.staging_dir({str(target)!r}) as tmp:
            (tmp / "result.json").write_text("{{}}")
            print(tmp, flush=True)
            sys.stdin.readline()  # hold it until told
    """
    live = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        staged = Path(live.stdout.readline().strip())
        assert staged.is_dir()
        assert _io.remove_stale_temporaries(tmp_path) == []  # in use: kept, at any age
        old = 1.0
        os.utime(staged, (old, old))
        assert _io.remove_stale_temporaries(tmp_path) == []
        assert staged.is_dir()
        live.kill()  # now it is a killed writer's
        live.wait(timeout=30)
        assert _io.remove_stale_temporaries(tmp_path) == [staged]
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()


def test_cache_cleaning_removes_leftovers_but_leaves_set_aside_checkpoints_to_their_lock(
        tmp_path):
    uid = "0123456789abcdef0123456789abcdef"
    model = tmp_path / "models" / "key"
    model.mkdir(parents=True)
    (model / f".checkpoint.{uid}.tmp").mkdir()  # a killed save's staging folder
    (model / f".checkpoint.{uid}.old").mkdir()  # the only checkpoint: the swap was cut short
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / f".stats.npz.{uid}.tmp.npz").write_bytes(b"half")
    removed = _io.remove_stale_temporaries_below(tmp_path)
    assert sorted(p.name for p in removed) == [f".checkpoint.{uid}.tmp",
                                               f".stats.npz.{uid}.tmp.npz"]
    assert (model / f".checkpoint.{uid}.old").is_dir()
    _io.remove_stale_temporaries(model)  # under the model's lock (harness.train): put back
    assert sorted(p.name for p in model.iterdir()) == ["checkpoint"]


def test_fault_point_counts_hits_and_interrupts(monkeypatch):
    monkeypatch.setenv(_io.FAULT_ENV, "test.point@2:interrupt")
    _io._fault_hits.pop("test.point", None)
    _io.fault_point("test.point")  # the first hit passes
    _io.fault_point("other.point")
    with pytest.raises(KeyboardInterrupt):
        _io.fault_point("test.point")
    _io.fault_point("test.point")  # only the 2nd


# --------------------------------------------------------------------------- plain names


@pytest.mark.parametrize("name", [".", "..", "a/b", "/abs", "", ".hidden", "-x", "a" * 129,
                                  "a b", "caf\u00e9", "a\\b"])
def test_only_plain_names_are_folder_names(name):
    with pytest.raises(UserError, match="names one folder"):
        rec.check_name(name, "cell")


def test_plain_names_pass():
    for name in ("default", "digits-pixel-ncsnpp_tiny-ddgan-s4-5737b7e7", "a.b", "run_2+x@y"):
        assert rec.check_name(name, "cell") == name


def test_a_record_never_replaces_a_folder_genbench_did_not_write(tmp_path):
    mine = tmp_path / "exp" / "mine"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="thesis.tex"):
        _write(mine, 1, overwrite=True)
    (tmp_path / "exp" / "file").write_text("precious")
    with pytest.raises(UserError, match="not a folder"):
        _write(tmp_path / "exp" / "file", 1)
    foreign = tmp_path / "exp" / "foreign"
    foreign.mkdir()
    (foreign / rec.RESULT).write_text("[1, 2]")  # a result.json, but not a record
    with pytest.raises(UserError, match="did not write"):
        _write(foreign, 1, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "precious"
    assert (tmp_path / "exp" / "file").read_text() == "precious"
    assert (foreign / rec.RESULT).read_text() == "[1, 2]"
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize("override", ["cell=.", "cell=..", "cell=/ABS", "cell=a/b",
                                      "experiment=..", "experiment=.", "cell=mine"])
def test_bad_cell_and_experiment_names_exit_2_and_delete_nothing(run_cli, tmp_path, override):
    results = tmp_path / "results"
    exp = results / "default"
    kept = [exp / "other-cell" / rec.RESULT, tmp_path / "abs" / "keep.txt",
            results / "keep.txt", exp / "mine" / "notes.txt"]
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"cell": "other-cell", "status": "ok"}))
    override = override.replace("/ABS", str(tmp_path / "abs"))
    proc = run_cli("run", *TINY, override, "train.epochs=999", f"results_dir={results}",
                   timeout=300)
    line = _one_line_error(proc)
    assert "cell" in line or "experiment" in line
    for path in kept:
        assert path.is_file(), path
    assert not (tmp_path / "abs" / rec.RESULT).exists()
    assert _temporaries(tmp_path) == []


def test_a_grid_refuses_bad_names_before_it_runs(run_cli, tmp_path):
    proc = run_cli("run", "-m", *TINY, "cell=ok,..", f"results_dir={tmp_path / 'r'}",
                   timeout=300)
    assert "cell='..'" in _one_line_error(proc)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob(rec.RESULT))


# --------------------------------------------------------------------------- whole runs, killed


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted tiny run: its record and trained weights, and its cache without the
    model (feature classifier and reference statistics, so reruns need not fit them)."""
    from conftest import genbench_command

    root = tmp_path_factory.mktemp("reference")
    proc = subprocess.run([*genbench_command(), "run", *TINY, "train.ckpt_every=20",
                           f"results_dir={root / 'results'}", f"cache_dir={root / 'cache'}"],
                          cwd=root, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = (root / "results").rglob(rec.RESULT)
    (generator,) = (root / "cache" / "models").glob("*/generator.safetensors")
    return {"root": root, "record": json.loads(result.read_text()), "cell": result.parent.name,
            "weights": generator.read_bytes(), "cache": root / "cache"}


def _cache_without_models(reference, where: Path) -> Path:
    shutil.copytree(reference["cache"], where, ignore=shutil.ignore_patterns("models"))
    return where


def _same_result(record: dict, reference: dict) -> None:
    for key in ("fid", "precision", "recall", "nfe", "params"):
        assert record["metrics"][key] == reference["record"]["metrics"][key], key


def test_training_killed_in_a_checkpoint_swap_and_record_killed_before_its_rename(
        run_cli, tmp_path, reference):
    cache = _cache_without_models(reference, tmp_path / "cache")
    args = ("run", *TINY, "train.ckpt_every=20", f"results_dir={tmp_path / 'results'}",
            f"cache_dir={cache}")
    # 1. killed between the renames of the 2nd checkpoint swap (the 1st one is set aside)
    first = run_cli(*args, env={_io.FAULT_ENV: "swap.aside@2"})
    assert first.returncode == KILLED, first.stderr[-3000:]
    (model,) = [p for p in (cache / "models").iterdir() if p.is_dir()]
    assert not (model / "checkpoint").exists() and _io.previous_version(model / "checkpoint")
    # 2. resumes from the checkpoint set aside; killed between writing result.json and the rename
    second = run_cli(*args, env={_io.FAULT_ENV: "record.staged"})
    assert second.returncode == KILLED, second.stderr[-3000:]
    exp = tmp_path / "results" / "default"
    assert [p for p in _temporaries(exp) if (p / rec.RESULT).is_file()]
    # 3. uninterrupted: cleans up, trains nothing more, writes the one record
    third = run_cli(*args)
    assert third.returncode == 0, third.stderr[-3000:]
    assert (model / "generator.safetensors").read_bytes() == reference["weights"]  # bitwise
    records = list(exp.rglob(rec.RESULT))
    assert len(records) == 1 and records[0].parent.name == reference["cell"]
    record = json.loads(records[0].read_text())
    assert record["training"]["source"] == "cache"
    _same_result(record, reference)
    assert len(load_records([tmp_path / "results"])) == 1
    assert _temporaries(tmp_path / "results") == [] and _temporaries(model) == []


def test_overwrite_killed_at_each_step_keeps_a_record(run_cli, tmp_path, reference):
    results = tmp_path / "results"
    shutil.copytree(reference["root"] / "results", results)
    cache = tmp_path / "cache"
    shutil.copytree(reference["cache"], cache)  # the trained model too: no training here
    cell = results / "default" / reference["cell"]
    before = (cell / rec.RESULT).read_bytes()
    args = ("run", *TINY, "train.ckpt_every=20", f"results_dir={results}", f"cache_dir={cache}")
    for point in ("sample.batch", "record.staged", "record.aside"):
        proc = run_cli(*args, "--overwrite", env={_io.FAULT_ENV: point})
        assert proc.returncode == KILLED, (point, proc.stderr[-3000:])
        assert len(load_records([results])) == 1, point  # the old record, read once
    again = run_cli(*args)  # not --overwrite: the old record is put back and kept
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already recorded" in again.stderr
    assert (cell / rec.RESULT).read_bytes() == before
    done = run_cli(*args, "--overwrite")
    assert done.returncode == 0, done.stderr[-3000:]
    record = rec.read_record(cell)
    assert record["created"] >= json.loads(before)["created"]
    _same_result(record, reference)
    assert sorted(p.name for p in cell.parent.iterdir() if p.is_dir()) == [reference["cell"]]
    assert _temporaries(results) == []


# --------------------------------------------------------------------------- Ctrl-C


def _interrupted_line(proc) -> str:
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("genbench: interrupted")]
    return line


def test_ctrl_c_says_what_a_rerun_will_do(run_cli, tmp_path, reference):
    cache = tmp_path / "cache"
    shutil.copytree(reference["cache"], cache)
    args = ("run", *TINY, "train.ckpt_every=20", f"results_dir={tmp_path / 'results'}",
            f"cache_dir={cache}")
    line = _interrupted_line(run_cli(*args, env={_io.FAULT_ENV: "sample.batch:interrupt"}))
    assert "sampl" in line and "without training" in line and "checkpoint" not in line
    assert run_cli(*args).returncode == 0
    line = _interrupted_line(run_cli(*args, "--overwrite",
                                     env={_io.FAULT_ENV: "record.staged:interrupt"}))
    assert "earlier record is kept" in line and "without training" in line
    line = _interrupted_line(run_cli(*args, "--overwrite",
                                     env={_io.FAULT_ENV: "record.swapped:interrupt"}))
    assert "the record is complete" in line and "nothing to resume" in line  # the new one


def test_ctrl_c_during_training_names_the_checkpoint_or_its_absence(tmp_path, monkeypatch,
                                                                    capsys):
    from genbench import cli
    from genbench.training import loop

    real_step, calls = loop._one_step, {"n": 0}

    def interrupted_at(stop: int):
        def step(trainer, x, epoch, cfg):
            calls["n"] += 1
            if trainer.step == stop:
                raise KeyboardInterrupt  # mid-step: that step cannot be saved
            return real_step(trainer, x, epoch, cfg)
        return step

    args = ["run", *TINY, "train.ckpt_every=3", "eval.num_samples=10",
            f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}"]
    monkeypatch.setattr(loop, "_one_step", interrupted_at(0))
    assert cli.main(args) == 130
    err = capsys.readouterr().err
    assert "before its first checkpoint" in err and "from the beginning" in err
    assert "resume" not in err.split("genbench: interrupted")[1].replace("resumes", "")
    monkeypatch.setattr(loop, "_one_step", interrupted_at(4))
    assert cli.main(args) == 130
    err = capsys.readouterr().err
    assert "at step 4" in err and "from its checkpoint at step 3" in err


def test_ctrl_c_in_a_command_with_nothing_to_resume(tmp_path, monkeypatch, capsys):
    from genbench import cli
    from genbench.report import experiment

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "write_experiment_report", interrupted)
    (tmp_path / "results").mkdir()
    assert cli.main(["report", str(tmp_path / "results")]) == 130
    assert "nothing to resume" in capsys.readouterr().err
