"""Per-algorithm table for the SB3 adapter: which modules play which role (PPO/A2C: the policy's
features extractor, ``mlp_extractor``, ``action_net``, ``value_net``; DQN: ``q_net``; SAC/TD3: actor
and critic), which optimizers exist, which (online, target) pairs the core must hard-copy after a
restore (DQN q_net -> q_net_target; SAC critic -> critic_target; TD3 actor and critic -> targets).

Roles are found by module *identity*, not by hard-coded parameter names, so a features extractor
that the actor and the critic share (CnnPolicy on Atari) is recognised as the ``shared`` trunk
whatever name ``named_parameters()`` gives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

#: roles a task may select in ``rl.roles``
ROLES = ("actor", "critic", "shared")

#: layer types whose ``weight`` is prunable by default
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

#: a branch is one path from observation to an output head: its role and its modules in order
Branch = tuple[str, list[nn.Module]]


@dataclass(frozen=True)
class AlgoSpec:
    """What the adapter needs to know about one SB3 algorithm."""

    name: str
    cls: type[BaseAlgorithm]
    on_policy: bool
    #: action space types the algorithm supports
    action_spaces: tuple[type[spaces.Space], ...]
    #: roles that exist in this algorithm's policy (DQN has a Q-network only: "critic")
    roles: tuple[str, ...]
    branches: Callable[[nn.Module], list[Branch]]
    optimizers: Callable[[BaseAlgorithm], list[torch.optim.Optimizer]]
    target_pairs: Callable[[BaseAlgorithm], list[tuple[nn.Module, nn.Module]]]


def _actor_critic_branches(policy: nn.Module) -> list[Branch]:
    """PPO/A2C ``ActorCriticPolicy``: pi and vf paths; ``log_std`` is a bare parameter, in no branch."""
    mlp = policy.mlp_extractor
    return [
        ("actor", [policy.pi_features_extractor, mlp.policy_net, policy.action_net]),
        ("critic", [policy.vf_features_extractor, mlp.value_net, policy.value_net]),
    ]


def _dqn_branches(policy: nn.Module) -> list[Branch]:
    q = policy.q_net
    return [("critic", [q.features_extractor, q.q_net])]


def _continuous_critic_branches(critic: nn.Module) -> list[Branch]:
    return [("critic", [critic.features_extractor, q]) for q in critic.q_networks]


def _sac_branches(policy: nn.Module) -> list[Branch]:
    actor = policy.actor
    # actor.log_std is a Linear head in SAC; like PPO's log_std it is never pruned by default
    return [("actor", [actor.features_extractor, actor.latent_pi, actor.mu])] + _continuous_critic_branches(
        policy.critic
    )


def _td3_branches(policy: nn.Module) -> list[Branch]:
    actor = policy.actor
    return [("actor", [actor.features_extractor, actor.mu])] + _continuous_critic_branches(policy.critic)


_ALL_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec(
        "PPO",
        PPO,
        True,
        _ALL_SPACES,
        ROLES,
        _actor_critic_branches,
        lambda m: [m.policy.optimizer],
        lambda m: [],
    ),
    "a2c": AlgoSpec(
        "A2C",
        A2C,
        True,
        _ALL_SPACES,
        ROLES,
        _actor_critic_branches,
        lambda m: [m.policy.optimizer],
        lambda m: [],
    ),
    "dqn": AlgoSpec(
        "DQN",
        DQN,
        False,
        (spaces.Discrete,),
        ("critic",),
        _dqn_branches,
        lambda m: [m.policy.optimizer],
        lambda m: [(m.q_net, m.q_net_target)],
    ),
    "sac": AlgoSpec(
        "SAC",
        SAC,
        False,
        (spaces.Box,),
        ROLES,
        _sac_branches,
        lambda m: [m.actor.optimizer, m.critic.optimizer],
        lambda m: [(m.critic, m.critic_target)],
    ),
    "td3": AlgoSpec(
        "TD3",
        TD3,
        False,
        (spaces.Box,),
        ROLES,
        _td3_branches,
        lambda m: [m.actor.optimizer, m.critic.optimizer],
        lambda m: [(m.actor, m.actor_target), (m.critic, m.critic_target)],
    ),
}


def _layers(modules: list[nn.Module]) -> Iterator[nn.Module]:
    """Prunable layers of a branch in forward order (``modules()`` is registration order,
    which for SB3's Sequential/extractor modules is the forward order)."""
    for mod in modules:
        for sub in mod.modules():
            if isinstance(sub, PRUNABLE_TYPES):
                yield sub


def prunable_names(policy: nn.Module, spec: AlgoSpec, roles: list[str], prune_input_layer: bool) -> list[str]:
    """Weight names (relative to ``policy``) of the Linear/Conv layers of the selected roles.

    A layer reached from both the actor and the critic branches is ``shared``. The input layer of
    each branch is its first Linear/Conv layer (the first conv of a shared CNN trunk, or the first
    Linear of each MLP head). ``log_std`` is never returned.
    """
    role_of: dict[int, str] = {}
    input_layers: set[int] = set()
    for role, modules in spec.branches(policy):
        for i, layer in enumerate(_layers(modules)):
            key = id(layer.weight)
            previous = role_of.get(key)
            role_of[key] = role if previous in (None, role) else "shared"
            if i == 0:
                input_layers.add(key)
    names = []
    for name, param in policy.named_parameters():
        key = id(param)
        if key not in role_of or "log_std" in name:
            continue
        if role_of[key] in roles and (prune_input_layer or key not in input_layers):
            names.append(name)
    return names


def hard_copy(online: nn.Module, target: nn.Module) -> None:
    """Copy every parameter and buffer of ``online`` into ``target`` in place (no new tensors,
    so optimizers and polyak updates keep pointing at the same storage)."""
    with torch.no_grad():
        for dst, src in zip(target.state_dict().values(), online.state_dict().values(), strict=True):
            dst.copy_(src)
