"""``RewindPoint``: a deep copy of everything a level restarts from (Frankle et al. 2019).

A rewind point holds copies, never references: training after capture cannot change it (rewinding
by reference is the classic silent bug: training overwrites the "saved" θ_k). It holds the full
``state_dict`` of the prunable root (weights and buffers, the head and target networks included),
optimizer states, the RNG states of torch, numpy and Python, the step counter, and the adapter's
own extra state.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from multiticket.core.store import save_torch


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def copy_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU clones of a module's state dict (tied entries become independent copies)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


@dataclass
class RewindPoint:
    step: int
    weights: dict[str, torch.Tensor]
    optimizers: list[dict[str, Any]] = field(default_factory=list)
    rng: dict[str, Any] = field(default_factory=rng_state)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def capture(
        cls,
        module: nn.Module,
        step: int,
        optimizers: Sequence[torch.optim.Optimizer] = (),
        extra: dict[str, Any] | None = None,
    ) -> RewindPoint:
        return cls(
            step=step,
            weights=copy_state_dict(module),
            optimizers=[copy.deepcopy(_cpu(o.state_dict())) for o in optimizers],
            rng=copy.deepcopy(rng_state()),
            extra=copy.deepcopy(extra or {}),
        )

    @torch.no_grad()
    def restore_weights(self, module: nn.Module) -> None:
        """Copy the saved weights into ``module`` (by value; the rewind point stays intact)."""
        module.load_state_dict(self.weights, strict=True)

    def restore_optimizers(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        if not self.optimizers:
            return
        if len(optimizers) != len(self.optimizers):
            raise ValueError(f"rewind point has {len(self.optimizers)} optimizer states, got {len(optimizers)} optimizers")
        for opt, state in zip(optimizers, self.optimizers):
            opt.load_state_dict(copy.deepcopy(state))

    def restore_rng(self) -> None:
        set_rng_state(self.rng)

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: Path) -> list[str]:
        """Write ``weights.safetensors`` and ``state.pt`` into ``directory``; returns file names."""
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.weights.items()}, str(directory / "weights.safetensors"))
        save_torch(
            {"step": self.step, "optimizers": self.optimizers, "rng": self.rng, "extra": self.extra},
            directory / "state.pt",
        )
        return ["weights.safetensors", "state.pt"]

    @classmethod
    def load(cls, directory: Path) -> RewindPoint:
        weights = load_file(str(directory / "weights.safetensors"))
        state = torch.load(directory / "state.pt", weights_only=False)
        return cls(step=state["step"], weights=weights, optimizers=state["optimizers"], rng=state["rng"],
                   extra=state["extra"])


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    return obj
