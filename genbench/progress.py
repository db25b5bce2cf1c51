"""Progress bars (tqdm) that say which grid cell they belong to.

Every bar genbench shows (training, sampling, feature extraction, timing) is made by :func:`bar`.
Outside a grid it is a plain ``tqdm`` bar. A grid's job names its cell once, before the cell
runs (:func:`name_cell`, called by :class:`genbench.harness.grid.NumberedJob` in the process
that runs the cell, a joblib worker or a SLURM node included): every bar then starts with the
cell (``cell 2/4 sampler=lddgan | train adversarial: 45%|...``). Parallel workers share one
terminal, where tqdm's carriage-return redraws would overwrite each other on one line, so there a
bar writes whole lines instead, one per refresh, at most every :data:`LINE_INTERVAL_S` seconds
(and its last state when it closes).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm.auto import tqdm

LINE_INTERVAL_S = 15.0  # a parallel worker's bar: one line per bar at most this often
LABEL_CHARS = 40  # what varies is added to the cell number while it is this short

_cell: str | None = None
_lines = False


def cell_label(number: int, total: int, varying: str = "") -> str:
    """``cell 2/4 sampler=lddgan``: the cell's number, with what sets it apart when short."""
    label = f"cell {number}/{total}"
    return f"{label} {varying}" if varying and len(varying) <= LABEL_CHARS else label


def name_cell(label: str | None, *, lines: bool = False) -> None:
    """Prefix every bar made from now on in this process with ``label`` (None: no prefix);
    ``lines``: write whole lines (a worker running beside others)."""
    global _cell, _lines
    _cell, _lines = label, bool(lines) and label is not None


class _Lines:
    """A stream for tqdm that turns each carriage-return redraw into a line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.encoding = getattr(stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def bar(iterable: Any = None, *, desc: str = "", **kwargs: Any) -> tqdm:
    """``tqdm(iterable, desc=desc, **kwargs)``, named by the grid cell when there is one."""
    if _cell:
        desc = f"{_cell} | {desc}" if desc else _cell
    if _lines:
        kwargs.update(file=_Lines(kwargs.get("file") or sys.stderr), mininterval=LINE_INTERVAL_S,
                      dynamic_ncols=False, ncols=100, ascii=True)
    return tqdm(iterable, desc=desc, **kwargs)


__all__ = ["LINE_INTERVAL_S", "bar", "cell_label", "name_cell"]
