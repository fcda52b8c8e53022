"""What an SB3 learner holds beyond its weights, optimizers and RNGs: the SB3 adapter's rewind
state (``state``/``load_state``) and its mid-level checkpoint state (``resume_state``/
``load_resume_state``, ``check_resumable``).

Module-level functions of the model, so that :class:`~multiticket.adapters.sb3.SB3Adapter` keeps
only thin methods over them. The rewind state is plain arrays and numbers
(:mod:`multiticket.adapters.sb3_state` converts VecNormalize statistics and replay buffers); a
checkpoint adds the training environments and other algorithm attributes, which can only be
pickled. SB3's private fields are reached through :mod:`multiticket.adapters.sb3_shim`.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any, cast

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from multiticket.adapters import sb3_shim as shim
from multiticket.adapters.sb3_envs import vec_normalize
from multiticket.adapters.sb3_state import buffer_tree, restore_buffer, rms_from, rms_tree
from multiticket.core.statefile import Pickled
from multiticket.errors import UserError


def vec_normalize_of(venv: VecEnv | None) -> VecNormalize | None:
    """The ``VecNormalize`` layer of ``venv`` (None without one, or without an env)."""
    return None if venv is None else vec_normalize(venv)


def rewind_state(model: BaseAlgorithm, keep_replay_buffer: bool, mid_step: bool) -> dict[str, Any]:
    """Counters, exploration rate, entropy coefficient, VecNormalize statistics and (with
    ``keep_replay_buffer``) the replay buffer, as plain arrays and numbers (stored without
    pickles, :mod:`multiticket.adapters.sb3_state`). By reference: the core deep-copies it.
    ``mid_step``: taken from inside SB3's step (the adapter's ``HooksCallback``)."""
    # mid-step: DQN counts this step (for its target-update interval) only after the callback
    st: dict[str, Any] = {"num_timesteps": int(model.num_timesteps), **shim.counters(model, mid_step)}
    extras = shim.extras(model)
    if hasattr(model, "exploration_rate"):
        st["exploration_rate"] = float(extras.exploration_rate)
    if getattr(model, "log_ent_coef", None) is not None:
        st["log_ent_coef"] = extras.log_ent_coef.detach().cpu().clone()
    norm = vec_normalize_of(model.get_env())
    if norm is not None:
        st["obs_rms"], st["ret_rms"] = rms_tree(norm.obs_rms), rms_tree(norm.ret_rms)
    if keep_replay_buffer and getattr(model, "replay_buffer", None) is not None:
        st["replay_buffer"] = buffer_tree(extras.replay_buffer)
    return st


def load_rewind_state(model: BaseAlgorithm, state: dict[str, Any], keep_replay_buffer: bool) -> None:
    """Inverse of :func:`rewind_state`: ``state`` copied into the built ``model``."""
    extras = shim.extras(model)
    shim.set_counters(model, state)
    if "exploration_rate" in state:
        extras.exploration_rate = float(state["exploration_rate"])
    if "log_ent_coef" in state and getattr(model, "log_ent_coef", None) is not None:
        with torch.no_grad():  # in place: the entropy optimizer keeps pointing at this tensor
            extras.log_ent_coef.copy_(state["log_ent_coef"].to(extras.log_ent_coef.device))
    norm = vec_normalize_of(model.get_env())
    if norm is not None and "obs_rms" in state:
        # SB3 types obs_rms after its dict-observation branch; it holds either kind (rms_from's result)
        norm.obs_rms = rms_from(state["obs_rms"])  # type: ignore[assignment]
        norm.ret_rms = cast(RunningMeanStd, rms_from(state["ret_rms"]))  # a scalar statistic, never a dict
    if keep_replay_buffer and state.get("replay_buffer") is not None:
        extras.replay_buffer = restore_buffer(extras.replay_buffer, state["replay_buffer"])


def with_resume_state(model: BaseAlgorithm, st: dict[str, Any]) -> dict[str, Any]:
    """``st`` (a :func:`rewind_state`) plus the training environments (physics, episode counters,
    their RNGs, Monitor statistics), the last observations, episode buffers, action noise, the
    entropy coefficient's optimizer and, off-policy, the replay buffer. Taken between rollouts only
    (``on_resumable``), so the rollout buffer is empty and needs no saving. The environments and
    the other algorithm attributes can only be pickled: they travel as a signed pickle."""
    st["algo"] = Pickled(shim.learner_state(model))  # the attributes of shim.RESUME_ATTRS it has
    if getattr(model, "replay_buffer", None) is not None:
        st["replay_buffer"] = buffer_tree(shim.extras(model).replay_buffer)
    ent_opt = getattr(model, "ent_coef_optimizer", None)
    if ent_opt is not None:
        st["ent_coef_optimizer"] = ent_opt.state_dict()
    return st


def load_resume_extras(model: BaseAlgorithm, state: dict[str, Any], old_env: VecEnv | None) -> None:
    """What :func:`with_resume_state` adds, put back once the rewind state is loaded: the pickled
    learner attributes (``old_env``, the training envs ``model`` had before, is closed when they
    replace it), the VecNormalize layer SB3 keeps a reference to, the replay buffer and the entropy
    coefficient's optimizer."""
    algo = state["algo"].value if isinstance(state["algo"], Pickled) else state["algo"]
    shim.set_learner_state(model, algo)
    if old_env is not None and old_env is not model.env:
        old_env.close()
    shim.set_vec_normalize(model, vec_normalize_of(model.env))
    extras = shim.extras(model)
    if state.get("replay_buffer") is not None:
        extras.replay_buffer = restore_buffer(extras.replay_buffer, state["replay_buffer"])
    if "ent_coef_optimizer" in state and getattr(model, "ent_coef_optimizer", None) is not None:
        extras.ent_coef_optimizer.load_state_dict(copy.deepcopy(state["ent_coef_optimizer"]))


def check_resumable(model: BaseAlgorithm, env_id: str) -> None:
    """Checkpoints pickle the training environments; fail before training if a pickled copy
    cannot go on stepping (Box2D's LunarLander pickles, but its copy has lost its world)."""
    try:
        env = model.get_env()
        assert env is not None  # build() gave the model its training envs
        probe = copy.deepcopy(env)  # before its first reset: a plain copy
        probe.reset()  # simulators such as Box2D build their world here
        restored = pickle.loads(pickle.dumps(probe))
        restored.step(np.array([restored.action_space.sample() for _ in range(restored.num_envs)]))
        probe.close()
        restored.close()
    except Exception as exc:  # noqa: BLE001 - any copy failure means no checkpoints for this env
        raise UserError(
            f"checkpoint: the environments of '{env_id}' cannot be copied for a checkpoint "
            f"({type(exc).__name__}); remove the checkpoint section for this task"
        ) from None
