"""The one training loop: every objective (adversarial, eps, autoencoder) runs through it.

An objective is a small trainer object (:class:`Trainer`) that knows how to take one optimisation
step on a batch; this loop owns everything around the steps, the same for all of them:

* data: an epoch visits the images in an order drawn from the ``order`` stream of
  :mod:`genbench.training.seeding` (a pure function of seed and epoch), full batches only; each
  batch is flipped left-right per image from the ``flip`` stream of its step when asked (the
  ``RandomHorizontalFlip`` of ``NVlabs/denoising-diffusion-gan train_ddgan.py`` and of LDM's
  CIFAR first stage), mapped from uint8 to [-1, 1] and, for denoisers, encoded into the latent
  space without gradients;
* randomness inside a step that cannot take a generator (dropout) draws from torch's global
  generators seeded from the ``global`` stream of that step;
* resume from the checkpoint in ``ckpt_dir``, a checkpoint every ``ckpt_every`` steps and at the
  end, a progress bar, a stop on non-finite losses, and on KeyboardInterrupt a checkpoint of the
  last complete step;
* the compute consumed (:class:`genbench.training.budget.Consumed`: images, steps, training MACs,
  device seconds), saved in every checkpoint, and the stop when a training-compute budget
  (``train.budget``, :mod:`genbench.training.budget`) is reached, on a step boundary.

Because every draw is a function of (seed, stream, step or epoch) or lives in the checkpoint, an
interrupted run resumes to bitwise the same weights as an uninterrupted one.

Data parallel (:mod:`genbench.distributed`; ``torchrun`` or SLURM ranks): ``batch_size`` stays the
global batch. Every rank computes the same global batch order and flips, keeps its own positions
of the batch (:func:`genbench.distributed.batch_shard`, given to the trainer as ``shard``, whose
draws are made for the whole global batch and then sliced the same way) and the trainer averages
gradients over the ranks before each optimizer step, so a step at world size W equals the
one-process step on the same global batch (to float rounding; dropout included: every
``nn.Dropout`` becomes a :class:`genbench.backbones.layers.BatchDropout`, which draws the global
batch's mask and keeps this rank's rows). The logged losses are averaged over the ranks. Only
rank 0 writes checkpoints (the others wait at a barrier); they hold the modules' own states, so
a run resumes at any world size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from tqdm.auto import tqdm

from genbench.backbones.layers import batch_dropout
from genbench.data.base import random_hflip, to_model_range
from genbench.distributed import (
    BatchShard,
    average_floats,
    barrier,
    batch_shard,
    broadcast_modules,
    current,
    drawing_for,
)
from genbench.errors import UserError, notice, unknown_key_error
from genbench.precision import check_precision
from genbench.progress import bar as progress_bar
from genbench.training.budget import (
    Budget,
    Consumed,
    StepCost,
    budget_steps,
    device_clock,
    parse_budget,
)
from genbench.training.checkpoint import (
    CorruptCheckpoint,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from genbench.training.seeding import seeded_global_rng, stream_generator


class Trainer(Protocol):
    """What an objective provides to the loop.

    ``step``: optimisation steps taken (``train_step`` adds one); ``history``: logged losses;
    ``device``: where batches go. ``state``/``load_state`` hold everything but the weights of
    ``modules()`` (those are saved by name as safetensors) that resuming needs, including
    ``step`` and ``history``. ``shard``: set by the loop; the trainer draws each step's
    randomness for the whole global batch, keeps ``shard``'s rows, and averages gradients over
    the ranks (:func:`genbench.distributed.average_gradients`) before each optimizer step.
    """

    step: int
    history: list[dict[str, float]]
    device: torch.device
    shard: BatchShard | None  # this rank's positions of the global batch (set by the loop)

    def train_step(self, x: torch.Tensor, epoch: int) -> dict[str, float]: ...

    def end_epoch(self) -> None: ...

    def modules(self) -> dict[str, torch.nn.Module]: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class LoopConfig:
    """How long to train and how to feed and save the trainer (the objective's own settings
    stay with the objective)."""

    batch_size: int
    seed: int
    epochs: int | None = None  # train this many epochs ...
    steps: int | None = None  # ... or this many optimisation steps
    hflip: bool = False  # random horizontal flips of the training images
    ckpt_every: int = 1000  # steps between checkpoints
    log_every: int = 1  # steps between history entries (and the last step)
    batch_setting: str = "train.batch_size"  # named when the batch exceeds the data
    what: str = "training"  # named in the progress bar and when the losses diverge
    lr_settings: str = "the learning rate"  # the settings to lower when the losses diverge
    budget: Budget | None = None  # stop when this much compute is consumed (at most the length)

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("LoopConfig takes exactly one of epochs and steps")
        if self.ckpt_every < 1 or self.log_every < 1:
            raise UserError("ckpt_every and the logging interval must be >= 1")

    def total_steps(self, steps_per_epoch: int, cost: StepCost | None = None) -> int:
        """The steps to run: the configured length, or fewer where an images or MACs budget is
        reached first (a seconds budget is checked while training)."""
        length = self.steps if self.steps is not None else self.epochs * steps_per_epoch
        if self.budget is None:
            return length
        steps = budget_steps(self.budget, self.batch_size, cost)
        return length if steps is None else min(length, steps)


class ObjectiveSettings:
    """What the settings dataclasses of the epoch-based objectives (adversarial, eps) share:
    built from a train section with misspelt keys refused, the common checks, and the loop's
    settings. A subclass is a frozen dataclass with the fields ``epochs``, ``batch_size``,
    ``hflip``, ``seed``, ``ckpt_every``, ``budget`` and ``precision``, and sets ``WHAT`` (the
    progress bar's and divergence message's name), ``LR_SETTINGS`` (the settings to lower when
    the losses diverge) and ``SUBSECTIONS`` (nested sections its trainer reads itself)."""

    WHAT: ClassVar[str] = "training"
    LR_SETTINGS: ClassVar[str] = "the learning rate"
    SUBSECTIONS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_section(cls, train_cfg: dict[str, Any], seed: int) -> Any:
        """From the settings of this objective (:func:`genbench.harness.build.objective_settings`
        leaves out those of other objectives); a key that is not a setting here is a
        :class:`UserError` naming the closest ones: a misspelt key must not be ignored."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        for key in train_cfg:  # the seed is the run's (cfg.seed), not a train setting
            if (key not in known or key == "seed") and key not in cls.SUBSECTIONS:
                raise unknown_key_error(f"train.{key}", key, sorted(known - {"seed"}))
        return cls(**{**{k: v for k, v in train_cfg.items() if k in known}, "seed": seed})

    def check_common(self) -> None:
        """The checks every objective's settings need: the budget and the precision."""
        parse_budget(self.budget)  # type: ignore[attr-defined]
        check_precision(self.precision)  # type: ignore[attr-defined]

    def loop(self) -> LoopConfig:
        """What the shared loop needs: length, batches, flips, checkpoints."""
        s: Any = self
        return LoopConfig(batch_size=s.batch_size, seed=s.seed, epochs=s.epochs, hflip=s.hflip,
                          ckpt_every=s.ckpt_every, budget=parse_budget(s.budget),
                          what=self.WHAT, lr_settings=self.LR_SETTINGS)


def epoch_order(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch ``epoch``: a pure function of (seed, epoch)."""
    return torch.randperm(num_items, generator=stream_generator(seed, "order", epoch))


def batches_per_epoch(num_items: int, batch_size: int, setting: str) -> int:
    """Full batches per epoch (the last partial batch is dropped); a one-line error if none."""
    if num_items // batch_size < 1:
        raise UserError(f"{setting}={batch_size} exceeds the {num_items} training images; "
                        f"lower it")
    return num_items // batch_size


class TrainingDiverged(UserError):
    """Losses that are no longer finite: the settings (most often the learning rate) are the
    cause, so it is a user error, said in one line with the step and the losses."""


def check_finite(losses: dict[str, float], step: int, what: str = "training",
                 lr_settings: str = "the learning rate") -> None:
    """Stop a run whose losses are no longer finite, naming them, the step and the fix."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(
            f"{what} diverged at step {step}: non-finite loss {', '.join(bad)} "
            f"({', '.join(f'{k}={losses[k]}' for k in bad)}); lower the learning rate "
            f"({lr_settings}) and run again")


def training_batch(images: torch.Tensor, cfg: LoopConfig, step: int,
                   steps_per_epoch: int) -> torch.Tensor:
    """The uint8 batch of ``step``: its slice of the epoch's order, flipped when asked."""
    epoch, index = divmod(step, steps_per_epoch)
    order = epoch_order(images.shape[0], cfg.seed, epoch)
    batch = images[order[index * cfg.batch_size:(index + 1) * cfg.batch_size]]
    if cfg.hflip:
        batch = random_hflip(batch, stream_generator(cfg.seed, "flip", step))
    return batch


def _model_input(batch: torch.Tensor, device: torch.device,
                 encode: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    x = to_model_range(batch.to(device))
    if encode is None:
        return x
    with torch.no_grad():
        return encode(x)


def _one_step(trainer: Trainer, x: torch.Tensor, epoch: int, cfg: LoopConfig) -> dict[str, float]:
    with (seeded_global_rng(cfg.seed, "global", trainer.step, device=trainer.device),
          drawing_for(trainer.shard)):  # dropout masks of the global batch (BatchDropout)
        losses = average_floats(trainer.train_step(x, epoch))
    check_finite(losses, trainer.step, cfg.what, cfg.lr_settings)
    return losses


def _log(trainer: Trainer, losses: dict[str, float], cfg: LoopConfig, last: bool,
         bar: tqdm) -> None:
    if trainer.step % cfg.log_every == 0 or last:
        trainer.history.append({"step": trainer.step, **losses})
    bar.update(1)
    bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items() if k != "r1"})


CONSUMED = "genbench_consumed"  # the loop's entry in the checkpointed training state


def _state(trainer: Trainer, consumed: Consumed) -> dict[str, Any]:
    return {**trainer.state(), CONSUMED: consumed.as_dict()}


def _save(ckpt_dir: Path, trainer: Trainer, consumed: Consumed, wait: bool = True) -> None:
    """Rank 0 writes the checkpoint (atomically); the other ranks wait for it (not after an
    interruption, when a rank may be gone)."""
    if current().is_main:
        save_checkpoint(ckpt_dir, trainer.modules(), _state(trainer, consumed))
    if wait:
        barrier()


def _shard_trainer(trainer: Trainer, cfg: LoopConfig) -> None:
    """Give the trainer this rank's positions of the global batch (None in a world of one);
    ``batch_group`` (when the trainer has it) keeps groups of a batch-statistics layer whole."""
    group = trainer.batch_group(cfg.batch_size) if hasattr(trainer, "batch_group") else 1
    trainer.shard = batch_shard(current(), cfg.batch_size, group, cfg.batch_setting)


def _resume_consumed(state: dict[str, Any], consumed: Consumed, trainer: Trainer,
                     batch_size: int, cost: StepCost | None) -> None:
    """Take the consumed compute from a checkpoint's state; a checkpoint of an older genbench
    (none recorded) gets the deterministic parts from its step, its device seconds unknown (0)."""
    recorded = state.get(CONSUMED)
    if isinstance(recorded, dict):
        loaded = Consumed.from_dict(recorded)
    else:
        loaded = Consumed(images=trainer.step * batch_size, steps=trainer.step,
                          macs=None if cost is None else cost.total(trainer.step))
    consumed.__dict__.update(loaded.__dict__)


def train(
    trainer: Trainer,
    images: torch.Tensor,
    ckpt_dir: Path,
    cfg: LoopConfig,
    *,
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    cost: StepCost | None = None,
    consumed: Consumed | None = None,
) -> bool:
    """Train to the configured length or budget, resuming from ``ckpt_dir`` if it holds a
    checkpoint.

    ``images``: the training set, uint8 ``[N, C, H, W]`` on the CPU. ``encode``: maps a batch in
    [-1, 1] into the space the objective works in (None: the images themselves). ``stop_after``:
    leave after that many total steps, as an interruption would (tests). ``cost``: the
    objective's training MACs per step (:func:`genbench.training.budget.measure_step_cost`),
    needed by a MACs budget and summed into ``consumed``, which the loop fills with what the run
    consumed (restored from the checkpoint on resume). Returns True when training is complete.
    """
    if images.dtype != torch.uint8:
        raise UserError(f"training images must be uint8 [N, C, H, W], got {images.dtype}")
    consumed = Consumed() if consumed is None else consumed
    steps_per_epoch = batches_per_epoch(images.shape[0], cfg.batch_size, cfg.batch_setting)
    total = cfg.total_steps(steps_per_epoch, cost)
    _shard_trainer(trainer, cfg)
    shard = trainer.shard
    for module in trainer.modules().values():  # dropout masks independent of the world size
        batch_dropout(module)
    found = find_checkpoint(ckpt_dir)
    saved = None  # the step of the checkpoint on disk (said when interrupted)
    if found is not None:
        try:
            state = load_checkpoint(found, trainer.modules())
            trainer.load_state(state)
            _resume_consumed(state, consumed, trainer, cfg.batch_size, cost)
            saved = trainer.step
        except CorruptCheckpoint as exc:  # raised before anything was loaded: start afresh
            notice(f"{str(exc).split('; delete')[0]}; starting {cfg.what} again from step 0")
    broadcast_modules(trainer.modules().values())  # identical start on every rank
    barrier()  # every rank has read the checkpoint before rank 0 may replace it
    bar = progress_bar(total=total, initial=trainer.step, desc=cfg.what, unit="step",
                       disable=not progress or not current().is_main, dynamic_ncols=True)
    clock = device_clock(trainer.device)
    stepping = False  # a half-done step cannot be resumed exactly: never save one
    try:
        while trainer.step < total and not consumed.reached(cfg.budget):
            if stop_after is not None and trainer.step >= stop_after:
                _save(ckpt_dir, trainer, consumed)
                return False
            batch = training_batch(images, cfg, trainer.step, steps_per_epoch)
            batch = batch if shard is None else shard.take(batch)  # this rank's images
            x = _model_input(batch, trainer.device, encode)
            stepping = True
            started = clock()
            losses = _one_step(trainer, x, trainer.step // steps_per_epoch, cfg)
            consumed.add_step(cfg.batch_size, clock() - started, cost)
            if trainer.step % steps_per_epoch == 0:
                trainer.end_epoch()
            last = trainer.step == total or consumed.reached(cfg.budget)
            _log(trainer, losses, cfg, last, bar)
            stepping = False
            if trainer.step % cfg.ckpt_every == 0 or last:
                _save(ckpt_dir, trainer, consumed)
                saved = trainer.step
    except KeyboardInterrupt as exc:
        if not stepping:
            _save(ckpt_dir, trainer, consumed, wait=False)
            saved = trainer.step
        # what the CLI tells the user will happen on a rerun (genbench.cli.main)
        exc.genbench_training = {"what": cfg.what, "step": trainer.step,
                                 "checkpoint_step": saved}
        raise
    finally:
        bar.close()
    return True
