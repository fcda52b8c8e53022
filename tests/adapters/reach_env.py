"""A custom environment, wrapper, feature extractor and policy for tests/adapters/test_custom_env.py.

Importing this module registers ``TestReach-v0``; nothing else in the test process imports it, so
a run that finds the environment must have imported it (``rl.imports`` or ``module:EnvId``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

ENV_ID = "TestReach-v0"


class Reach(gym.Env):
    """Move a point along one of ``dim`` axes per step towards 0.5; ``dim`` sets the observation size."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, dim: int = 2, render_mode: str | None = None) -> None:
        self.dim, self.render_mode = dim, render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(2 * dim)
        self.x = np.zeros(dim, dtype=np.float32)

    def reset(self, *, seed=None, options=None):  # noqa: ANN001, ANN201
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-0.2, 0.2, self.dim).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action):  # noqa: ANN001, ANN201
        axis, up = divmod(int(action), 2)
        self.x[axis] = np.clip(self.x[axis] + (0.1 if up else -0.1), -1.0, 1.0)
        distance = float(np.linalg.norm(self.x - 0.5))
        return self.x.copy(), -distance, distance < 0.1, False, {}


class AppendOne(gym.ObservationWrapper):
    """Appends ``value`` to each observation: one more input feature shows the wrapper ran."""

    def __init__(self, env: gym.Env, value: float = 1.0) -> None:
        super().__init__(env)
        n = env.observation_space.shape[0] + 1
        self.value = np.float32(value)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.append(observation, self.value).astype(np.float32)


class Linear8(BaseFeaturesExtractor):
    """A features extractor by import path: one Linear layer to 8 features."""

    def __init__(self, observation_space: spaces.Box) -> None:
        super().__init__(observation_space, features_dim=8)
        self.linear = torch.nn.Linear(observation_space.shape[0], 8)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(observations))


class MyPolicy(ActorCriticPolicy):
    """A policy class by import path (an SB3 policy subclass: its roles are known)."""


class OtherPolicy(BasePolicy):
    """A policy that is not PPO's ActorCriticPolicy: built, but its roles are unknown."""

    def __init__(self, observation_space, action_space, lr_schedule, use_sde=False, **kwargs):  # noqa: ANN001
        super().__init__(observation_space, action_space)
        self.net = torch.nn.Linear(observation_space.shape[0], int(action_space.n))

    def _predict(self, observation: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.net(observation).argmax(dim=1)


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=Reach, max_episode_steps=30)
