"""Two (or more) CPU processes in one gloo group, as ``torchrun`` would start them: the setup
that tests/test_distributed_training.py and tests/test_distributed_harness.py share.

:func:`spawn` starts ``worker(rank, world, port, *args)`` in ``world`` processes
(``torch.multiprocessing.spawn``) with a free rendezvous port; the worker calls :func:`join`
first, which sets torchrun's variables, one torch thread per process (two processes on a 2-core
machine), and joins the group through :func:`genbench.distributed.init`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join(rank: int, world: int, port: int) -> None:
    """In a spawned worker: become rank ``rank`` of ``world`` (gloo, 127.0.0.1:``port``)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from genbench import distributed

    distributed.init("cpu")


def spawn(worker: Callable[..., None], world: int, *args: Any) -> None:
    """Run ``worker(rank, world, port, *args)`` in ``world`` processes; raises if one fails."""
    mp.spawn(worker, args=(world, free_port(), *args), nprocs=world, join=True)
