"""Training-compute budgets and the compute a training run consumed.

Epochs are not a fair unit across objectives: a DDGAN step runs a generator and a discriminator
forward and backward (and R1's double backward on lazy steps), an eps step one network forward
and backward. ``train.budget`` states the length of a run as compute instead, as one string
``KIND:AMOUNT``:

* ``images:N``  - training images seen (steps x batch size);
* ``macs:N``    - training multiply-accumulates, counted by the counter that measures inference
  cost (:func:`genbench.metrics.cost.measure_flops`, torch's ``FlopCounterMode``) over one real
  training step of the objective, forward and backward;
* ``seconds:N`` - wall-clock seconds of training steps on the run's device.

Training stops on the first step boundary at which the consumed amount reaches the budget. For
images and MACs that step is known before training starts (:func:`budget_steps`), so the run is
as deterministic as an epoch-length one; a seconds budget depends on the machine's speed and load
and is not reproducible.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from genbench.errors import UserError

KINDS = ("images", "macs", "seconds")
SYNTAX = "KIND:AMOUNT with KIND one of images, macs, seconds (e.g. train.budget=images:50000)"


@dataclass(frozen=True)
class Budget:
    """A training-compute budget: ``amount`` (> 0) of ``kind`` (one of :data:`KINDS`)."""

    kind: str
    amount: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.amount:g}"


def parse_budget(value: Any, key: str = "train.budget") -> Budget | None:
    """``None`` for no budget, else the :class:`Budget` that ``KIND:AMOUNT`` states.

    A malformed value, an unknown kind or an amount that is not a finite positive number is a
    one-line :class:`UserError` naming ``key`` and the syntax; images and MACs must be whole.
    """
    if value is None:
        return None
    if not isinstance(value, str) or value.count(":") != 1:
        raise UserError(f"{key}={value!r} is not a budget; use {SYNTAX}")
    kind, _, text = (part.strip() for part in value.partition(":"))
    if kind not in KINDS:
        raise UserError(f"{key}={value!r}: unknown budget kind {kind!r}; use {SYNTAX}")
    try:
        amount = float(text)
    except ValueError:
        raise UserError(f"{key}={value!r}: {text!r} is not a number; use {SYNTAX}") from None
    if not math.isfinite(amount) or amount <= 0:
        raise UserError(f"{key}={value!r}: the amount must be a finite number > 0")
    if kind != "seconds" and not amount.is_integer():
        raise UserError(f"{key}={value!r}: a budget in {kind} must be a whole number")
    return Budget(kind, amount)


@dataclass(frozen=True)
class StepCost:
    """Training MACs per step: every step costs ``base``; steps with ``step % every == 0`` cost
    ``extra`` more (the adversarial objective's lazy R1 steps), and steps from ``later_from`` on
    ``later`` more (an autoencoder's discriminator from ``disc_start``); both 0 elsewhere."""

    base: int
    extra: int = 0
    every: int = 1
    later: int = 0
    later_from: int = 0

    def of(self, step: int) -> int:
        """MACs of step ``step`` (0-based)."""
        return (self.base + (self.extra if step % self.every == 0 else 0)
                + (self.later if step >= self.later_from else 0))

    def total(self, steps: int) -> int:
        """MACs of steps ``0 .. steps-1``."""
        return (self.base * steps + self.extra * ((steps + self.every - 1) // self.every)
                + self.later * max(0, steps - self.later_from))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def step_cost_of(macs: dict[str, int], every: int = 1, later_from: int = 0) -> StepCost:
    """The :class:`StepCost` of measured probes: ``{"r1": .., "plain": ..}`` (lazy R1 every
    ``every`` steps), ``{"ae": .., "ae+d": ..}`` (the discriminator from step ``later_from``) or
    a single kind that every step costs."""
    if "r1" in macs and "plain" in macs:
        return StepCost(base=macs["plain"], extra=macs["r1"] - macs["plain"], every=every)
    if "ae" in macs and "ae+d" in macs:
        return StepCost(base=macs["ae"], later=macs["ae+d"] - macs["ae"], later_from=later_from)
    (value,) = macs.values()
    return StepCost(base=value)


def budget_steps(budget: Budget, batch_size: int, cost: StepCost | None) -> int | None:
    """The number of steps after which ``budget`` is reached (the first step boundary at which the
    consumed amount is >= the budget); None for a seconds budget (known only while training)."""
    if budget.kind == "images":
        return max(1, math.ceil(budget.amount / batch_size))
    if budget.kind == "seconds":
        return None
    if cost is None or cost.total(1) <= 0:
        raise UserError("a budget in training MACs needs the per-step MACs of the objective; "
                        "this objective's step counts none, use an images or seconds budget")
    amount = int(budget.amount)
    low, high = 1, max(1, -(-amount // max(cost.base, 1)))  # total(high) >= amount
    while cost.total(high) < amount:
        high *= 2
    while low < high:  # the smallest n with total(n) >= amount
        mid = (low + high) // 2
        if cost.total(mid) >= amount:
            high = mid
        else:
            low = mid + 1
    return low


@dataclass
class Consumed:
    """What a training run consumed so far; saved with each checkpoint, so it survives resumes.

    ``seconds`` sums the wall time of the training steps on the device (synchronised on CUDA),
    not the time spent loading, checkpointing or measuring.
    """

    images: int = 0
    steps: int = 0
    macs: int | None = None  # None when the objective's step cost was not measured
    seconds: float = 0.0

    def add_step(self, batch_size: int, seconds: float, cost: StepCost | None) -> None:
        if cost is not None:
            self.macs = (self.macs or 0) + cost.of(self.steps)
        self.images += batch_size
        self.steps += 1
        self.seconds += seconds

    def reached(self, budget: Budget | None) -> bool:
        if budget is None:
            return False
        have = {"images": self.images, "macs": self.macs or 0, "seconds": self.seconds}
        return have[budget.kind] >= budget.amount

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Consumed:
        macs = data.get("macs")
        return cls(images=int(data["images"]), steps=int(data["steps"]),
                   macs=None if macs is None else int(macs), seconds=float(data["seconds"]))


def device_clock(device: torch.device) -> Callable[[], float]:
    """A clock for step times on ``device``: ``perf_counter``, after a synchronise on CUDA so the
    step's kernels are counted in its own time."""
    if device.type == "cuda":
        def clock() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return clock
    return time.perf_counter


def measure_step_cost(make_trainer: Callable[[], Any], x: torch.Tensor,
                      probes: dict[str, int]) -> dict[str, int]:
    """MACs of one training step of a fresh trainer (forward and backward of every network the
    step runs), counted by :func:`genbench.metrics.cost.measure_flops`.

    ``make_trainer`` builds a throwaway trainer on copies of the networks (the real one's weights,
    optimizer and random streams are not touched); ``probes`` maps a name to the step number to
    measure (e.g. a lazy R1 step and a plain one), each on its own fresh trainer.
    """
    from genbench.metrics.cost import measure_flops

    out = {}
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        for name, step in probes.items():
            trainer = make_trainer()
            trainer.step = step
            out[name] = measure_flops(lambda t=trainer: t.train_step(x, 0), per_module=False).macs
    return out
