"""The run settings of a training: a frozen :class:`TrainConfig` that checks its values."""

from __future__ import annotations

import dataclasses
import numbers

from ..errors import InputError


def positive_int(value, what, minimum=1) -> int:
    """``value`` as an int, or InputError when it is not an integer >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How long and how a training runs; the model, data and losses are the task's.

    ``tile`` is the requested window side (fit rounds it down to the model's size multiple);
    ``val_steps`` is checked only when validation runs (:meth:`checked_val_steps`).

    >>> TrainConfig(epochs=2, steps_per_epoch=5).total_steps
    10
    >>> TrainConfig(batch_size=0)
    Traceback (most recent call last):
    ...
    xdl.errors.InputError: batch_size must be an int >= 1, got 0
    """

    epochs: int = 10
    steps_per_epoch: int = 100
    batch_size: int = 8
    tile: int = 128
    val_steps: int = 10
    patience: int | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    progress: bool = True
    seed: int = 0

    def __post_init__(self):
        fix = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731  (frozen)
        fix("epochs", positive_int(self.epochs, "epochs", 0))
        fix("steps_per_epoch", positive_int(self.steps_per_epoch, "steps_per_epoch"))
        fix("batch_size", positive_int(self.batch_size, "batch_size"))
        fix("tile", positive_int(self.tile, "tile"))
        if self.patience is not None:
            fix("patience", positive_int(self.patience, "patience"))
        if self.checkpoint_every is not None:
            fix("checkpoint_every", positive_int(self.checkpoint_every, "checkpoint_every"))
        if (self.checkpoint_every is not None or self.resume) and self.checkpoint_dir is None:
            raise InputError("checkpoint_every/resume need checkpoint_dir='path/to/run' to write and read checkpoints.")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def checked_val_steps(self) -> int:
        """``val_steps`` as an int >= 1 (asked only when there is validation data)."""
        return positive_int(self.val_steps, "val_steps")
