"""What must be identical between two runs of one task: summary, masks and weights, metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, planned_alive


def only_run(out: Path) -> Path:
    """The single run directory under an ``--out`` directory."""
    (run,) = [p for p in Path(out).iterdir() if p.is_dir()]
    return run


def snapshot(run: Path) -> dict[str, Any]:
    """summary.csv, every safetensors file (masks, weights, rewind points; checkpoints and state
    trees aside: ``state.safetensors`` beside ``state.json`` holds the global RNG states, which
    differ between processes), every metrics.json without its wall time and every curve.csv."""
    snap: dict[str, Any] = {"summary": (run / "summary.csv").read_text()}
    for f in sorted(run.rglob("*.safetensors")):
        if "checkpoint" not in f.relative_to(run).parts and not f.with_suffix(".json").is_file():
            snap[str(f.relative_to(run))] = {k: v.tolist() for k, v in load_file(str(f)).items()}
    for f in sorted(run.rglob("metrics.json")):
        record = json.loads(f.read_text())
        record.pop("train_seconds")
        snap[str(f.relative_to(run))] = record
    for f in sorted(run.rglob("curve.csv")):  # learning curves: a resumed unit's is the uninterrupted one
        snap[str(f.relative_to(run))] = f.read_text()
    return snap


def clean_run(out: Path, args: list[str]) -> Path:
    """The run directory of an uninterrupted ``multiticket`` invocation: the reference a resumed
    run must equal."""
    from multiticket.cli import main

    assert main([*args, "--out", str(out)]) == 0
    return only_run(out)


def unit_mask(run: Path, control: str, level: int, seed: int = 0) -> Mask:
    """The saved mask of one unit of ``run``."""
    return Mask.load(run / f"seed_{seed}" / control / f"level_{level}" / "mask.safetensors")


def planned_count(mask: Mask, level: int, rate: float = 0.2) -> int:
    """The counting rule's live count at ``level`` over ``mask``'s tensors (global, ``rate`` of the remaining)."""
    return planned_alive({n: m.numel() for n, m in mask.items()}, PruneSpec(rate=rate), level)


def refusing(*packages: str) -> str:
    """The first lines of a ``python -I -c`` script in which importing any of ``packages`` (top
    level names) fails: what an exported model must load without (multiticket, at least)."""
    names = repr(tuple(packages))
    return f"""import importlib.abc, json, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names}:
            raise ImportError(name + " must not be imported here")
sys.meta_path.insert(0, Refuse())
"""
