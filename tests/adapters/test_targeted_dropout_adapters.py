"""Targeted dropout inside SB3's learn() and HF's Trainer: α = 0 is bit-identical to no targeted
dropout (PPO), drops happen on every update and never touch pruned weights, SAC's actor and
critic each get their own drops and its target network only ever averages full weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("stable_baselines3")

from multiticket.core.enforce import MaskEnforcer  # noqa: E402
from multiticket.core.hooks import LevelHooks  # noqa: E402
from multiticket.core.monitors import DropoutMonitor, MonitorList  # noqa: E402
from multiticket.core.targeted_dropout import TargetedDropout, TDSpec  # noqa: E402
from tests.adapters.test_sb3 import half_mask, make_adapter  # noqa: E402


def _train_sb3(algo: str, tmp_path: Path, spec: TDSpec | None, masked: bool, steps: int = 300):
    adapter = make_adapter(algo, tmp_path)
    adapter.build(0)
    names = adapter.default_prunable()
    mask = half_mask(adapter) if masked else None
    enforcer = MaskEnforcer(adapter.module, mask).attach() if mask is not None else None
    hooks = LevelHooks(adapter, enforcer, 0)
    td = None
    if spec is not None:
        td = TargetedDropout(adapter.module, names, spec, seed=3, total_steps=steps, mask=mask)
        hooks.monitors = MonitorList([DropoutMonitor(td)])
    try:
        adapter.train(0, steps, hooks)
    finally:
        if td is not None:
            td.detach()
        if enforcer is not None:
            enforcer.detach()
    return adapter, td, mask


def test_ppo_alpha_zero_bit_identical_and_drops_respect_the_mask(tmp_path):
    torch.set_num_threads(1)
    plain, _, _ = _train_sb3("ppo", tmp_path / "a", None, masked=False)
    zero, td, _ = _train_sb3("ppo", tmp_path / "b", TDSpec(alpha=0.0, gamma=0.5), masked=False)
    assert td.samples > 0 and td.dropped == 0
    a, b = plain.module.state_dict(), zero.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert plain.evaluate() == zero.evaluate()
    half, td, mask = _train_sb3("ppo", tmp_path / "c", TDSpec(alpha=0.5, gamma=0.5), masked=True)
    # one draw per minibatch update: 300 steps ~ 5 rollouts x 2 epochs x 2 minibatches, per layer
    assert td.samples >= len(td.names) * 5 * 2 * 2 and td.dropped > 0 and td.active == []
    params = dict(half.module.named_parameters())
    for n, m in mask.items():
        assert bool((params[n].detach()[~m] == 0).all()), n


def test_sac_actor_and_critic_drop_and_target_sees_full_weights(tmp_path, monkeypatch):
    import stable_baselines3.sac.sac as sac_module

    seen_active: list[list[str]] = []
    original = sac_module.polyak_update

    def spy(params, target_params, tau):  # noqa: ANN001
        seen_active.append(list(tds[0].active) if tds else [])
        return original(params, target_params, tau)

    monkeypatch.setattr(sac_module, "polyak_update", spy)
    tds: list[TargetedDropout] = []
    original_init = TargetedDropout.__init__

    def record(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        original_init(self, *args, **kwargs)
        tds.append(self)

    monkeypatch.setattr(TargetedDropout, "__init__", record)
    adapter, td, _ = _train_sb3("sac", tmp_path, TDSpec(alpha=0.5, gamma=0.5), masked=False, steps=200)
    assert seen_active and all(active == [] for active in seen_active)  # polyak reads full weights
    names = td.names
    assert any(n.startswith("actor.") for n in names) and any(n.startswith("critic.") for n in names)
    assert td.dropped > 0 and td.active == []


def test_hf_trainer_trains_with_targeted_dropout(tmp_path):
    pytest.importorskip("transformers")
    from tests.adapters.hf.hf_testlib import make_adapter as make_hf
    from tests.adapters.hf.hf_testlib import random_mask

    adapter = make_hf(tmp_path / "work", "bert")
    adapter.build(0)
    mask = random_mask(adapter, keep=0.5)
    enforcer = MaskEnforcer(adapter.module, mask).attach()
    td = TargetedDropout(adapter.module, list(mask), TDSpec(alpha=0.5, ramp=(0.0, 0.9, 0.0, 1.0)), 1, 8, mask)
    hooks = LevelHooks(adapter, enforcer, 0)
    hooks.monitors = MonitorList([DropoutMonitor(td)])
    adapter.train(0, 8, hooks)
    td.detach()
    enforcer.detach()
    assert hooks.last_step == 8 and td.samples == 8 * len(mask) and td.dropped > 0
    assert td.gamma == pytest.approx(0.9)
    params = dict(adapter.module.named_parameters())
    for n, m in mask.items():
        assert bool((params[n].detach()[~m] == 0).all()), n
    assert 0.0 <= adapter.evaluate()["accuracy"] <= 1.0
