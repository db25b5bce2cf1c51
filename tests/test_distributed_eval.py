"""Sharded evaluation (issue 15, part 2): two gloo processes give the one-process samples and
numbers; eval.rng=official is refused under a world of more than one; submitit's local tasks
are a launcher environment; a cell run by torchrun on 2 processes records what 1 process does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY
from gloo_group import free_port

from genbench.distributed import Context, launch_env
from genbench.errors import UserError
from genbench.harness.generate import check_rng, generate

WORKER = Path(__file__).with_name("distributed_worker.py")
REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
           and not k.startswith(("SLURM_", "SUBMITIT_"))}
    path = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


def _worker(out: Path, world: int, *args: str) -> dict:
    """Run the worker alone (world 1) or as ``world`` ranks of a gloo group; rank 0's result."""
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(out), *args],
                              env=_env(**({} if world == 1 else {
                                  "RANK": str(r), "WORLD_SIZE": str(world), "LOCAL_RANK": str(r),
                                  "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(world)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)[-3000:]
    return torch.load(out, weights_only=True)


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory) -> tuple[dict, dict]:
    folder = tmp_path_factory.mktemp("sharded")
    return _worker(folder / "one.pt", 1), _worker(folder / "two.pt", 2)


def test_two_ranks_draw_the_one_process_sample_set(one_and_two):
    one, two = one_and_two
    assert one["world"] == 1 and two["world"] == 2 and two["block"] == 20  # each rank its half
    assert one["samples"].dtype == torch.uint8 and one["samples"].shape[0] == 40
    assert torch.equal(one["samples"], two["samples"])  # uint8-equal, in sample order
    assert torch.equal(one["features"], two["features"])  # gathered without padding duplicates


def test_two_ranks_reduce_the_one_process_statistics_and_metrics(one_and_two):
    one, two = one_and_two
    assert two["n"] == one["n"] == 40
    torch.testing.assert_close(two["mu"], one["mu"], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(two["sigma"], one["sigma"], rtol=1e-10, atol=1e-13)
    assert two["fid"] == pytest.approx(one["fid"], rel=1e-6)
    for key in ("precision", "recall", "kid_mean", "fid_ci"):
        assert two[key] == pytest.approx(one[key], rel=1e-9), key


def test_a_perturbed_weight_changes_the_sharded_samples_and_fid(one_and_two, tmp_path):
    one, _ = one_and_two
    changed = _worker(tmp_path / "perturbed.pt", 2, "perturb")
    assert not torch.equal(changed["samples"], one["samples"])
    assert changed["fid"] != pytest.approx(one["fid"], rel=1e-6)


def test_the_official_stream_cannot_be_split():
    check_rng("official", 1)
    check_rng("per_sample", 4)
    with pytest.raises(UserError, match="eval.rng=official .* cannot be split over 2"):
        check_rng("official", 2)
    with pytest.raises(UserError, match="eval.rng='other'"):
        check_rng("other", 1)
    with pytest.raises(UserError, match="cannot be split"):  # generate itself refuses
        generate(None, None, None, (1, 8, 8), num_samples=4, batch_size=2, seed=0,
                 device=torch.device("cpu"), rng="official", context=Context(1, 2))


def test_submitit_local_tasks_are_a_launcher_environment():
    from genbench.distributed import _rendezvous

    task = {"SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1",
            "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_JOB_ID": "4242"}
    assert launch_env(task) == (1, 2, 1)
    assert _rendezvous(task) == ("127.0.0.1", str(20000 + 4242))
    # one task, or submitit's controller (no GLOBALID): not a group
    assert launch_env({**task, "SUBMITIT_LOCAL_NTASKS": "1"}) is None
    assert launch_env({"SUBMITIT_LOCAL_NTASKS": "2"}) is None
    # a real SLURM job: SLURM's variables win over submitit's
    slurm = {**task, "SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0",
             "SLURM_LAUNCH_NODE_IPADDR": "10.0.0.1", "SLURM_JOB_ID": "7"}
    assert launch_env(slurm) == (3, 4, 0)
    assert _rendezvous(slurm) == ("10.0.0.1", "20007")
    with pytest.raises(UserError):
        launch_env({**task, "SUBMITIT_LOCAL_GLOBALID": "2"})


@pytest.mark.slow
def test_a_cell_under_torchrun_records_the_one_process_numbers(tmp_path):
    """``torchrun --nproc_per_node=2 -m genbench run ...`` on a given checkpoint (no training)
    records the metrics of the same cell run in one process; timing says it is rank 0's."""
    from genbench.config import compose_plain
    from genbench.harness.build import build_components
    from genbench.harness.train import _new_backbone
    from genbench.training.checkpoint import save_weights

    args = [*TINY, "dataset.split=test", "device=cpu", "eval.num_samples=60",
            "eval.batch_size=30", "eval.metrics=[fid,precision_recall,kid]"]
    cfg = compose_plain(args)
    weights = tmp_path / "g.safetensors"
    save_weights(weights, {"G_ema": _new_backbone(cfg, build_components(cfg),
                                                  "adversarial")})
    common = [*args, f"checkpoint={weights}", f"cache_dir={tmp_path / 'cache'}"]
    records = {}
    for name, launcher in [("one", []), ("two", ["-m", "torch.distributed.run",
                                                 "--nproc_per_node=2",
                                                 f"--master_port={free_port()}"])]:
        command = ([sys.executable, *launcher, "-m", "genbench", "run", *common,
                    f"results_dir={tmp_path / name}"] if launcher
                   else [sys.executable, "-m", "genbench", "run", *common,
                         f"results_dir={tmp_path / name}"])
        done = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("record:  ") == 1  # rank 0 alone reports (torchrun joins both)
        assert (tmp_path / name / "default" / "report.html").is_file()
        [path] = (tmp_path / name / "default").glob("*/result.json")
        records[name] = json.loads(path.read_text())
    one, two = records["one"], records["two"]
    assert one["status"] == two["status"] == "ok"
    for key in ("fid", "precision", "recall", "kid_mean", "fid_infinity"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-6), key
    assert two["metrics"]["fid_ci"] == pytest.approx(one["metrics"]["fid_ci"], rel=1e-6)
    assert two["metric_recipes"]["fid"]["num_fake"] == 60
    assert two["distributed"]["world_size"] == 2 and "distributed" not in one
    assert two["timing"]["scope"] == "one device (rank 0 of 2)"
    assert one["timing"]["scope"] == "one device"
    assert (tmp_path / "two" / "default" / path.parent.name / "samples.png").read_bytes() == (
        tmp_path / "one" / "default" / path.parent.name / "samples.png").read_bytes()


def test_a_failed_distributed_cell_is_recorded_by_rank_0_only(tmp_path, monkeypatch):
    from genbench.config import compose_plain
    from genbench.harness import record as rec
    from genbench.harness.cell import paths
    from genbench.harness.task import _record

    cfg = compose_plain([*TINY, f"results_dir={tmp_path}"])
    cell_dir = paths(cfg)[1]
    task = {"SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_LOCALID": "1"}
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "1")
    for k, v in task.items():
        monkeypatch.setenv(k, v)
    assert _record(cfg, RuntimeError("boom")) == "RuntimeError: boom"
    assert not rec.is_recorded(cell_dir)  # rank 1 only says it
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "0")
    _record(cfg, RuntimeError("boom"))
    assert rec.read_record(cell_dir)["error"] == "RuntimeError: boom"


def test_torchrun_grid_runs_each_cell_on_all_ranks(tmp_path):
    """``torchrun --nproc_per_node=2 -m genbench run --grid``: the cells run one after another,
    each on both processes; rank 0 alone plans aloud, saves grid.json (one sweep folder: rank 0's
    ``${now:}``), writes the report and prints the summary."""
    from genbench.config import compose_plain
    from genbench.harness.build import build_components
    from genbench.harness.train import _new_backbone
    from genbench.training.checkpoint import save_weights

    args = [*TINY, "dataset.split=test", "device=cpu", "eval.num_samples=20",
            "eval.batch_size=10", "eval.metrics=[fid]"]
    cfg = compose_plain(args)
    weights = tmp_path / "g.safetensors"
    save_weights(weights, {"G_ema": _new_backbone(cfg, build_components(cfg), "adversarial")})
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               f"--master_port={free_port()}", "-m", "genbench", "run", "--grid", *args,
               "eval.seed=0,1", f"checkpoint={weights}", f"cache_dir={tmp_path / 'cache'}",
               f"results_dir={tmp_path / 'out'}"]
    done = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("grid: 2 cells: 2 ran") == 1, done.stdout
    assert done.stderr.count("[grid] running 2 of 2 cells") == 1, done.stderr[-3000:]
    experiment = tmp_path / "out" / "default"
    records = [json.loads(p.read_text()) for p in sorted(experiment.glob("*/result.json"))]
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert all(r["distributed"]["world_size"] == 2 for r in records)
    assert {r["config"]["eval"]["seed"] for r in records} == {0, 1}
    [sweep] = (experiment / ".hydra").iterdir()
    assert json.loads((sweep / "grid.json").read_text())["launcher"] == "basic"
    assert (experiment / "report.html").is_file()


def test_torchrun_grid_refuses_a_launcher_of_its_own(monkeypatch):
    """Under torchrun the cells run in its processes: a grid launcher that would start more
    processes (each inheriting the group's variables) is a one-line error before anything runs."""
    from omegaconf import open_dict

    from genbench.config import compose
    from genbench.harness.grid import _join_group

    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    fixed = compose([], with_hydra=True)
    with open_dict(fixed):  # what hydra/launcher=joblib selects
        fixed.hydra.runtime.choices["hydra/launcher"] = "joblib"
    with pytest.raises(UserError, match=r"under torchrun/srun \(2 processes\).*drop "
                                        r"hydra/launcher=joblib") as err:
        _join_group(fixed)
    assert "\n" not in str(err.value)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert _join_group(fixed) is False  # a world of one: no group, nothing to check
