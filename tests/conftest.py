"""Shared fixtures: run the `genbench` command line as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def genbench_command() -> list[str]:
    """The installed console script, or the module when running from a bare checkout."""
    script = shutil.which("genbench")
    return [script] if script else [sys.executable, "-m", "genbench.cli"]


@pytest.fixture
def run_cli(tmp_path):
    """Run ``genbench ARGS`` in an empty folder; returns CompletedProcess (text)."""

    def run(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900):
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        return subprocess.run([*genbench_command(), *args], cwd=cwd or tmp_path, env=full_env,
                              capture_output=True, text=True, timeout=timeout)

    return run


TINY = ["backbone=ncsnpp_tiny", "train=tiny", "eval=tiny", "progress=false"]


def write_distribution(root: Path, module: str, source: str) -> None:
    """A minimal installed distribution: ``module`` plus a dist-info with its entry point."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[genbench.plugins]\n{module} = {module}\n")
    (info / "RECORD").write_text("")
