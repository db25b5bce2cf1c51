"""How a genbench process sets up torch's CPU threads, before torch is imported.

Why: torch's CPU operators run in an OpenMP thread pool (GNU libgomp in the Linux wheels). At the
end of each parallel region a libgomp worker that has no more work spin-waits (busy-loops) for a
while before it sleeps: ``OMP_WAIT_POLICY`` unset means a spin count of 300,000 (``GOMP_SPINCOUNT``,
libgomp manual, "GOMP_SPINCOUNT"), ``PASSIVE`` means none. On a machine whose cores another busy
process also wants, those spinning workers burn the time slices that the thread they wait for
needs, so a step made of many small parallel operators (a small network's training or sampling
step) can run many times slower than the fair share; ``benchmarks/contention.py`` measures it.
With ``OMP_WAIT_POLICY=PASSIVE`` a waiting worker sleeps at once and gives its core back.

libgomp reads its environment once, when torch loads it, so :func:`setup_threads` must run before
the first ``import torch`` of the process: the ``genbench`` command calls it first thing in
:func:`genbench.cli.main`, and this module imports nothing but the standard library. A value the
user set (``OMP_WAIT_POLICY=ACTIVE ...``) wins: the defaults are only ``setdefault``.

The intra-op thread count is left to torch: its default (``omp_get_max_threads``) already follows
the process's CPU affinity (``taskset``, SLURM's ``--cpus-per-task`` binding), which
:func:`thread_conditions` records next to torch's count.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from typing import Any

DEFAULTS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}
"""Environment defaults of a genbench process (a value already set is kept)."""

RECORDED = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables recorded with every timing (None where unset)."""

_STATE: dict[str, Any] = {"called": False, "set": [], "before_torch": None}


def setup_threads(environ: MutableMapping[str, str] | None = None) -> dict[str, Any]:
    """Set :data:`DEFAULTS` in ``environ`` (default ``os.environ``) where unset; return what was
    done: ``set`` (the names this call set) and ``before_torch``. When torch was already imported
    (``before_torch`` False: genbench's CLI called from a Python program that uses torch) libgomp
    has read its environment, so nothing is set: the environment keeps saying what is in force."""
    env = os.environ if environ is None else environ
    before_torch = "torch" not in sys.modules
    done = [name for name in DEFAULTS if name not in env] if before_torch else []
    for name in done:
        env[name] = DEFAULTS[name]
    result = {"set": done, "before_torch": before_torch}
    if environ is None:
        _STATE.update(called=True, **result)
    return result


def _affinity_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return None


def thread_conditions() -> dict[str, Any]:
    """The process's thread setup, for the record of a timing: the variables of :data:`RECORDED`
    as the process sees them, the CPUs it may run on (``os.sched_getaffinity``), and whether
    genbench's :func:`setup_threads` ran before torch was imported (``threads_setup``:
    ``"genbench"`` when it did, ``"too late"`` when torch was imported first, ``"none"`` when it
    was not called, e.g. genbench used as a library)."""
    if not _STATE["called"]:
        setup = "none"
    else:
        setup = "genbench" if _STATE["before_torch"] else "too late"
    return {"env": {name: os.environ.get(name) for name in RECORDED},
            "affinity_cpus": _affinity_cpus(), "threads_setup": setup}
