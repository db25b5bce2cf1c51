"""registry/ and baselines/ ship inside the wheel: a non-editable install composes every config."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel (isolated build, as pip does) and install it into a private folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp / "dist"), str(REPO)], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail(f"wheel build failed: {build.stderr[-2000:]}")
    (wheel,) = (tmp / "dist").glob("genbench-*.whl")
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    return wheel, target


def test_wheel_contains_configs_and_baselines(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "genbench/_configs/config.yaml" in names
    assert "genbench/_configs/backbone/ncsnpp.yaml" in names
    assert "genbench/_baselines/ddgan_cifar10.yaml" in names
    assert "genbench/_configs/hydra/sweeper/genbench.yaml" in names
    # the grid's Hydra sweeper, in Hydra's plugin namespace (no __init__.py of its own there)
    assert "hydra_plugins/genbench_grid/grid_sweeper.py" in names
    assert "hydra_plugins/__init__.py" not in names


def test_non_editable_install_runs_from_anywhere(installed, tmp_path):
    _, target = installed
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import genbench, genbench.config as c; "
         "print(genbench.__file__); print(c.config_root()); print(c.baselines_root())"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(str(target) in line for line in where), where
    listed = subprocess.run([sys.executable, "-m", "genbench.cli", "list", "baseline"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "ddgan_cifar10" in listed.stdout, listed.stderr
    prof = subprocess.run([sys.executable, "-m", "genbench.cli", "profile", "backbone=ncsnpp_tiny",
                           "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert prof.returncode == 0, prof.stderr[-2000:]
    assert json.loads(prof.stdout)["nfe"] == 4
    shown = subprocess.run([sys.executable, "-m", "genbench", "run", "--cfg", "hydra"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "hydra_plugins.genbench_grid.grid_sweeper.GridSweeper" in shown.stdout
