"""Baselines measured by the toy and SB3 adapters: the toy majority-class rate, which a constant
classifier scores exactly (and is flagged for); SB3's seeded random policy, deterministic, drawing
from no global RNG, whose return the report flags when a unit scores it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from multiticket.adapters.toy import ToyAdapter, ToySection
from multiticket.analysis.degenerate import unit_flags


@torch.no_grad()
def test_toy_constant_classifier_scores_the_majority_rate_and_is_flagged(tmp_path: Path):
    adapter = ToyAdapter(None, ToySection(n_train=128, n_test=200, hidden=[8]), tmp_path)
    adapter.build(0)
    baselines = adapter.baselines()
    majority = int(torch.bincount(adapter.y_test).argmax())
    assert baselines == {"majority_rate": float(torch.bincount(adapter.y_test).max()) / 200}
    last = adapter.module[-1]
    last.weight.zero_()
    last.bias.fill_(-1.0)
    last.bias[majority] = 1.0  # always the majority class
    metrics = adapter.evaluate()
    assert metrics["accuracy"] == pytest.approx(baselines["majority_rate"])
    assert [f.check for f in unit_flags({"metrics": metrics}, baselines)] == ["majority"]


def test_sb3_random_policy_baseline(tmp_path: Path):
    pytest.importorskip("stable_baselines3")
    from multiticket.adapters.sb3 import SB3Adapter, Section
    from multiticket.adapters.sb3_envs import make_env
    from multiticket.adapters.sb3_random import random_policy_returns

    section = Section.model_validate({"env": "CartPole-v1", "algo": "ppo", "n_eval_episodes": 10, "tensorboard": False,
                                      "overrides": {"n_envs": 2, "batch_size": 64, "policy_kwargs": {"net_arch": [8]}}})
    adapter = SB3Adapter(None, section, tmp_path / "work")
    adapter.build(0)
    weights = {k: v.clone() for k, v in adapter.module.state_dict().items()}
    rng = torch.get_rng_state(), np.random.get_state()[1].copy()
    first = adapter.baselines()
    assert torch.equal(rng[0], torch.get_rng_state()) and np.array_equal(rng[1], np.random.get_state()[1])
    assert adapter.baselines() == first and first["random_episodes"] == 10
    assert 8 <= first["random_return_mean"] <= 60 and first["random_return_std"] > 0  # CartPole's random play
    assert all(torch.equal(v, adapter.module.state_dict()[k]) for k, v in weights.items())
    # another random policy's return, as a unit evaluated like the others would report it
    env = make_env("CartPole-v1", adapter.hyper, 20_000, 10, training=False)
    returns = random_policy_returns(env, 10, 20_000)
    env.close()
    unit = {"metrics": {"eval_return": float(np.mean(returns)), "eval_return_std": float(np.std(returns))}}
    assert [f.check for f in unit_flags(unit, first)] == ["random_policy"]
    adapter.close()
