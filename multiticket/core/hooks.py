"""The core's side of an adapter's training loop: progress reporting and :class:`TrainHooks`.

``LevelHooks`` is what an adapter calls while it trains one unit: it attaches the mask enforcer
to the adapter's optimizers (restoring optimizer state from the rewind point when asked),
captures rewind points the first time the step reaches k, and stops on a non-finite loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from multiticket.adapters.base import DomainAdapter
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.rewind import RewindPoint
from multiticket.core.store import Unit
from multiticket.errors import RunFailure


class Reporter(Protocol):
    """Receives progress; the CLI shows it with rich, tests use :class:`NullReporter`."""

    def unit_started(self, unit: Unit, start: int, stop: int) -> None: ...
    def step(self, step: int) -> None: ...
    def unit_finished(self, unit: Unit, record: dict[str, Any] | None, skipped: bool) -> None: ...


class NullReporter:
    def unit_started(self, unit: Unit, start: int, stop: int) -> None:
        pass

    def step(self, step: int) -> None:
        pass

    def unit_finished(self, unit: Unit, record: dict[str, Any] | None, skipped: bool) -> None:
        pass


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

    def on_optimizers(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)
        if self.restore_from is not None:
            self.restore_from.restore_optimizers(self.optimizers)
        if self.enforcer is not None:
            for opt in self.optimizers:
                self.enforcer.add_optimizer(opt)
        self._capture(self.start)

    def on_step(self, step: int, logs: dict[str, float] | None = None) -> None:
        if logs:
            for key, value in logs.items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise RunFailure(f"non-finite {key} ({value}) at step {step}")
        self.last_step = step
        self._capture(step)
        self.reporter.step(step)

    def _capture(self, step: int) -> None:
        while self.pending and step >= self.pending[0]:
            k = self.pending.pop(0)
            opts = self.optimizers or self.adapter.optimizers()
            self.captured[k] = RewindPoint.capture(self.adapter.module, step, opts, self.adapter.state())
