"""Facts about the machine a run uses: the torch device, and the library versions recorded in
``config.yaml``. Shared by the CLI and the launch layer (driver and workers)."""

from __future__ import annotations

import contextlib
import sys

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
