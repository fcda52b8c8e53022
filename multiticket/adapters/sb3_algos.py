"""Per-algorithm table for the SB3 adapter: which modules play which role (PPO/A2C: the policy's
features extractor, ``mlp_extractor``, ``action_net``, ``value_net``; DQN: ``q_net``; SAC/TD3: actor
and critic), which optimizers exist, which (online, target) pairs the core must hard-copy after a
restore (DQN q_net -> q_net_target; SAC critic -> critic_target; TD3 actor and critic -> targets);
:func:`optimizers_of` and :func:`target_pairs_of` answer for any algorithm (``TicketCallback``).

Roles are found by module *identity*, not by hard-coded parameter names, so a features extractor
that the actor and the critic share (CnnPolicy on Atari) is recognised as the ``shared`` trunk
whatever name ``named_parameters()`` gives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, cast

import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, ContinuousCritic
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

#: a role a task may select in ``rl.roles``
Role = Literal["actor", "critic", "shared"]
#: roles a task may select in ``rl.roles``
ROLES: tuple[Role, ...] = ("actor", "critic", "shared")

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
    ac = cast(ActorCriticPolicy, policy)
    mlp = ac.mlp_extractor
    return [
        ("actor", [ac.pi_features_extractor, mlp.policy_net, ac.action_net]),
        ("critic", [ac.vf_features_extractor, mlp.value_net, ac.value_net]),
    ]


def _dqn_branches(policy: nn.Module) -> list[Branch]:
    q = cast(DQNPolicy, policy).q_net
    return [("critic", [q.features_extractor, q.q_net])]


def _continuous_critic_branches(critic: ContinuousCritic) -> list[Branch]:
    return [("critic", [critic.features_extractor, q]) for q in critic.q_networks]


def _sac_branches(policy: nn.Module) -> list[Branch]:
    sac = cast(SACPolicy, policy)
    actor = sac.actor
    # actor.log_std is a Linear head in SAC; like PPO's log_std it is never pruned by default
    return [("actor", [actor.features_extractor, actor.latent_pi, actor.mu])] + _continuous_critic_branches(
        sac.critic
    )


def _td3_branches(policy: nn.Module) -> list[Branch]:
    td3 = cast(TD3Policy, policy)
    actor = td3.actor
    return [("actor", [actor.features_extractor, actor.mu])] + _continuous_critic_branches(td3.critic)


def _policy_optimizer(model: BaseAlgorithm) -> list[torch.optim.Optimizer]:
    return [model.policy.optimizer]


def _actor_critic_optimizers(model: BaseAlgorithm) -> list[torch.optim.Optimizer]:
    """SAC/TD3: one optimizer for the actor, one for the critic."""
    sac_or_td3 = cast(SAC | TD3, model)
    return [sac_or_td3.actor.optimizer, sac_or_td3.critic.optimizer]


def _no_targets(model: BaseAlgorithm) -> list[tuple[nn.Module, nn.Module]]:
    return []


def _dqn_targets(model: BaseAlgorithm) -> list[tuple[nn.Module, nn.Module]]:
    dqn = cast(DQN, model)
    return [(dqn.q_net, dqn.q_net_target)]


def _sac_targets(model: BaseAlgorithm) -> list[tuple[nn.Module, nn.Module]]:
    sac = cast(SAC, model)
    return [(sac.critic, sac.critic_target)]


def _td3_targets(model: BaseAlgorithm) -> list[tuple[nn.Module, nn.Module]]:
    td3 = cast(TD3, model)
    return [(td3.actor, td3.actor_target), (td3.critic, td3.critic_target)]


_ALL_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec(
        "PPO",
        PPO,
        True,
        _ALL_SPACES,
        ROLES,
        _actor_critic_branches,
        _policy_optimizer,
        _no_targets,
    ),
    "a2c": AlgoSpec(
        "A2C",
        A2C,
        True,
        _ALL_SPACES,
        ROLES,
        _actor_critic_branches,
        _policy_optimizer,
        _no_targets,
    ),
    "dqn": AlgoSpec(
        "DQN",
        DQN,
        False,
        (spaces.Discrete,),
        ("critic",),
        _dqn_branches,
        _policy_optimizer,
        _dqn_targets,
    ),
    "sac": AlgoSpec(
        "SAC",
        SAC,
        False,
        (spaces.Box,),
        ROLES,
        _sac_branches,
        _actor_critic_optimizers,
        _sac_targets,
    ),
    "td3": AlgoSpec(
        "TD3",
        TD3,
        False,
        (spaces.Box,),
        ROLES,
        _td3_branches,
        _actor_critic_optimizers,
        _td3_targets,
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


def spec_of(model: BaseAlgorithm) -> AlgoSpec | None:
    """The table's entry of ``model``'s algorithm (a subclass of PPO is PPO); None for others."""
    for cls in type(model).__mro__:
        for spec in ALGOS.values():
            if spec.cls is cls:
                return spec
    return None


def optimizers_of(model: BaseAlgorithm) -> list[torch.optim.Optimizer]:
    """The optimizers that update ``model.policy``: the table's, or for an algorithm it does not
    know (sb3-contrib's) every ``optimizer`` attribute of a policy module."""
    spec = spec_of(model)
    if spec is not None:
        return spec.optimizers(model)
    found = {id(o): o for m in model.policy.modules()
             if isinstance(o := getattr(m, "optimizer", None), torch.optim.Optimizer)}
    return list(found.values())


def target_pairs_of(model: BaseAlgorithm) -> list[tuple[nn.Module, nn.Module]]:
    """(online, target) pairs: the table's, or for an algorithm it does not know every child
    ``X_target`` of the policy beside a child ``X`` (SB3's naming)."""
    spec = spec_of(model)
    if spec is not None:
        return spec.target_pairs(model)
    children = dict(model.policy.named_children())
    return [(children[n.removesuffix("_target")], c) for n, c in children.items()
            if n.endswith("_target") and n.removesuffix("_target") in children]
