"""Every write to (and read of) a Stable-Baselines3 field that SB3 does not offer as public API.

A level that starts at the rewind step k continues the dense run's schedules (``num_timesteps``,
the progress that learning-rate, clip-range and exploration schedules read), and a rewind point or
mid-level checkpoint restores SB3's counters and the algorithm's in-flight state (last
observations, episode buffers, DQN's call counter). SB3 keeps these in attributes, most of them
private; they live here, in one module checked against the SB3 versions it was written for, so a
new SB3 that moves them fails at once with one line instead of training a subtly different run.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Protocol, cast

import stable_baselines3
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

from multiticket.errors import UserError

#: the SB3 versions this module was written for: at least the first, below the second
SUPPORTED = ((2, 3), (3, 0))


def check_version(version: str) -> None:
    """Fail with one line unless ``version`` (``stable_baselines3.__version__``) is supported."""
    found = re.match(r"(\d+)\.(\d+)", version)
    low, high = SUPPORTED
    if found is None or not low <= (int(found[1]), int(found[2])) < high:
        raise UserError(
            f"stable-baselines3 {version} is not supported: multiticket reads and restores SB3's training "
            f"counters for versions >={low[0]}.{low[1]},<{high[0]}.{high[1]} "
            f"(pip install 'stable-baselines3>={low[0]}.{low[1]},<{high[0]}.{high[1]}')"
        )


check_version(stable_baselines3.__version__)


class _AlgoExtras(Protocol):
    """Attributes some SB3 algorithms add to ``BaseAlgorithm`` (DQN: ``_n_calls``, ``exploration_rate``;
    SAC: ``log_ent_coef``, ``ent_coef_optimizer``; off-policy: ``replay_buffer``), used only where a
    state key or a ``hasattr``/``getattr`` check shows the algorithm has them."""

    _n_calls: int
    exploration_rate: float
    log_ent_coef: torch.Tensor
    ent_coef_optimizer: torch.optim.Optimizer
    replay_buffer: ReplayBuffer


def extras(model: BaseAlgorithm) -> _AlgoExtras:
    """``model`` typed with the attributes of some algorithms (check that it has them first)."""
    return cast(_AlgoExtras, model)


#: attributes of the algorithm that change while it learns and that counters do not cover
RESUME_ATTRS = (
    "env", "action_space", "observation_space", "_last_obs", "_last_original_obs", "_last_episode_starts",
    "ep_info_buffer", "ep_success_buffer", "action_noise", "_n_calls",
)  # fmt: skip


def start_at(model: BaseAlgorithm, step: int) -> None:
    """Make ``learn(..., reset_num_timesteps=False)`` continue at env step ``step``."""
    model.num_timesteps = step


def continue_progress(model: BaseAlgorithm, stop: int) -> None:
    """The schedules' progress where a run of ``stop`` steps is now (SB3 updates it only after a
    rollout: the first rollout of a level at k would otherwise see the dense run's step 0)."""
    model._current_progress_remaining = 1.0 - model.num_timesteps / stop


def set_lr_schedule(model: BaseAlgorithm, schedule: Any) -> None:
    """Replace the schedule SB3 applies to every optimizer before each update."""
    model.lr_schedule = schedule


def constant_schedule(value: float) -> Any:
    """SB3's own constant schedule (``ConstantSchedule`` since 2.6, ``constant_fn`` before), so
    a saved ``ticket.zip`` pickles it like any other schedule."""
    try:
        from stable_baselines3.common.utils import ConstantSchedule
    except ImportError:  # SB3 < 2.6
        from stable_baselines3.common.utils import constant_fn

        return constant_fn(value)
    return ConstantSchedule(value)


def counters(model: BaseAlgorithm, mid_step: bool) -> dict[str, int]:
    """Episode, update and (DQN) call counters; ``mid_step``: called back inside an env step, which
    DQN counts for its target-update interval only after the callback."""
    out = {"episode_num": int(model._episode_num), "n_updates": int(getattr(model, "_n_updates", 0))}
    if hasattr(model, "_n_calls"):
        out["n_calls"] = int(extras(model)._n_calls) + int(mid_step)
    return out


def set_counters(model: BaseAlgorithm, state: Mapping[str, Any]) -> None:
    """Inverse of :func:`counters` (with ``num_timesteps``, which a rewind point holds beside them)."""
    start_at(model, int(state["num_timesteps"]))
    model._episode_num = int(state.get("episode_num", 0))
    if hasattr(model, "_n_updates"):
        model._n_updates = int(state.get("n_updates", 0))
    if "n_calls" in state:
        extras(model)._n_calls = int(state["n_calls"])


def learner_state(model: BaseAlgorithm) -> dict[str, Any]:
    """The :data:`RESUME_ATTRS` the algorithm has, by reference (a checkpoint pickles them)."""
    return {a: getattr(model, a) for a in RESUME_ATTRS if hasattr(model, a)}


def set_learner_state(model: BaseAlgorithm, values: Mapping[str, Any]) -> None:
    """Copies of a :func:`learner_state` into ``model``."""
    for attr, value in values.items():
        setattr(model, attr, copy.deepcopy(value))


def set_vec_normalize(model: BaseAlgorithm, norm: VecNormalize | None) -> None:
    """The normalisation layer SB3 reads (replay sampling, original observations) after the
    training environments were replaced."""
    model._vec_normalize_env = norm


def saved_variables(model: BaseAlgorithm) -> list[str]:
    """The tensors SB3 saves beside the policy (``_get_torch_save_params``' second list, e.g. SAC's
    ``log_ent_coef``): the compact export carries them over to the rebuilt model."""
    _, variables = model._get_torch_save_params()
    return list(variables)


def rebuild_model(model: BaseAlgorithm) -> None:
    """Rebuild the policy and optimizers from ``model.policy_kwargs`` with SB3's own ``_setup_model``."""
    model._setup_model()
