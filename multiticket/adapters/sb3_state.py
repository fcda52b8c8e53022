"""SB3 state as plain arrays, so rewind points and checkpoints are stored without pickles.

VecNormalize's running statistics become ``{"mean", "var", "count"}`` and a replay buffer its
arrays plus ``pos`` and ``full`` (:mod:`multiticket.core.statefile` stores both as safetensors +
JSON). Restoring copies them into the freshly built objects, which must have the same shapes and
dtypes. Legacy run directories hold the objects themselves (``RunningMeanStd``, ``ReplayBuffer``):
their types are on the core's legacy allowlist, and the restore functions accept them as well.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.running_mean_std import RunningMeanStd

from multiticket.core.legacy import allow_legacy_types
from multiticket.errors import UserError

#: what the state files of older multiticket versions hold besides numpy (allowlisted, never code)
allow_legacy_types([
    RunningMeanStd, ReplayBuffer, DictReplayBuffer,
    spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Dict,
])  # fmt: skip


def rms_tree(rms: RunningMeanStd | dict[str, RunningMeanStd]) -> dict[str, Any]:
    """Running statistics (or a dict of them, for dict observations) as arrays and a count."""
    if isinstance(rms, dict):
        return {"per_key": {k: rms_tree(v) for k, v in rms.items()}}
    return {"mean": rms.mean, "var": rms.var, "count": rms.count}


def rms_from(tree: Any) -> RunningMeanStd | dict[str, RunningMeanStd]:
    """Inverse of :func:`rms_tree` (new copies); a legacy ``RunningMeanStd`` is deep-copied."""
    if isinstance(tree, RunningMeanStd):
        return copy.deepcopy(tree)
    if isinstance(tree, dict) and set(tree) == {"per_key"} and isinstance(tree["per_key"], dict):
        return {k: rms_from(v) for k, v in tree["per_key"].items()}  # type: ignore[misc]
    if not (isinstance(tree, dict) and set(tree) == {"mean", "var", "count"}):
        raise UserError("rewind state: VecNormalize statistics are malformed")
    mean, var = np.array(tree["mean"], dtype=np.float64), np.array(tree["var"], dtype=np.float64)
    if mean.shape != var.shape:
        raise UserError("rewind state: VecNormalize mean and var differ in shape")
    rms = RunningMeanStd(shape=mean.shape)
    rms.mean, rms.var, rms.count = mean, var, tree["count"]
    return rms


def _arrays(buffer: ReplayBuffer) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in vars(buffer).items():
        if isinstance(value, np.ndarray) or (
            isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values())
        ):
            out[name] = value
    return out


def buffer_tree(buffer: ReplayBuffer) -> dict[str, Any]:
    """A replay buffer's contents: its arrays (by reference; the core copies), ``pos``, ``full``."""
    return {"arrays": _arrays(buffer), "pos": int(buffer.pos), "full": bool(buffer.full)}


def restore_buffer(target: ReplayBuffer, saved: Any) -> ReplayBuffer:
    """``target`` filled with copies of ``saved`` (a :func:`buffer_tree`); a legacy buffer object
    is deep-copied and returned instead. Shapes and dtypes must match the built buffer."""
    if isinstance(saved, ReplayBuffer):
        return copy.deepcopy(saved)
    ok = isinstance(saved, dict) and set(saved) == {"arrays", "pos", "full"} and isinstance(saved["arrays"], dict)
    expected = _arrays(target)
    if not ok or set(saved["arrays"]) != set(expected):
        raise UserError("rewind state: the replay buffer does not match this task's buffer")
    for name, value in saved["arrays"].items():
        if isinstance(value, dict):
            target_value = expected[name]
            if not isinstance(target_value, dict) or set(value) != set(target_value):
                raise UserError(f"rewind state: replay buffer field '{name}' does not match")
            setattr(target, name, {k: _checked_copy(f"{name}.{k}", v, target_value[k]) for k, v in value.items()})
        else:
            setattr(target, name, _checked_copy(name, value, expected[name]))
    pos = saved["pos"]
    if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos <= target.buffer_size:
        raise UserError("rewind state: replay buffer position out of range")
    target.pos, target.full = pos, bool(saved["full"])
    return target


def _checked_copy(name: str, value: Any, like: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray) or not isinstance(like, np.ndarray) or value.shape != like.shape \
            or value.dtype != like.dtype:
        raise UserError(f"rewind state: replay buffer field '{name}' has another shape or dtype than this task's")
    return value.copy()
