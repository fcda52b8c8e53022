"""``RewindPoint``: a deep copy of everything a level restarts from (Frankle et al. 2019).

A rewind point holds copies, never references: training after capture cannot change it (rewinding
by reference is the classic silent bug: training overwrites the "saved" θ_k). It holds the full
``state_dict`` of the prunable root (weights and buffers, the head and target networks included),
optimizer states, the RNG states of torch, numpy and Python, the step counter, and the adapter's
own extra state.

On disk (``save``/``load``): ``weights.safetensors`` and the rest as a state tree
(``state.safetensors`` + ``state.json``, :mod:`multiticket.core.statefile`): nothing is unpickled
when a rewind point is read back, except a ``state.pickle`` signed by this user's key, which only a
mid-level checkpoint of an SB3 unit has (its environments).
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

from multiticket.core.statefile import load_tree, save_tree
from multiticket.errors import UserError


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
        """Write ``weights.safetensors`` and the state tree ``state`` into ``directory``; returns
        the file names."""
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.weights.items()}, str(directory / "weights.safetensors"))
        state = {"step": self.step, "optimizers": self.optimizers, "rng": self.rng, "extra": self.extra}
        return ["weights.safetensors", *save_tree(directory, "state", state)]

    @classmethod
    def load(cls, directory: Path) -> RewindPoint:
        """Read a rewind point (a legacy ``state.pt`` through the allowlist); a file that is not
        what multiticket writes is one line naming it (:class:`multiticket.errors.UserError`)."""
        try:
            weights = load_file(str(directory / "weights.safetensors"))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise UserError(f"{directory / 'weights.safetensors'}: unreadable ({type(exc).__name__})") from None
        state = load_tree(directory, "state")
        if not (isinstance(state, dict) and {"step", "optimizers", "rng", "extra"} <= set(state)
                and isinstance(state["step"], int) and isinstance(state["optimizers"], list)
                and isinstance(state["rng"], dict) and isinstance(state["extra"], dict)):
            raise UserError(f"{directory}: rewind state has not the fields of a rewind point; not loaded")
        _check_rng(state["rng"], directory)
        return cls(step=state["step"], weights=weights, optimizers=state["optimizers"], rng=state["rng"],
                   extra=state["extra"])


def _check_rng(rng: dict[str, Any], directory: Path) -> None:
    """Fail with one line now, not with a traceback mid-run, if ``rng`` is no valid RNG state
    (set it, then put the current state back)."""
    current = rng_state()
    try:
        set_rng_state(rng)
    except Exception as exc:  # noqa: BLE001 - torch, numpy and random raise various types
        raise UserError(f"{directory}: rewind state holds no valid RNG state ({type(exc).__name__}); not loaded") \
            from None
    finally:
        set_rng_state(current)


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    return obj
