"""How the SB3 adapter evaluates a unit: its seeded evaluation episodes, their metrics, and the
random-policy baseline measured on the same episodes.

Module-level functions of the model, the eval env and the ``rl`` section, so that
:class:`~multiticket.adapters.sb3.SB3Adapter` keeps only thin methods over them. The evaluation
methods (``disjoint``, ``batched``, ``sequential``) are described at
:attr:`SB3Adapter.eval_methods <multiticket.adapters.sb3.SB3Adapter.eval_methods>`.
"""

from __future__ import annotations

import copy
import math
from typing import cast

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from multiticket.adapters.sb3_config import Section
from multiticket.adapters.sb3_envs import make_env, vec_normalize
from multiticket.adapters.sb3_hyper import Hyper
from multiticket.adapters.sb3_random import random_policy_returns
from multiticket.adapters.sb3_rewind import vec_normalize_of


def first_eval_seed(method: str, section: Section, seed: int) -> int:
    """The seed of the first evaluation env copy of training seed ``seed`` (copy i: this + i)."""
    if method == "disjoint":
        return section.eval_seed_offset + seed * section.n_eval_episodes
    return seed + section.eval_seed_offset


def episode_seeds(method: str, section: Section, seed: int) -> list[int]:
    """The env seed of each evaluation episode (``sequential``: the one env's seed, its
    episodes continuing that env's stream)."""
    first = first_eval_seed(method, section, seed)
    if method == "sequential":
        return [first]
    return [first + i for i in range(section.n_eval_episodes)]


def eval_metrics(model: BaseAlgorithm, returns: list[float], lengths: list[int],
                 ticket_reward_episodes: int) -> dict[str, float]:
    """Mean and std return and mean length of the evaluation episodes, plus Yu et al.'s ticket
    reward (mean return of the last ``ticket_reward_episodes`` training episodes, when any ended);
    non-finite values are left out."""
    metrics = {
        "eval_return": float(np.mean(returns)),
        "eval_return_std": float(np.std(returns)),
        "eval_length": float(np.mean(lengths)),
    }
    episodes = list(model.ep_info_buffer or [])[-ticket_reward_episodes:]
    if episodes:
        metrics["ticket_reward"] = float(np.mean([ep["r"] for ep in episodes]))
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def eval_episodes(model: BaseAlgorithm, eval_env: VecEnv, n_episodes: int,
                  first_seed: int) -> tuple[list[float], list[int]]:
    """Return and length of each of ``n_episodes`` deterministic evaluation episodes, in the order
    they ended. Batched, the eval env holds one copy per episode and ``evaluate_policy`` runs
    exactly one episode on each (it splits N episodes evenly over N envs), predicting for all
    copies at once; sequential, one env runs them in turn. The eval env normalises observations
    with the training env's statistics."""
    train_norm, eval_norm = vec_normalize_of(model.get_env()), vec_normalize(eval_env)
    if train_norm is not None and eval_norm is not None:
        eval_norm.obs_rms = copy.deepcopy(train_norm.obs_rms)
    eval_env.seed(first_seed)  # copy i: this seed + i
    # return_episode_rewards=True: per-episode lists, not (mean, std)
    episodes = evaluate_policy(
        model,
        eval_env,
        n_eval_episodes=n_episodes,
        deterministic=True,
        return_episode_rewards=True,
        warn=False,
    )
    returns, lengths = cast(tuple[list[float], list[int]], episodes)
    return [float(r) for r in returns], [int(n) for n in lengths]


def random_baselines(section: Section, hyper: Hyper, first_seed: int) -> dict[str, float]:
    """A uniformly random policy's mean and std return over ``n_eval_episodes`` episodes on an
    evaluation environment built and seeded with ``first_seed`` (the actions drawn from their own
    generator, seeded with that seed)."""
    s = section
    env = make_env(s.env, hyper, first_seed, s.n_eval_episodes, training=False, env_attrs=s.env_attrs)
    try:
        env.seed(first_seed)
        returns = random_policy_returns(env, s.n_eval_episodes, first_seed)
    finally:
        env.close()
    return {"random_return_mean": float(np.mean(returns)), "random_return_std": float(np.std(returns)),
            "random_episodes": float(len(returns))}
