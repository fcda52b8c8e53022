"""Building a unit's SB3 model: the seeded training envs, the action noise, the algorithm from the
resolved hyperparameters, and fresh policy weights drawn from another seed.

Module-level functions, so that :meth:`SB3Adapter.build <multiticket.adapters.sb3.SB3Adapter.build>`
keeps only the order of the steps (seeds, torch threads, model, eval env). Every way a task's
``rl`` settings can fail to build a model is a :class:`~multiticket.errors.UserError` naming the
key, with the envs already made closed again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.vec_env import VecEnv

from multiticket.adapters.sb3_algos import AlgoSpec
from multiticket.adapters.sb3_config import Section
from multiticket.adapters.sb3_env_spec import action_space_problem
from multiticket.adapters.sb3_envs import make_env
from multiticket.adapters.sb3_hyper import Hyper
from multiticket.errors import UserError


def model_device(section: Section, hyper: Hyper, device: str) -> str:
    """The device the model runs on: ``rl.device``, or with ``auto`` the run's ``device`` for CNN
    policies and the CPU for every other (SB3's MLP policies are fastest on CPU)."""
    wanted = section.device
    if wanted == "cuda" and not torch.cuda.is_available():
        raise UserError("rl.device: 'cuda' asked for but no CUDA device is available")
    if wanted == "auto":
        # SB3's MLP policies are fastest on CPU even when a GPU exists; CNN policies are not
        return "cuda" if device == "cuda" and "Cnn" in hyper.policy else "cpu"
    return wanted


def action_noise(hyper: Hyper, venv: VecEnv) -> Any:
    """The off-policy exploration noise the hyperparameters ask for (None without any)."""
    if hyper.noise is None:
        return None
    kind, std = hyper.noise
    shape = venv.action_space.shape
    assert shape is not None  # noise is for Box action spaces, which have a shape
    n = int(np.prod(shape))
    cls = NormalActionNoise if kind == "normal" else OrnsteinUhlenbeckActionNoise
    return cls(mean=np.zeros(n), sigma=std * np.ones(n))


def make_model(spec: AlgoSpec, hyper: Hyper, section: Section, seed: int, device: str) -> BaseAlgorithm:
    """The algorithm on ``hyper.n_envs`` training envs, all seeded with ``seed``."""
    aliases = list(spec.cls.policy_aliases)
    if hyper.policy_class is None and hyper.policy not in aliases:
        raise UserError(f"rl.overrides: policy '{hyper.policy}' is not one of {aliases} "
                        "(or a policy class by import path)")
    env_id = section.env
    venv = make_env(env_id, hyper, seed, hyper.n_envs, training=True, env_attrs=section.env_attrs)
    problem = action_space_problem(section.algo, venv.action_space, env_id)
    if problem:
        venv.close()
        raise UserError(f"rl.algo: {problem}")
    kwargs = dict(hyper.kwargs)
    noise = action_noise(hyper, venv)
    if noise is not None:
        kwargs["action_noise"] = noise
    try:
        return spec.cls(
            hyper.policy_class or hyper.policy, venv, seed=seed, device=device, verbose=section.verbose, **kwargs
        )
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        venv.close()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"rl.overrides: {spec.name} rejected the hyperparameters: {first}") from None


def reinitialise(model: BaseAlgorithm, spec: AlgoSpec, init_seed: int) -> None:
    """Fresh policy weights drawn with ``init_seed``; the torch RNG stream that drives
    sampling is left exactly as it was, so only the initialisation differs."""
    rng = torch.get_rng_state()
    torch.manual_seed(init_seed)
    extra = {"use_sde": model.use_sde} if spec.on_policy else {}
    fresh = model.policy_class(
        model.observation_space, model.action_space, model.lr_schedule, **extra, **model.policy_kwargs
    ).to(model.device)
    model.policy.load_state_dict(fresh.state_dict())
    torch.set_rng_state(rng)
