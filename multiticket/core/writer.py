"""Writing a trained unit into the run directory: its ``metrics.json`` record and its files.

Every unit directory is written the same way (:class:`RunStore`'s atomic writes, ``DONE`` with
checksums last), so a kill at any moment leaves either a finished unit or one that is recomputed.
What a unit writes besides its mask, final weights and record (early-bird's search weights, a
dense unit's evaluation state) is passed in by the caller; this module knows no control.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from multiticket.core.adapter import DomainAdapter
from multiticket.core.curves import CURVE_FILE, Curve
from multiticket.core.mask import Mask
from multiticket.core.rewind import RewindPoint, copy_state_dict
from multiticket.core.statefile import save_tree
from multiticket.core.store import RunStore, Unit, atomic_write_text
from multiticket.core.train import TrainResult

#: written into a unit's directory when it fails (JSON: unit, error, time); removed on retry
FAILED = "FAILED"


@dataclass(frozen=True)
class RunInfo:
    """What every unit record of a run repeats: the task, its domain, its training length."""

    task: str
    domain: str
    stop: int


def unit_record(run: RunInfo, adapter: DomainAdapter, unit: Unit, mask: Mask, planned_alive: int,
                result: TrainResult, **extra: Any) -> dict[str, Any]:
    """A unit's ``metrics.json`` (key order as always: readers diff these files)."""
    return {
        "task": run.task,
        "domain": run.domain,
        "seed": unit.seed,
        "control": unit.control,
        "level": unit.level,
        "sparsity": mask.sparsity,
        "planned_sparsity": 1.0 - planned_alive / mask.numel,
        "alive": mask.num_alive,
        "prunable": mask.numel,
        **extra,
        "start_step": result.start_step,
        "stop_step": result.stop_step,
        "train_seconds": result.seconds,
        "metric": adapter.metric,
        "higher_is_better": adapter.higher_is_better,
        "metrics": result.metrics,
        **({"eval_method": adapter.eval_method} if adapter.eval_method else {}),
        **({"eval_seeds": seeds} if (seeds := adapter.eval_seeds()) is not None else {}),
        **({"notes": notes} if (notes := adapter.notes()) else {}),
    }


def text_file(text: str) -> Callable[[Path], None]:
    """A writer of ``text`` (for :meth:`RunStore.write_file`)."""

    def write(path: Path) -> None:
        path.write_text(text)

    return write


def json_file(record: dict[str, Any]) -> Callable[[Path], None]:
    """A writer of ``record`` as an indented JSON file (for :meth:`RunStore.write_file`)."""
    return text_file(json.dumps(record, indent=1) + "\n")


def tensors_file(tensors: dict[str, torch.Tensor]) -> Callable[[Path], None]:
    """A writer of a state dict as a safetensors file (for :meth:`RunStore.write_file`)."""

    def write(path: Path) -> None:
        # "format": "pt" as transformers writes it, so a weights file can double as a checkpoint's
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})

    return write


class UnitWriter:
    """Writes units and rewind points of one run directory from the adapter's current weights."""

    def __init__(self, store: RunStore, adapter: DomainAdapter) -> None:
        self.store = store
        self.adapter = adapter

    def write_unit(self, unit: Unit, mask: Mask, record: dict[str, Any],
                   extra: dict[str, dict[str, torch.Tensor]] | None = None, keep_state: bool = False,
                   curve: Curve | None = None) -> None:
        """Mask, final weights, ``extra`` state dicts (file name -> tensors), the adapter's state
        when ``keep_state`` (what evaluating the weights later needs besides them, e.g.
        VecNormalize statistics: prune-only controls read it), the learning curve
        (``curve.csv``), the record, the adapter's own exports, then ``DONE``."""
        d = self.store.unit_dir(unit)
        self.store.begin(d)
        self.store.write_file(d, "mask.safetensors", mask.save)
        self.store.write_file(d, "final.safetensors", tensors_file(copy_state_dict(self.adapter.module)))
        for name, tensors in (extra or {}).items():
            self.store.write_file(d, name, tensors_file(tensors))
        if keep_state:
            save_tree(d, "final_state", self.adapter.state())
        if curve is not None:
            self.store.write_file(d, CURVE_FILE, text_file(curve.csv_text()))
        self.store.write_file(d, "metrics.json", json_file(record))
        self.adapter.export(d)
        files = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
        self.store.finish(d, files)

    def write_rewinds(self, seed: int, points: dict[int, RewindPoint]) -> None:
        """The rewind points a dense unit captured, each in its own finished directory."""
        for step, point in sorted(points.items()):
            d = self.store.rewind_dir(seed, step)
            self.store.begin(d)
            self.store.finish(d, point.save(d))

    def write_failure(self, unit: Unit, error: str) -> None:
        """Record why a unit failed (``multiticket status`` shows it; a retry removes it)."""
        failure = {"unit": str(unit.relpath()), "error": error, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_text(self.store.unit_dir(unit) / FAILED, json.dumps(failure, indent=1) + "\n")

    def clear_failure(self, unit: Unit) -> None:
        (self.store.unit_dir(unit) / FAILED).unlink(missing_ok=True)

