"""Monitors: what watches or shapes one unit's training, composed like SB3's ``CallbackList``.

A unit's training loop (the adapter's, driven through :class:`~multiticket.core.hooks.LevelHooks`)
knows nothing of early-bird detection or targeted dropout: it calls the same five points of every
monitor in the unit's :class:`MonitorList`, in order. A new monitor is one small class with these
methods (each may do nothing), listed in a unit's recipe (:mod:`multiticket.core.recipe`); no
runner or hook class is edited or subclassed.

The call points, in the order a unit sees them:

- ``on_start(step)``: the optimizers exist and training is about to start at ``step``;
- ``before_step(step)``: the adapter reports ``step`` done, before anything reads the weights;
- ``on_logs(step, logs)``: the values the adapter logged with that step (losses, finished
  episodes), once they passed the core's NaN check; only for steps that logged something;
- ``after_step(step, module) -> bool``: after the core's checks and captures; True asks training
  to stop after this step (the adapter polls ``should_stop``);
- ``before_checkpoint()``: a mid-level checkpoint is about to read the weights;
- ``close()``: training ended (normally or not): put the full weights back, remove hooks.

A monitor with a ``name`` keeps its ``state()`` in a mid-level checkpoint (``core.pt``, keyed by
that name) and gets it back through ``load_state`` on resume.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import torch

from multiticket.core.early_bird import EarlyBirdMonitor
from multiticket.core.targeted_dropout import TargetedDropout


class Monitor(Protocol):
    """One participant of a unit's training (see the module docstring for the call order)."""

    #: key of its state in a checkpoint's ``core.pt``; "" for a monitor with no state to keep
    name: str

    def on_start(self, step: int) -> None: ...
    def before_step(self, step: int) -> None: ...
    def on_logs(self, step: int, logs: Mapping[str, float | Sequence[float]]) -> None: ...
    def after_step(self, step: int, module: torch.nn.Module) -> bool: ...
    def before_checkpoint(self) -> None: ...
    def close(self) -> None: ...
    def state(self) -> Any: ...
    def load_state(self, state: Any) -> None: ...


class MonitorList:
    """Calls every monitor in order; ``after_step`` is True when any monitor asks to stop."""

    def __init__(self, monitors: Iterable[Monitor] = ()) -> None:
        self.monitors = list(monitors)

    def on_start(self, step: int) -> None:
        for m in self.monitors:
            m.on_start(step)

    def before_step(self, step: int) -> None:
        for m in self.monitors:
            m.before_step(step)

    def on_logs(self, step: int, logs: Mapping[str, float | Sequence[float]]) -> None:
        for m in self.monitors:
            m.on_logs(step, logs)

    def after_step(self, step: int, module: torch.nn.Module) -> bool:
        stop = False
        for m in self.monitors:
            stop = m.after_step(step, module) or stop
        return stop

    def before_checkpoint(self) -> None:
        for m in self.monitors:
            m.before_checkpoint()

    def close(self) -> None:
        for m in self.monitors:
            m.close()

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (``core.pt``): the state of every named monitor."""
        return {m.name: m.state() for m in self.monitors if m.name}

    def load_state(self, states: dict[str, Any]) -> None:
        for m in self.monitors:
            if m.name and m.name in states:
                m.load_state(states[m.name])


class DropoutMonitor:
    """Targeted dropout (:mod:`multiticket.core.targeted_dropout`) as a monitor: drops are drawn in
    the forward pass and undone after every step, so captures, checkpoints, checks and evaluation
    always see the full weights; its generator states travel in checkpoints."""

    name = "targeted_dropout"

    def __init__(self, dropout: TargetedDropout) -> None:
        self.dropout = dropout

    def on_start(self, step: int) -> None:
        self.dropout.set_step(step)
        self.dropout.attach()

    def before_step(self, step: int) -> None:
        self.dropout.restore()
        self.dropout.set_step(step)

    def on_logs(self, step: int, logs: Mapping[str, float | Sequence[float]]) -> None:
        pass

    def after_step(self, step: int, module: torch.nn.Module) -> bool:
        return False

    def before_checkpoint(self) -> None:
        self.dropout.restore()

    def close(self) -> None:
        self.dropout.detach()

    def state(self) -> dict[str, torch.Tensor]:
        return self.dropout.generator_states()

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.dropout.load_generator_states(state)


class EarlyBirdWatch:
    """An :class:`EarlyBirdMonitor` as a monitor: checks the next level's mask after every step and
    asks to stop once it is stable if the monitor says so (the level-1 dense search). It has no
    checkpointed state: a unit it watches restarts whole instead of resuming mid-level."""

    name = ""

    def __init__(self, monitor: EarlyBirdMonitor) -> None:
        self.monitor = monitor

    def on_start(self, step: int) -> None:
        pass

    def before_step(self, step: int) -> None:
        pass

    def on_logs(self, step: int, logs: Mapping[str, float | Sequence[float]]) -> None:
        pass

    def after_step(self, step: int, module: torch.nn.Module) -> bool:
        return self.monitor.observe(step, module) and self.monitor.stop

    def before_checkpoint(self) -> None:
        pass

    def close(self) -> None:
        pass

    def state(self) -> None:
        return None

    def load_state(self, state: Any) -> None:
        pass
