"""A ticket as an SB3 zip that plain ``ALGO.load`` reads; compact: its dead neurons removed.

A neuron of a hidden Linear layer is *dead* when its whole row is pruned (every neuron a
``prune.structure: neurons`` level removed; any all-zero row of an unstructured mask). Its output
is then the constant act(b) whatever the input, so removing it and adding W[:, i]·act(b_i) to
each consuming layer's bias leaves every output of the network unchanged (up to float
reassociation). The compact zip holds the narrower policy, with ``policy_kwargs.net_arch`` set to
the widths left, so that ``PPO.load`` (A2C, DQN, SAC, TD3) rebuilds exactly that network with SB3
alone and loads its weights strictly.

The dependency bookkeeping (which input columns of which consumers go with a row: the next
hidden layer, the action and value heads) is torch-pruning's (``DependencyGraph``,
``prune_linear_out_channels``): it traces the policy's forward and prunes each group in place.
The removal and the bias folding are shared with the torch domain
(:mod:`multiticket.adapters.neuron_removal`); written here: what SB3 needs to rebuild the
network (``net_arch``, fresh optimizers by ``_setup_model``, target networks copied from the
online ones). SAC and TD3 describe all critics with one ``qf`` list, so a critic that lost fewer
neurons at a depth keeps some dead ones there (exact, only less compact). Feature extractors
(NatureCNN) are left whole: their widths are not ``net_arch``'s.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from multiticket.adapters import sb3_shim
from multiticket.adapters.neuron_removal import dead_rows, linears, remove_neurons
from multiticket.errors import UserError

#: largest difference between the masked and the compact network's outputs that counts as equal
TOLERANCE = 1e-4


@dataclass
class Net:
    """One traced network of a policy: ``root`` (its forward is what torch-pruning traces and
    the check compares), its ``inputs``, and its hidden Linear layers in ``net_arch`` order per key."""

    root: nn.Module
    inputs: tuple[torch.Tensor, ...]
    hidden: dict[str, list[nn.Linear]] = field(default_factory=dict)
    #: keys whose layers at one depth must keep one width (SB3's critics share ``qf``)
    shared: dict[str, list[list[nn.Linear]]] = field(default_factory=dict)


class _ActorCriticHeads(nn.Module):
    """PPO/A2C: the action head's parameters and the value, from the observation."""

    def __init__(self, policy: ActorCriticPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latent_pi, latent_vf = self.policy.mlp_extractor(self.policy.extract_features(obs))
        return self.policy.action_net(latent_pi), self.policy.value_net(latent_vf)


class _GaussianActor(nn.Module):
    """SAC: the squashed Gaussian's mean and log-std (deterministic; no sampling to trace)."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.actor: Any = actor

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std, _ = self.actor.get_action_dist_params(obs)
        return mean, log_std


def probe_batch(model: BaseAlgorithm, n: int = 16) -> tuple[Any, torch.Tensor]:
    """Observations (as the policy reads them) and actions drawn from the spaces, seeded."""
    obs_space, act_space = model.observation_space, model.action_space
    obs_space.seed(0)
    act_space.seed(1)
    obs, _ = model.policy.obs_to_tensor(np.stack([obs_space.sample() for _ in range(n)]))
    actions = torch.as_tensor(np.stack([act_space.sample() for _ in range(n)]), dtype=torch.float32)
    return obs, actions.reshape(n, -1)


def nets_of(model: BaseAlgorithm) -> list[Net]:
    """The networks of an SB3 policy with their hidden layers, or a one-line UserError."""
    policy: Any = model.policy
    obs, actions = probe_batch(model)
    if isinstance(policy, ActorCriticPolicy):
        ex = policy.mlp_extractor
        return [Net(_ActorCriticHeads(policy), (obs,), {"pi": linears(ex.policy_net), "vf": linears(ex.value_net)})]
    if hasattr(policy, "q_net") and hasattr(policy, "q_net_target"):  # DQN
        return [Net(policy.q_net, (obs,), {"": linears(policy.q_net.q_net)[:-1]})]
    actor, critic = getattr(policy, "actor", None), getattr(policy, "critic", None)
    if actor is None or critic is None or not hasattr(critic, "q_networks"):
        raise UserError(f"export: --compact knows PPO, A2C, DQN, SAC and TD3 policies, not {type(policy).__name__}")
    if hasattr(actor, "latent_pi"):  # SAC
        if getattr(actor, "use_sde", False):
            raise UserError("export: --compact does not cover SAC with use_sde (its noise is a matrix over latent_pi)")
        pi = Net(_GaussianActor(actor), (obs,), {"pi": linears(actor.latent_pi)})
    else:  # TD3
        pi = Net(actor, (obs,), {"pi": linears(actor.mu)[:-1]})
    qs = [linears(q)[:-1] for q in critic.q_networks]
    return [pi, Net(critic, (obs, actions), shared={"qf": qs})]


def removals(policy: nn.Module, mask: Mapping[str, torch.Tensor], net: Net) -> dict[nn.Linear, list[int]]:
    """The rows each hidden layer loses; a layer left with no neuron is refused; critics sharing
    a width keep as many as the widest of them (their first dead rows stay)."""
    out = {layer: dead_rows(policy, mask, layer) for layers in net.hidden.values() for layer in layers}
    for group in net.shared.values():
        for depth in zip(*group):
            width = max(layer.out_features - len(dead_rows(policy, mask, layer)) for layer in depth)
            for layer in depth:
                dead, n_remove = dead_rows(policy, mask, layer), layer.out_features - width
                out[layer] = dead[len(dead) - n_remove:] if n_remove > 0 else []
    for layer, rows in out.items():
        if rows and len(rows) == layer.out_features:
            raise UserError("export: --compact: a hidden layer of the ticket keeps no neuron (the network's output "
                            "no longer depends on its input)")
    return out


def _outputs(net: Net) -> list[torch.Tensor]:
    with torch.no_grad():
        out = net.root(*net.inputs)
    return [t.detach().clone() for t in (out if isinstance(out, tuple | list) else (out,))]


def net_arch(nets: Sequence[Net]) -> Any:
    """``policy_kwargs.net_arch`` of the narrowed networks: a list (DQN) or a dict of lists."""
    arch: dict[str, list[int]] = {}
    for net in nets:
        arch.update({k: [layer.out_features for layer in layers] for k, layers in net.hidden.items()})
        arch.update({k: [layer.out_features for layer in group[0]] for k, group in net.shared.items()})
    return arch.get("", arch)  # "": DQN's list


def _target_copies(state: dict[str, torch.Tensor], policy: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each ``X_target`` network replaced by a copy of ``X`` (narrowed alike)."""
    pairs = {n: n.removesuffix("_target") for n, _ in policy.named_children() if n.endswith("_target")}
    pairs = {t: online for t, online in pairs.items() if hasattr(policy, online)}
    out = {k: v for k, v in state.items() if not any(k.startswith(f"{t}.") for t in pairs)}
    for t, online in pairs.items():
        out.update({f"{t}.{k[len(online) + 1:]}": v.clone() for k, v in state.items() if k.startswith(f"{online}.")})
    return out


def _rebuild(model: BaseAlgorithm, arch: Any) -> None:
    """Rebuild ``model``'s policy (and optimizers) at ``arch`` with SB3's own code, then load the
    compacted weights strictly: what ``ALGO.load`` will do with the zip."""
    state = _target_copies(model.policy.state_dict(), model.policy)
    variables = sb3_shim.saved_variables(model)
    kept = {name: _attr(model, name).detach().clone() for name in variables if _attr(model, name) is not None}
    model.policy_kwargs = {**model.policy_kwargs, "net_arch": arch}
    sb3_shim.rebuild_model(model)
    model.policy.load_state_dict(state, strict=True)
    with torch.no_grad():
        for name, value in kept.items():
            _attr(model, name).copy_(value)


def _attr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
    return obj


def compact(model: BaseAlgorithm, mask: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Remove the dead neurons of ``model``'s policy in place (checked against the masked
    network's outputs on a probe batch); what was removed, in numbers."""
    policy = model.policy
    dense = sum(p.numel() for p in policy.parameters())
    nets = nets_of(model)
    before = [_outputs(net) for net in nets]
    removed = 0
    for net in nets:
        rows = removals(policy, mask, net)
        removed += sum(len(r) for r in rows.values())
        remove_neurons(net.root, net.inputs, rows)
    diff = max((float((a - b).abs().max()) for net, old in zip(nets, before) for a, b in zip(old, _outputs(net))),
               default=0.0)
    if diff > TOLERANCE:
        raise UserError(f"export: --compact: the compact network's outputs differ from the ticket's by {diff:.3g}")
    arch = net_arch(nets)
    _rebuild(model, arch)
    return {"net_arch": arch, "neurons_removed": removed, "dense_parameters": dense,
            "parameters": sum(p.numel() for p in model.policy.parameters()), "max_abs_diff": diff}


def export_model(model: BaseAlgorithm, mask: Mapping[str, torch.Tensor], path: Path, compact_it: bool,
                 unit_dir: Path | None = None) -> dict[str, Any]:
    """Write ``model`` (its policy holding the ticket's masked weights) to ``path`` (``.zip``
    added when it has no suffix) atomically; ``compact_it``: its dead neurons removed first.
    The unit's ``vecnormalize.pkl`` (observation statistics) is copied beside it unread."""
    path = Path(path) if Path(path).suffix else Path(path).with_suffix(".zip")
    dense = sum(p.numel() for p in model.policy.parameters())
    summary: dict[str, Any] = compact(model, mask) if compact_it else {"dense_parameters": dense, "parameters": dense}
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.zip")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    stats = unit_dir / "vecnormalize.pkl" if unit_dir is not None else None
    if stats is not None and stats.is_file():
        shutil.copyfile(stats, path.with_name(f"{path.stem}.vecnormalize.pkl"))
        summary["vecnormalize"] = str(path.with_name(f"{path.stem}.vecnormalize.pkl"))
    return {"path": str(path), **summary}
