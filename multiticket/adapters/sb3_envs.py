"""Training and evaluation environments for the SB3 adapter.

Every env is a seeded ``DummyVecEnv`` of ``Monitor``-wrapped Gymnasium envs (sequential, so runs
are reproducible and cheap on small machines); Atari games get SB3's ``AtariWrapper`` through
``make_atari_env``, then ``VecFrameStack``; ``normalize`` adds ``VecNormalize``.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecNormalize

from multiticket.adapters.sb3_config import Hyper, is_atari, register_atari
from multiticket.errors import UserError


def _missing_dependency(env_id: str, exc: BaseException) -> UserError:
    text = str(getattr(exc, "name", None) or exc).strip().splitlines()[0]
    if "pip install" not in text:
        text += " (pip install it, e.g. 'gymnasium[box2d]' or 'gymnasium[mujoco]')"
    return UserError(f"rl.env: '{env_id}' needs a package that is not installed: {text}")


def make_env(env_id: str, hyper: Hyper, seed: int, n_envs: int, training: bool) -> VecEnv:
    """A seeded VecEnv; evaluation envs never update normalisation statistics."""
    kwargs: dict[str, Any] = dict(hyper.env_kwargs)
    if is_atari(env_id) and importlib.util.find_spec("cv2") is None:
        raise UserError(
            f"rl.env: '{env_id}' needs OpenCV for SB3's AtariWrapper (pip install opencv-python-headless)"
        )
    try:
        if is_atari(env_id):
            register_atari()
            venv: VecEnv = make_atari_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=kwargs)
        else:
            venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=kwargs)
    except (ImportError, gym.error.DependencyNotInstalled) as exc:
        raise _missing_dependency(env_id, exc) from None
    except TypeError as exc:
        raise UserError(f"rl.env_kwargs: {env_id} rejected them: {exc}") from None
    if hyper.frame_stack:
        venv = VecFrameStack(venv, n_stack=hyper.frame_stack)
    if hyper.normalize is not None:
        norm = dict(hyper.normalize)
        if not training:
            norm.update(training=False, norm_reward=False)
        try:
            venv = VecNormalize(venv, **norm)
        except TypeError as exc:
            raise UserError(f"rl.overrides: normalize: {exc}") from None
    return venv


def vec_normalize(venv: VecEnv) -> VecNormalize | None:
    """The ``VecNormalize`` layer of ``venv``, if any."""
    while True:
        if isinstance(venv, VecNormalize):
            return venv
        inner = getattr(venv, "venv", None)
        if inner is None:
            return None
        venv = inner
