"""A seeded uniformly random policy, the RL baseline of the report's degenerate-result checks.

It draws every action from the action space's own generator (seeded here), never from the global
RNGs, so measuring it leaves the training streams untouched; and it is evaluated exactly as a unit
is (:meth:`SB3Adapter.eval_episodes`: the same evaluation environment, seeds and episode count).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv


class RandomPolicy:
    """What ``evaluate_policy`` needs of a model: ``predict`` with uniformly random actions."""

    def __init__(self, action_space: spaces.Space, n_envs: int, seed: int) -> None:
        self.space = copy.deepcopy(action_space)
        self.space.seed(seed)
        self.n_envs = n_envs

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:
        return np.array([self.space.sample() for _ in range(self.n_envs)]), None


def random_policy_returns(env: VecEnv, n_episodes: int, seed: int) -> list[float]:
    """Returns of ``n_episodes`` episodes of a random policy on ``env`` (seeded by the caller)."""
    policy = RandomPolicy(env.action_space, env.num_envs, seed)
    returns, _ = evaluate_policy(policy, env, n_eval_episodes=n_episodes, deterministic=True,
                                 return_episode_rewards=True, warn=False)
    assert isinstance(returns, list)  # return_episode_rewards: one return per episode
    return [float(r) for r in returns]
