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

import datetime
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

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


def launch_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of the launcher's group, before or without joining it: ``(0, 1)``
    outside one, or when its variables cannot be read (joining it then says why)."""
    try:
        env = launch_env()
    except UserError:
        return 0, 1
    return (env[0], env[1]) if env else (0, 1)


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

    ``device_type`` "cuda" uses ``nccl`` and pins this process to its GPU (:func:`gpu_index`:
    ``local_rank``, or the one GPU the launcher let it see); anything else uses ``gloo``."""
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
        torch.cuda.set_device(gpu_index(local))
    dist.init_process_group(backend=backend, rank=rank, world_size=world,
                            timeout=collective_timeout())
    return Context(rank, world, local, backend)


TIMEOUT_VARIABLE = "GENBENCH_DIST_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 120


def collective_timeout(environ: Mapping[str, str] | None = None) -> datetime.timedelta:
    """How long a rank waits in a collective before the group is declared hung.

    While rank 0 works alone - takes a model's cache lock (and may wait for another job that
    trains the same model), computes the reference statistics, times the cell, writes the
    record - the other ranks wait in a collective. torch's defaults (10 minutes for nccl, 30 for
    gloo) would abort them during such waits; genbench waits ``GENBENCH_DIST_TIMEOUT_MIN``
    minutes (default 120) for either backend."""
    env = os.environ if environ is None else environ
    text = env.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT_MIN))
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        raise UserError(f"{TIMEOUT_VARIABLE}={text!r}: give the collective timeout in minutes "
                        f"(a positive number; default {DEFAULT_TIMEOUT_MIN})")
    return datetime.timedelta(minutes=minutes)


def gpu_index(local_rank: int, visible: int | None = None) -> int:
    """The CUDA device index of the process with ``local_rank`` among the ``visible`` GPUs
    (default: ``torch.cuda.device_count()``): ``local_rank`` itself when every GPU of the node is
    visible (torchrun), 0 when the launcher gave each task its own GPU (SLURM's
    ``--gpus-per-task=1`` or ``--gpu-bind``: each task sees one device, numbered 0)."""
    count = torch.cuda.device_count() if visible is None else visible
    if local_rank < count:
        return local_rank
    if count == 1:
        return 0
    raise UserError(f"local rank {local_rank} has no GPU of its own: this process sees {count} "
                    f"GPU(s); start at most one process per GPU (torchrun --nproc-per-node, "
                    f"srun --gpus-per-task=1)")


def barrier() -> None:
    """Wait for every rank (nothing to wait for in a world of one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# --------------------------------------------------------------------------- data parallel


@dataclass(frozen=True)
class BatchShard:
    """This rank's part of a global training batch of ``batch`` images: the ``positions`` in the
    global batch it computes. Every rank draws the step's randomness for the whole global batch
    (from the same seeded streams) and keeps its positions (:meth:`take`), so the union of the
    ranks' work is the one-process step on the global batch."""

    batch: int
    positions: torch.Tensor  # int64 [batch // world_size]

    def take(self, t: torch.Tensor) -> torch.Tensor:
        """Rows ``positions`` of a tensor drawn for the whole global batch."""
        return t.index_select(0, self.positions.to(t.device))

    def global_shape(self, local: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
        """The shape of a draw for the global batch, given the local one."""
        return (self.batch, *tuple(local)[1:])


def batch_shard(ctx: Context, batch: int, group: int = 1,
                setting: str = "train.batch_size") -> BatchShard | None:
    """``ctx``'s positions in a global batch (None in a world of one).

    ``group``: the batch is made of ``group`` strided blocks whose row ``j`` of each form one
    group (the ``view(group, -1, ...)`` grouping of a minibatch-stddev layer); each rank then takes
    the same rows ``j`` of every block, so a group never straddles ranks and the rank's own
    grouping of its rows (again ``view(group, -1)``) finds the same groups. ``group=1`` is
    ``ctx.shard(batch)``. The global batch must split evenly (equal shards make the mean over
    ranks of the per-rank mean gradients the global mean): else a one-line UserError.
    """
    if not ctx.distributed:
        return None
    if batch % (ctx.world_size * group):
        need = f"{ctx.world_size} processes" + (f" x {group} (the discriminator's minibatch-"
                                                f"stddev group)" if group > 1 else "")
        raise UserError(f"{setting}={batch} (the global batch) does not split evenly over "
                        f"{need}; use a multiple of {ctx.world_size * group}")
    rows = ctx.shard(batch // group)
    per_block = batch // group
    positions = [g * per_block + j for g in range(group) for j in rows]
    return BatchShard(batch, torch.tensor(positions, dtype=torch.long))


def take(shard: BatchShard | None, t: torch.Tensor) -> torch.Tensor:
    """``shard.take(t)``, or ``t`` itself in a world of one."""
    return t if shard is None else shard.take(t)


def global_shape(shard: BatchShard | None, local: torch.Size | tuple[int, ...]
                 ) -> tuple[int, ...]:
    """The shape to draw for the whole global batch (``local`` in a world of one)."""
    return tuple(local) if shard is None else shard.global_shape(local)


_DRAWING: list[BatchShard] = []  # the shard of the training step running now (innermost last)


@contextmanager
def drawing_for(shard: BatchShard | None) -> Iterator[None]:
    """Within the block (one training step), :func:`drawing_shard` is ``shard``: layers that draw
    from torch's global generator (dropout, :class:`genbench.backbones.layers.BatchDropout`)
    draw for the whole global batch and keep this rank's rows. Nothing in a world of one."""
    if shard is None:
        yield
        return
    _DRAWING.append(shard)
    try:
        yield
    finally:
        _DRAWING.pop()


def drawing_shard() -> BatchShard | None:
    """The shard of the data-parallel training step running now (None outside one)."""
    return _DRAWING[-1] if _DRAWING else None


def _flat_all_reduce(tensors: list[torch.Tensor]) -> None:
    """Average ``tensors`` over the ranks in place, in one all-reduce of their concatenation
    (in their own dtype, as DDP's gradient buckets)."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def average_gradients(params) -> None:
    """Replace each parameter's gradient by its mean over the ranks (no-op in a world of one).

    This is the all-reduce DistributedDataParallel performs after ``backward`` (sum, divided by
    the world size), done explicitly after the whole backward pass - as
    ``NVlabs/stylegan2-ada-pytorch training/training_loop.py`` does for the same reason: R1's
    double backward, a discriminator frozen for the generator's update and gradients taken with
    ``torch.autograd.grad`` (VQGAN's adaptive weight) are outside what DDP's hooks support. Call
    it before gradient clipping and the optimizer step; every rank then holds the same gradient.
    """
    if not current().distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    _flat_all_reduce(grads)


def average_tensors(tensors: list[torch.Tensor]) -> None:
    """Average floating-point tensors (gradients taken by hand, BatchNorm running statistics)
    over the ranks in place (no-op in a world of one)."""
    if current().distributed:
        _flat_all_reduce([t for t in tensors if t.is_floating_point()])


def _wire() -> torch.device:
    """Where small host values travel: the GPU for nccl (it moves CUDA tensors only), else CPU."""
    return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")


def average_floats(values: dict[str, float]) -> dict[str, float]:
    """The mean over the ranks of each logged value (in float64; the values themselves in a
    world of one): with equal shards the mean of per-rank batch means is the global batch mean,
    and every rank logs and checks the same numbers."""
    if not current().distributed or not values:
        return values
    keys = sorted(values)
    flat = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_wire())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    return {k: float(v) for k, v in zip(keys, flat.cpu().tolist())}


def broadcast_modules(modules) -> None:
    """Give every rank rank 0's parameters and buffers (no-op in a world of one)."""
    if not current().distributed:
        return
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def broadcast_json(obj):
    """Rank 0's ``obj`` on every rank (``obj`` itself in a world of one); sent as JSON text in a
    byte tensor (what JSON cannot write as its ``str``), so nothing is unpickled."""
    if not current().distributed:
        return obj
    data = json.dumps(obj, default=str).encode() if dist.get_rank() == 0 else b""
    size = torch.tensor([len(data)], dtype=torch.long, device=_wire())
    dist.broadcast(size, src=0)
    buf = (torch.frombuffer(bytearray(data), dtype=torch.uint8) if data
           else torch.empty(int(size), dtype=torch.uint8)).to(_wire())
    dist.broadcast(buf, src=0)
    return json.loads(bytes(buf.cpu().tolist()).decode())


# --------------------------------------------------------------------------- the main rank
#
# A trained artifact (a denoiser in the model cache, a fitted autoencoder) and a cell's record are
# looked up, locked, written and recorded by rank 0 alone: the other ranks must neither take the
# cache lock (two processes of one run would wait on each other) nor write. on_main runs a
# function on rank 0 and gives every rank its result, so all ranks take the same branch (train or
# load; the step cost cached or measured) and the collective operations stay matched. A failure
# on rank 0 reaches the other ranks as an error instead of leaving them waiting.


T = TypeVar("T")


class MainRankFailed(RuntimeError):
    """Raised on the other ranks when what rank 0 did for them failed (rank 0 raises its own)."""


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0, its result on every rank (in a world of one, just ``fn()``): the
    others receive it as JSON (what :func:`json.dumps` cannot write goes as its ``str``, as in
    records), rank 0 keeps its own. When ``fn`` raises on rank 0, rank 0 re-raises and the
    others raise :class:`MainRankFailed` naming the error."""
    ctx = current()
    if not ctx.distributed:
        return fn()
    if ctx.is_main:
        try:
            value = fn()
        except BaseException as exc:
            broadcast_json({"error": f"{type(exc).__name__}: {str(exc).strip()}"})
            raise
        broadcast_json({"value": value})
        return value
    answer = broadcast_json(None)
    if "error" in answer:
        raise MainRankFailed(f"rank 0 stopped: {answer['error']}")
    return answer["value"]


@contextmanager
def main_holds(lock: Callable[[], AbstractContextManager[Any]]) -> Iterator[None]:
    """``lock()`` held by rank 0 for the block; the other ranks run the block without it (they
    follow rank 0's decisions, taken under the lock, through :func:`on_main`)."""
    if current().is_main:
        with lock():
            yield
    else:
        yield


def main_first(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, then - once it has returned - on the other ranks, which find what it
    cached (a converted released file); in a world of one, just ``fn()``. A failure on rank 0
    stops the others with :class:`MainRankFailed` instead of running ``fn`` there too."""
    if not current().is_main:
        on_main(lambda: None)  # rank 0's signal that it is done
        return fn()
    result: list[T] = []
    on_main(lambda: result.append(fn()))
    return result[0]


# --------------------------------------------------------------------------- evaluation


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


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of ``tensor`` (in place; ``tensor`` itself in a world of one), on any
    device (under nccl a CPU tensor is reduced on this rank's GPU). Use float64 for statistics:
    the sum, not a mean of means, is what is reduced."""
    if dist.is_available() and dist.is_initialized():
        sent = tensor.to(_wire())  # nccl reduces CUDA tensors only: a CPU one goes there and back
        dist.all_reduce(sent, op=dist.ReduceOp.SUM)
        if sent is not tensor:
            tensor.copy_(sent)
    return tensor
