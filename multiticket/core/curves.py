"""Learning curves: what a unit's training logged, step by step, and evaluations at intervals.

A :class:`CurveMonitor` is one more monitor of a unit (:mod:`multiticket.core.monitors`): it keeps
the ``on_step`` log values the adapter names in ``curve_logs`` (RL: the return and length of every
finished episode; NLP, toy, torch: the training loss at logging steps) and, every ``eval_every``
steps when the domain section sets it, the adapter's :meth:`~DomainAdapter.curve_metrics`. The
final evaluation of the unit closes the curve. Its rows travel in mid-level checkpoints, so a
resumed unit's curve is the uninterrupted one, and the unit writer stores it as ``curve.csv``.

Format of ``curve.csv`` (plain CSV, one value per line, in the order recorded)::

    step,series,value
    512,train/episode_return,23.0
    512,train/episode_length,23
    1000,eval/eval_return,9.4

``series`` is ``train/<log key>`` or ``eval/<metric>``; several rows may share a step (episodes of
parallel environments ending together: their return and length rows alternate in that order).

An evaluation during training must not change training: it runs with every RNG state (torch,
CUDA, numpy, Python) and every module's train/eval mode put back afterwards, on the adapter's own
evaluation data or environment (:func:`without_side_effects`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from multiticket.core.adapter import DomainAdapter
from multiticket.core.rewind import rng_state, set_rng_state

#: the file a unit's curve is stored in (inside the unit's directory)
CURVE_FILE = "curve.csv"
CURVE_HEADER = "step,series,value"

LogValue = float | Sequence[float]


class Curve:
    """The rows of one unit's learning curve: (step, series, value), in the order recorded."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.series: list[str] = []
        self.values: list[float] = []

    def add(self, step: int, series: str, value: float) -> None:
        self.steps.append(int(step))
        self.series.append(series)
        self.values.append(float(value))

    def __len__(self) -> int:
        return len(self.steps)

    def csv_text(self) -> str:
        """The ``curve.csv`` text; ``repr`` of a float reads back to the same float."""
        lines = [CURVE_HEADER]
        lines += [f"{s},{n},{_number(v)}" for s, n, v in zip(self.steps, self.series, self.values, strict=True)]
        return "\n".join(lines) + "\n"

    def state(self) -> dict[str, Any]:
        """A plain tree for a checkpoint: tensors of steps, values and series indices."""
        names = sorted(set(self.series))
        index = {n: i for i, n in enumerate(names)}
        return {
            "names": names,
            "steps": torch.tensor(self.steps, dtype=torch.int64),
            "series": torch.tensor([index[n] for n in self.series], dtype=torch.int64),
            "values": torch.tensor(self.values, dtype=torch.float64),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Curve:
        curve = cls()
        names = list(state["names"])
        curve.steps = [int(s) for s in state["steps"].tolist()]
        curve.series = [names[int(i)] for i in state["series"].tolist()]
        curve.values = [float(v) for v in state["values"].tolist()]
        return curve


def _number(value: float) -> str:
    """Integral values as integers (episode lengths), the rest as ``repr`` (exact round trip)."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


@contextlib.contextmanager
def without_side_effects(module: torch.nn.Module) -> Iterator[None]:
    """Run an evaluation in the middle of training: every RNG state and the train/eval mode of
    every submodule are what they were before, whatever the evaluation drew or switched."""
    modes = [(m, m.training) for m in module.modules()]
    rng = rng_state()
    try:
        yield
    finally:
        set_rng_state(rng)
        for m, training in modes:
            m.training = training


class CurveMonitor:
    """Records a unit's learning curve (see the module docstring); its rows are checkpointed."""

    name = "curve"

    def __init__(self, adapter: DomainAdapter, stop: int) -> None:
        self.adapter = adapter
        self.keys = frozenset(adapter.curve_logs)
        self.every = adapter.eval_every or 0
        self.stop = stop
        self.curve = Curve()
        self.next_eval: int | None = None

    def on_start(self, step: int) -> None:
        if self.every > 0 and self.next_eval is None:
            self.next_eval = (step // self.every + 1) * self.every

    def before_step(self, step: int) -> None:
        pass

    def on_logs(self, step: int, logs: Mapping[str, LogValue]) -> None:
        """Keep the values of the adapter's curve keys; a sequence is several events of one step."""
        for key, value in logs.items():
            if key not in self.keys:
                continue
            for v in value if isinstance(value, Sequence) else (value,):
                self.curve.add(step, f"train/{key}", v)

    def after_step(self, step: int, module: torch.nn.Module) -> bool:
        if self.next_eval is not None and step >= self.next_eval:
            self.next_eval = (step // self.every + 1) * self.every
            if step < self.stop:  # the final evaluation closes the curve (:meth:`finish`)
                with without_side_effects(self.adapter.module):
                    self.add_metrics(step, self.adapter.curve_metrics())
        return False

    def add_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            if math.isfinite(value):
                self.curve.add(step, f"eval/{key}", value)

    def before_checkpoint(self) -> None:
        pass

    def close(self) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {**self.curve.state(), "next_eval": -1 if self.next_eval is None else self.next_eval}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.curve = Curve.from_state(state)
        self.next_eval = None if int(state["next_eval"]) < 0 else int(state["next_eval"])
