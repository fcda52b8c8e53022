"""The core's side of an adapter's training loop: progress reporting and :class:`TrainHooks`.

``LevelHooks`` is what an adapter calls while it trains one unit: it attaches the mask enforcer
to the adapter's optimizers (restoring optimizer state from the rewind point when asked),
captures rewind points the first time the step reaches k, stops on a non-finite loss or weight,
and asks the runner for a mid-level checkpoint every ``checkpoint.every`` steps at the points the
adapter reports as resumable. Everything else that watches or shapes training (early-bird
detection, targeted dropout) is a monitor in ``monitors`` (:mod:`multiticket.core.monitors`),
called at fixed points; one that asks to stop sets ``should_stop``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from multiticket.core.adapter import DomainAdapter
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.monitors import MonitorList
from multiticket.core.rewind import RewindPoint
from multiticket.core.store import Unit
from multiticket.errors import RunFailure


class Reporter(Protocol):
    """Receives progress; the CLI shows it with rich, tests use :class:`NullReporter`."""

    def unit_started(self, unit: Unit, start: int, stop: int) -> None: ...
    def step(self, step: int) -> None: ...
    def unit_finished(self, unit: Unit, record: dict[str, Any] | None, skipped: bool) -> None: ...
    def warn(self, text: str) -> None: ...


class NullReporter:
    """No progress display (``--quiet``); warnings still go to stderr, one line each."""
    def unit_started(self, unit: Unit, start: int, stop: int) -> None:
        pass

    def step(self, step: int) -> None:
        pass

    def unit_finished(self, unit: Unit, record: dict[str, Any] | None, skipped: bool) -> None:
        pass

    def warn(self, text: str) -> None:
        print(f"multiticket: warning: {text}", file=sys.stderr)


class StopTraining(Exception):  # noqa: N818 - a signal, not an error
    """Raised from ``on_step`` when an adapter keeps training after ``should_stop`` was set (it
    does not poll the flag); the runner catches it and evaluates the weights as they are."""


class LevelHooks:
    """The core's side of :class:`TrainHooks` for one unit: enforcer, captures, NaN guard."""

    def __init__(
        self,
        adapter: DomainAdapter,
        enforcer: MaskEnforcer | None,
        start: int,
        captures: Sequence[int] = (),
        restore_from: RewindPoint | None = None,
        reporter: Reporter | None = None,
        checkpoint: Callable[[int], None] | None = None,
        checkpoint_every: int = 0,
    ) -> None:
        self.adapter = adapter
        self.enforcer = enforcer
        self.start = start
        self.pending = sorted(set(captures))
        self.captured: dict[int, RewindPoint] = {}
        self.restore_from = restore_from
        self.reporter = reporter or NullReporter()
        self.optimizers: list[torch.optim.Optimizer] = []
        self.last_step = start
        #: called with the step when a checkpoint is due (the runner writes it)
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.last_checkpoint = start
        #: the unit's last step: no checkpoint there (the unit's results are written instead)
        self.stop: int | None = None
        #: True once training should end after the current step (adapters poll it)
        self.should_stop = False
        self.stopped_at: int | None = None
        #: the unit's monitors (early-bird, targeted dropout; set by train_unit), started with the
        #: optimizers; each step they run before the core reads the weights and after its checks
        self.monitors = MonitorList()

    def on_optimizers(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)
        if self.restore_from is not None:
            self.restore_from.restore_optimizers(self.optimizers)
        if self.enforcer is not None:
            for opt in self.optimizers:
                self.enforcer.add_optimizer(opt)
        self.monitors.on_start(self.start)
        self._capture(self.start)

    def on_step(self, step: int, logs: dict[str, float | Sequence[float]] | None = None) -> None:
        self.monitors.before_step(step)
        if self.stopped_at is not None and step > self.stopped_at:
            raise StopTraining(f"training went on after the early stop at step {self.stopped_at}")
        if logs:
            scalars = False
            for key, value in logs.items():
                scalars = scalars or isinstance(value, float)
                for v in value if isinstance(value, Sequence) else (value,):
                    if isinstance(v, float) and not math.isfinite(v):
                        raise RunFailure(f"non-finite {key} ({v}) at step {step}")
            if scalars:  # a loss: a NaN gradient shows up in the weights (episode ends need no check)
                check_finite(self.adapter.module, step)
            self.monitors.on_logs(step, logs)
        self.last_step = step
        self._capture(step)
        self.reporter.step(step)
        if self.monitors.after_step(step, self.adapter.module):
            self.should_stop, self.stopped_at = True, step

    def on_resumable(self, step: int) -> None:
        """The adapter could resume from here with ``train(step, stop)``: checkpoint if due.
        Weights are checked first, so a checkpoint is always a last *good* state."""
        if self.checkpoint is None or self.checkpoint_every <= 0:
            return
        if self.stop is not None and step >= self.stop:
            return
        if step - self.last_checkpoint >= self.checkpoint_every:
            self.monitors.before_checkpoint()
            check_finite(self.adapter.module, step)
            self.checkpoint(step)
            self.last_checkpoint = step

    def _capture(self, step: int) -> None:
        while self.pending and step >= self.pending[0]:
            k = self.pending.pop(0)
            opts = self.optimizers or self.adapter.optimizers()
            self.captured[k] = RewindPoint.capture(self.adapter.module, step, opts, self.adapter.state())


@torch.no_grad()
def check_finite(module: torch.nn.Module, step: int) -> None:
    """Stop the unit if any parameter holds NaN or inf."""
    for name, p in module.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise RunFailure(f"non-finite values in '{name}' at step {step}")
