"""Decisions and writes that the main rank makes for every rank of a data-parallel run.

A trained artifact (a denoiser in the model cache, a fitted autoencoder) is looked up, locked,
written and recorded by rank 0 alone: the other ranks must neither take the cache lock (two
processes of one run would wait on each other) nor write. :func:`on_main` runs a function on
rank 0 and gives every rank its JSON-safe result, so all ranks take the same branch (train or
load; the step cost cached or measured) and the collective operations of training stay matched.
A failure on rank 0 reaches the other ranks as an error instead of leaving them waiting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from genbench.distributed import broadcast_json, current

T = TypeVar("T")


class MainRankFailed(RuntimeError):
    """Raised on the other ranks when what rank 0 did for them failed (rank 0 raises its own)."""


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0, its JSON-safe result on every rank (in a world of one, just
    ``fn()``). When ``fn`` raises on rank 0, rank 0 re-raises and the others raise
    :class:`MainRankFailed` naming the error."""
    ctx = current()
    if not ctx.distributed:
        return fn()
    if ctx.is_main:
        try:
            value = fn()
        except BaseException as exc:
            broadcast_json({"error": f"{type(exc).__name__}: {str(exc).strip()}"})
            raise
        return broadcast_json({"value": value})["value"]
    answer = broadcast_json(None)
    if "error" in answer:
        raise MainRankFailed(f"rank 0 stopped: {answer['error']}")
    return answer["value"]


@contextlib.contextmanager
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
