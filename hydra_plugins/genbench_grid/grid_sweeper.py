"""genbench's grid sweeper: Hydra's basic-sweeper product, planned as a benchmark grid.

A Hydra Sweeper plugin (``hydra.plugins.sweeper.Sweeper``; Hydra docs, "Plugin development"),
selected by ``hydra/sweeper: genbench`` in genbench's primary config (the option is
``registry/hydra/sweeper/genbench.yaml``). It expands the sweeps as Hydra's basic sweeper does,
then, unlike it, composes every job before launching any: a cell already recorded is skipped, a
repeated cell is skipped, and a cell whose configuration does not compose is recorded as failed
while the rest of the grid runs (the basic sweeper would stop the whole multirun). The jobs left
go to the configured launcher. The work is :func:`genbench.harness.grid.sweep`.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class GridSweeper(Sweeper):
    """``params``: sweeps of the config (a named grid's); ``overwrite``: run recorded cells
    again (``genbench run --grid --overwrite``)."""

    def __init__(self, params: dict[str, str] | None = None, overwrite: bool = False) -> None:
        self.params = dict(params or {})
        self.overwrite = bool(overwrite)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def sweep(self, arguments: list[str]) -> Any:
        from genbench.harness.grid import sweep

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        return sweep(self.config, self.hydra_context, self.task_function, list(arguments),
                     params=self.params, overwrite=self.overwrite)
