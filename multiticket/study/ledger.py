"""``OUT/timings.json``: every invocation of a study (command, date, budget, the machine, wall time
and load per part), kept across invocations and saved after every part and on an interrupt.

Apart from running (:mod:`multiticket.study.run`): the results page reads the ledger whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiticket.core.store import atomic_write_text


def machine_info(device: str) -> dict[str, Any]:
    """What the results were measured on (CPU count and model, torch, device, load)."""
    import torch

    from multiticket.runtime import library_versions, resolve_device

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    resolved = resolve_device(device)
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform(), "torch": torch.__version__,
            "device": resolved, "gpu": torch.cuda.get_device_name(0) if resolved == "cuda" else None,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "versions": library_versions()}


def load_ledger(path: Path) -> list[dict[str, Any]]:
    """The invocations recorded in ``timings.json`` ([] when there is none or it is unreadable)."""
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return []
    return list(data.get("invocations", [])) if isinstance(data, dict) else []


def write_file(path: Path, text: str) -> None:
    """``text`` to ``path`` atomically, its folder made first (the ledger, results.json, results.md)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


@dataclass
class Invocation:
    """This invocation's entry of ``timings.json``, saved after every part and on an interrupt."""

    path: Path
    ledger: list[dict[str, Any]]
    entry: dict[str, Any]
    clock: Callable[[], float] = time.monotonic
    start: float = field(default=0.0)

    def save(self) -> None:
        self.entry["wall_seconds"] = round(self.clock() - self.start, 1)
        write_file(self.path, json.dumps({"invocations": self.ledger}, indent=1) + "\n")
