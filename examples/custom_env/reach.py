"""A custom Gymnasium environment for multiticket: importing this module registers ``Reach-v0``.

A point starts at the origin of a ``dim``-dimensional box and must reach ``goal`` (the same value
on every axis); each action moves it 0.1 along one axis, up or down. The reward is minus the
distance to the goal; an episode ends at the goal, or after ``max_episode_steps``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ReachEnv(gym.Env):
    """Reach a point with axis-aligned moves; ``dim`` and ``goal`` come from ``rl.env_kwargs``."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, dim: int = 2, goal: float = 0.5, render_mode: str | None = None) -> None:
        self.dim, self.goal, self.render_mode = int(dim), float(goal), render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(self.dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(2 * self.dim)
        self.position = np.zeros(self.dim, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: ANN201
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-0.2, 0.2, self.dim).astype(np.float32)
        return self.position.copy(), {}

    def step(self, action: int):  # noqa: ANN201
        axis, sign = divmod(int(action), 2)
        self.position[axis] = np.clip(self.position[axis] + (0.1 if sign else -0.1), -1.0, 1.0)
        distance = float(np.linalg.norm(self.position - self.goal))
        return self.position.copy(), -distance, distance < 0.1, False, {}

    def render(self) -> np.ndarray:
        return np.zeros((8, 8, 3), dtype=np.uint8)


class AppendGoal(gym.ObservationWrapper):
    """An example wrapper: appends the goal to every observation (one more input feature)."""

    def __init__(self, env: gym.Env, goal: float = 0.5) -> None:
        super().__init__(env)
        low, high = env.observation_space.low, env.observation_space.high
        self.goal = np.float32(goal)
        bounds = (np.append(low, -1.0).astype(np.float32), np.append(high, 1.0).astype(np.float32))
        self.observation_space = spaces.Box(*bounds, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.append(observation, self.goal).astype(np.float32)


if "Reach-v0" not in gym.registry:
    gym.register("Reach-v0", entry_point=ReachEnv, max_episode_steps=50)
