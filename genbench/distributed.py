"""The process group a genbench command runs in: one process, or the ranks of torch.distributed.

genbench does not start processes itself. It joins the group that the engine the user already has
started: ``torchrun`` (environment ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``; PyTorch's elastic launcher) or SLURM's ``srun`` / submitit tasks (``SLURM_PROCID``,
``SLURM_NTASKS``, ``SLURM_LOCALID``; the rendezvous address is ``MASTER_ADDR`` when set, else
``SLURM_LAUNCH_NODE_IPADDR``, and the port ``MASTER_PORT``, else one derived from the job id).
submitit's local executor (Hydra's ``hydra/launcher=submitit_local``) starts its tasks with
``SUBMITIT_LOCAL_GLOBALID``, ``SUBMITIT_LOCAL_NTASKS``, ``SUBMITIT_LOCAL_LOCALID`` and
``SUBMITIT_LOCAL_JOB_ID`` (submitit 1.5, ``submitit/local/local.py``) and nothing of SLURM's: its
tasks share one machine, so the rendezvous is ``127.0.0.1`` and the port derives from the job id.
Without any of these, or with a world of one, everything runs in this process and no group is made.

:func:`init` makes the group once per process (``nccl`` for CUDA devices, ``gloo`` otherwise) and
returns a :class:`Context`; :func:`current` tells any module where it runs without making one.
Only the main rank (rank 0) writes files; :func:`barrier` lets the others wait for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from genbench.errors import UserError


@dataclass(frozen=True)
class Context:
    """This process's place in the group (a world of one when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> range:
        """This rank's contiguous block of ``range(n)``; blocks differ in length by at most one,
        cover every index exactly once and are in rank order (so gathering them in rank order
        gives ``range(n)`` back, with no padding duplicates)."""
        return range(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)


SINGLE = Context()


def _int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise UserError(f"environment variable {name}={environ[name]!r} is not an integer "
                        f"(set by the launcher: torchrun or srun)") from None


def launch_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` set by torchrun or SLURM, or None outside a launcher.

    torchrun's variables win over SLURM's (torchrun run inside an allocation), SLURM's over
    submitit's local executor's; SLURM and submitit count only when they started more than one
    task."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env and _int(env, "SLURM_NTASKS") > 1:
        rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
    elif ("SUBMITIT_LOCAL_GLOBALID" in env and "SUBMITIT_LOCAL_NTASKS" in env
          and _int(env, "SUBMITIT_LOCAL_NTASKS") > 1):
        rank, world = _int(env, "SUBMITIT_LOCAL_GLOBALID"), _int(env, "SUBMITIT_LOCAL_NTASKS")
        local = _int(env, "SUBMITIT_LOCAL_LOCALID") if "SUBMITIT_LOCAL_LOCALID" in env else rank
    else:
        return None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UserError(f"inconsistent launcher environment: rank {rank}, world size {world}, "
                        f"local rank {local}")
    return rank, world, local


def _rendezvous(environ: Mapping[str, str]) -> tuple[str, str]:
    """MASTER_ADDR / MASTER_PORT for a SLURM- or submitit-started group that did not set them."""
    if "SLURM_PROCID" not in environ and "SUBMITIT_LOCAL_GLOBALID" in environ:
        # submitit's local executor: every task on this machine; its job id is the pid of the
        # process that started the tasks, so concurrent local jobs get different ports
        port = environ.get("MASTER_PORT") or str(
            20000 + int(environ.get("SUBMITIT_LOCAL_JOB_ID", "0") or 0) % 20000)
        return environ.get("MASTER_ADDR") or "127.0.0.1", port
    addr = environ.get("MASTER_ADDR") or environ.get("SLURM_LAUNCH_NODE_IPADDR")
    if not addr:
        raise UserError("a multi-task SLURM job needs MASTER_ADDR (or SLURM_LAUNCH_NODE_IPADDR) "
                        "to find rank 0; export MASTER_ADDR=<rank 0's host>")
    port = environ.get("MASTER_PORT") or str(20000 + int(environ.get("SLURM_JOB_ID", "0")) % 20000)
    return addr, port


def current() -> Context:
    """Where this process runs: the initialised group's rank and size, else a world of one."""
    if dist.is_available() and dist.is_initialized():
        env = launch_env()
        local = env[2] if env else dist.get_rank()
        return Context(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())
    return SINGLE


def init(device_type: str = "cpu") -> Context:
    """Join the launcher's group (once per process); a world of one makes no group.

    ``device_type`` "cuda" uses ``nccl`` and pins this process to GPU ``local_rank``; anything else
    uses ``gloo``."""
    if dist.is_available() and dist.is_initialized():
        return current()
    env = launch_env()
    if env is None or env[1] == 1:
        return SINGLE
    rank, world, local = env
    if not dist.is_available():
        raise UserError("this torch build has no torch.distributed; run one process")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        addr, port = _rendezvous(os.environ)
        os.environ.setdefault("MASTER_ADDR", addr)
        os.environ.setdefault("MASTER_PORT", port)
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return Context(rank, world, local, backend)


def barrier() -> None:
    """Wait for every rank (nothing to wait for in a world of one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on the main rank first, then on the others (which then find what it cached:
    downloaded weights, a trained feature classifier); in a world of one, just run it."""
    main = current().is_main
    if not main:
        barrier()
    yield
    if main:
        barrier()


def gather_objects(value: Any, *, to_main_only: bool = False) -> list[Any] | None:
    """Every rank's ``value`` in rank order (``[value]`` in a world of one); with
    ``to_main_only`` only rank 0 receives the list (the others get None)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    world = dist.get_world_size()
    if to_main_only:
        out: list[Any] | None = [None] * world if dist.get_rank() == 0 else None
        dist.gather_object(value, out, dst=0)
        return out
    out = [None] * world
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself in a world of one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of ``tensor`` (in place; ``tensor`` itself in a world of one). Use
    float64 for statistics: the sum, not a mean of means, is what is reduced."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
