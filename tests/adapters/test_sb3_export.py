"""The compact SB3 export (multiticket.adapters.sb3_export) on untrained policies of every MLP
algorithm: dead neurons removed from producers and consumers, constant outputs folded into the
consumers' biases, ``ALGO.load`` rebuilding the narrower network; outputs equal the masked ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torch_pruning")
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3  # noqa: E402
from stable_baselines3.common.base_class import BaseAlgorithm  # noqa: E402

from multiticket.adapters.sb3_export import export_model, linears, nets_of  # noqa: E402
from multiticket.errors import UserError  # noqa: E402

CASES = [(PPO, "CartPole-v1", {}), (A2C, "CartPole-v1", {}), (DQN, "CartPole-v1", {"net_arch": [24, 16]}),
         (SAC, "Pendulum-v1", {"net_arch": [24, 16]}), (TD3, "Pendulum-v1", {"net_arch": [24, 16]})]


def _hidden(model: BaseAlgorithm) -> list[torch.nn.Linear]:
    nets = nets_of(model)
    return [layer for net in nets for layers in [*net.hidden.values(), *(x for g in net.shared.values() for x in g)]
            for layer in layers]


def _masked(model: BaseAlgorithm, keep: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """A row mask over the hidden layers (each keeps a random ``keep`` share, at least one row), the
    policy's weights zeroed there and its biases shifted so that the folding matters."""
    g = torch.Generator().manual_seed(seed)
    names = {id(m): n for n, m in model.policy.named_modules()}
    mask = {}
    with torch.no_grad():
        for layer in _hidden(model):
            rows = torch.rand(layer.out_features, generator=g) < keep
            rows[0] = True
            mask[f"{names[id(layer)]}.weight"] = rows[:, None].expand_as(layer.weight).clone()
            layer.weight.mul_(mask[f"{names[id(layer)]}.weight"])
        for layer in linears(model.policy):
            layer.bias.add_(torch.randn(layer.bias.shape, generator=g) * 0.5)
    return mask


def _outputs(model: BaseAlgorithm, obs: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    actions, _ = model.predict(obs, deterministic=True)
    policy = model.policy
    tensor = policy.obs_to_tensor(obs)[0]
    with torch.no_grad():
        if hasattr(policy, "predict_values"):
            values = policy.predict_values(tensor)
        elif hasattr(policy, "q_net"):
            values = policy.q_net(tensor)
        else:
            values = torch.cat(policy.critic(tensor, torch.as_tensor(actions, dtype=torch.float32)), 1)
    return actions, values


@pytest.mark.parametrize(("cls", "env", "kwargs"), CASES, ids=[c[0].__name__ for c in CASES])
def test_compact_export_removes_dead_neurons_and_keeps_the_outputs(cls, env, kwargs, tmp_path: Path) -> None:
    model = cls("MlpPolicy", env, device="cpu", seed=0, policy_kwargs=kwargs)
    mask = _masked(model, keep=0.4)
    kept = [int(m[:, 0].sum()) for m in mask.values()]
    obs = np.stack([model.observation_space.sample() for _ in range(64)])
    actions, values = _outputs(model, obs)
    summary = export_model(model, mask, tmp_path / "compact", True)
    assert summary["path"] == str(tmp_path / "compact.zip") and summary["max_abs_diff"] < 1e-5
    loaded = cls.load(summary["path"], device="cpu")
    assert sum(p.numel() for p in loaded.policy.parameters()) == summary["parameters"] < summary["dense_parameters"]
    new_actions, new_values = _outputs(loaded, obs)
    if actions.dtype.kind in "iu":
        assert np.array_equal(actions, new_actions)
    else:
        assert np.allclose(actions, new_actions, atol=1e-5)
    assert torch.allclose(values, new_values, atol=1e-5)
    widths = [layer.out_features for layer in _hidden(loaded)]
    if cls in (PPO, A2C, DQN):  # one net_arch entry per layer: each at its own live count
        assert widths == kept
    else:  # the actor, then both critics at one qf list: each depth as wide as the widest critic there
        depth = len(kwargs["net_arch"])
        pi, q0, q1 = kept[:depth], kept[depth:2 * depth], kept[2 * depth:]
        shared = [max(a, b) for a, b in zip(q0, q1)]
        assert widths == pi + shared + shared and q0 != q1


def test_the_critics_share_their_widths(tmp_path: Path) -> None:
    model = SAC("MlpPolicy", "Pendulum-v1", device="cpu", seed=0, policy_kwargs={"net_arch": [8, 8]})
    mask = _masked(model, keep=0.5, seed=3)
    export_model(model, mask, tmp_path / "sac.zip", True)
    loaded = SAC.load(tmp_path / "sac.zip", device="cpu")
    q0, q1 = ([layer.out_features for layer in linears(q)[:-1]] for q in loaded.policy.critic.q_networks)
    assert q0 == q1 == loaded.policy_kwargs["net_arch"]["qf"]
    target = loaded.policy.critic_target.state_dict()
    assert all(torch.equal(v, target[k]) for k, v in loaded.policy.critic.state_dict().items())


def test_a_layer_left_without_neurons_is_refused(tmp_path: Path) -> None:
    model = PPO("MlpPolicy", "CartPole-v1", device="cpu", seed=0)
    mask = _masked(model, keep=0.5)
    mask["mlp_extractor.policy_net.2.weight"][:] = False
    with pytest.raises(UserError, match="keeps no neuron"):
        export_model(model, mask, tmp_path / "x.zip", True)
    assert not any(tmp_path.iterdir())


def test_an_unstructured_mask_loses_only_its_dead_rows(tmp_path: Path) -> None:
    model = DQN("MlpPolicy", "CartPole-v1", device="cpu", seed=0, policy_kwargs={"net_arch": [16, 16]})
    layer = model.policy.q_net.q_net[2]
    mask = {"q_net.q_net.2.weight": torch.rand(layer.weight.shape, generator=torch.Generator().manual_seed(0)) < 0.7}
    mask["q_net.q_net.2.weight"][[3, 5]] = False
    with torch.no_grad():
        layer.weight.mul_(mask["q_net.q_net.2.weight"])
    summary = export_model(model, mask, tmp_path / "dqn.zip", True)
    assert summary["net_arch"] == [16, 14] and summary["neurons_removed"] == 2
