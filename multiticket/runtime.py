"""Facts about the machine a run uses: the torch device, the library versions recorded in
``config.yaml``, and how a run's process imports what it keeps. Shared by the CLI and the launch
layer (driver and workers)."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator

from multiticket.errors import UserError

#: distributions whose versions a run directory records
VERSIONED = ("multiticket", "torch", "numpy", "stable-baselines3", "gymnasium", "transformers", "datasets")


def resolve_device(choice: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device exists, else ``cpu``; ``cuda`` without one is a UserError."""
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device: cuda requested but no CUDA device is available")
    return choice


def library_versions() -> dict[str, str]:
    """Python's and every installed :data:`VERSIONED` distribution's version."""
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for dist in VERSIONED:
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    return out


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a run's process imports the modules it keeps
    until exit (torch, the domain's library, the adapter): importing them allocates hundreds of
    thousands of long-lived objects, and the collector re-walks them over and over, about a fifth
    of the import time (measured on torch + SB3 + multiticket: 0.6 s of 3 s CPU). Nothing imported
    is garbage, so nothing is lost; the collector's previous state comes back on exit, also on an
    error."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
