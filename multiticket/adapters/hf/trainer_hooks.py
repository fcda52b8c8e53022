"""``HooksCallback``: the HF adapter's progress reports to the core, from inside ``Trainer.train``.

Not the public :mod:`multiticket.adapters.hf.callback` (``TicketCallback``, which keeps a ticket's
pruned entries at zero in anyone's Trainer): this one is the adapter's own, and talks to the core's
:class:`~multiticket.core.adapter.TrainHooks` in domain units (global optimizer steps): the
optimizers at ``on_train_begin``, every step with the logged loss on logging steps, the resumable
points and the early-bird stop. With it, the global RNG snapshot the adapter puts back before the
first forward pass (the Trainer reseeds every RNG in its constructor).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from multiticket.core.adapter import TrainHooks


def rng_state() -> tuple[Any, ...]:
    """The global RNGs' state: torch (and every CUDA device's), numpy and Python's ``random``."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), np.random.get_state(), random.getstate(), cuda


def set_rng_state(state: tuple[Any, ...]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state[0])
    np.random.set_state(state[1])
    random.setstate(state[2])
    if state[3] is not None:
        torch.cuda.set_rng_state_all(state[3])


class HooksCallback(TrainerCallback):
    """Reports the Trainer's progress to the core in domain units (global optimizer steps)."""

    def __init__(
        self, hooks: TrainHooks, optimizer: torch.optim.Optimizer, offset: int, rng: tuple[Any, ...] | None = None
    ) -> None:
        self.hooks, self.optimizer, self.offset = hooks, optimizer, offset
        self.pending: int | None = None
        self.rng = rng

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.hooks.on_optimizers([self.optimizer])
        sched = kwargs.get("lr_scheduler")
        if sched is not None:  # a restored optimizer state carries its own step's LR: the schedule's wins
            for group, lr in zip(self.optimizer.param_groups, sched.get_last_lr()):
                group["lr"] = lr

    def _stop_requested(self, control: Any) -> bool:
        """Early-bird stop: the Trainer leaves its loop after this step, with no further update."""
        if getattr(self.hooks, "should_stop", False):
            control.should_training_stop = True
            return True
        return False

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # creating the DataLoader iterator draws from the global RNG; undo that so the first
        # forward pass (dropout) sees exactly the state train() was entered with -- the state
        # the core restored from the rewind point, which the dense run had at that step too
        if self.rng is not None:
            set_rng_state(self.rng)
            self.rng = None

    def _step_done(self, step: int, logs: dict[str, float | Sequence[float]] | None, logged: bool = True) -> None:
        # after an optimizer step (and its scheduler step) nothing else is pending: the next
        # step's batch and LR are functions of the step, so a checkpoint here resumes exactly --
        # at a logging step, where the Trainer's loss window closed (the loss curve resumes too)
        self.hooks.on_step(step, logs)
        if logged:
            self.hooks.on_resumable(step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = self.offset + state.global_step
        if self.pending is not None:  # a logging step whose on_log never came
            self._step_done(self.pending, None)
            self.pending = None
            if self._stop_requested(control):
                return
        if control.should_log:  # the Trainer logs this step's loss right after: report it with it
            self.pending = step
        else:
            self._step_done(step, None, logged=False)
            self._stop_requested(control)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.pending is None:
            return
        numeric: dict[str, float | Sequence[float]] = {
            k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))
        }
        self._step_done(self.pending, numeric)
        self.pending = None
        self._stop_requested(control)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.pending is not None:
            self._step_done(self.pending, None)
            self.pending = None
