"""The SB3 domain gives SNIP, GraSP and SynFlow their data and their all-ones forward: tiny runs of
each criterion and each pruning-at-init baseline on CartPole (PPO, and DQN off-policy) keep the
counting rule's exact count; the scoring buffer is a function of the seed alone (the same list
from two adapters, whatever their weights), leaves every global RNG as it was, and each family's
loss and all-ones output reach every prunable layer (actor and critic alike)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from multiticket.adapters.sb3 import SB3Adapter, Section  # noqa: E402
from multiticket.cli import main  # noqa: E402
from tests.runsnap import planned_count, unit_mask

NET = "policy_kwargs: {net_arch: [16, 16]}"
TINY = {
    "cartpole-ppo": ["train.steps=512", "rewind.step=128", f"rl.overrides={{n_envs: 2, n_steps: 32, batch_size: 32, "
                     f"n_epochs: 2, {NET}}}"],
    "cartpole-dqn": ["train.steps=400", "rewind.step=128", f"rl.overrides={{learning_starts: 64, batch_size: 32, "
                     f"train_freq: 4, gradient_steps: 1, target_update_interval: 50, {NET}}}"],
}
COMMON = ["rl.n_eval_episodes=1", "rl.tensorboard=false"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _run(tmp_path: Path, task: str, levels: int, *sets: str) -> Path:
    args = ["run", task, "--out", str(tmp_path), "--quiet", "--workers", "1", "--levels", str(levels)]
    for s in [*TINY[task], *COMMON, *sets]:
        args += ["--set", s]
    assert main(args) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return run




@pytest.mark.parametrize("task", ["cartpole-ppo", "cartpole-dqn"])
@pytest.mark.parametrize("criterion", ["snip", "grasp", "synflow"])
def test_each_data_criterion_prunes_an_rl_ticket_to_the_planned_count(tmp_path, task, criterion):
    run = _run(tmp_path, task, 2, f"prune.criterion={criterion}", "controls=[]")
    for level in (1, 2):
        mask = unit_mask(run, "ticket", level)
        assert mask.num_alive == planned_count(mask, level) < mask.numel, level


@pytest.mark.parametrize(("task", "levels"), [("cartpole-ppo", 2), ("cartpole-dqn", 1)])
def test_the_pai_baselines_run_in_the_rl_domain_at_the_tickets_count(tmp_path, task, levels):
    run = _run(tmp_path, task, levels, "controls=[snip_init,grasp_init,synflow_init]")
    for level in range(1, levels + 1):
        ticket = unit_mask(run, "ticket", level)
        for control in ("snip_init", "grasp_init", "synflow_init"):
            mask = unit_mask(run, control, level)
            assert mask.num_alive == ticket.num_alive == planned_count(ticket, level), (control, level)
            assert mask != ticket, control
            record = json.loads((run / "seed_0" / control / f"level_{level}" / "metrics.json").read_text())
            assert record["role"] == "baseline" and record["start_step"] == 128, control


SMALL: dict[str, tuple[str, dict[str, Any]]] = {
    "ppo": ("CartPole-v1", {"n_envs": 2, "n_steps": 32, "batch_size": 32, "policy_kwargs": {"net_arch": [16, 16]}}),
    "a2c": ("CartPole-v1", {"n_envs": 2, "n_steps": 8, "normalize": True, "policy_kwargs": {"net_arch": [16, 16]}}),
    "dqn": ("CartPole-v1", {"batch_size": 32, "policy_kwargs": {"net_arch": [16, 16]}}),
    "sac": ("Pendulum-v1", {"batch_size": 32, "policy_kwargs": {"net_arch": [16, 16]}}),
    "td3": ("Pendulum-v1", {"batch_size": 32, "policy_kwargs": {"net_arch": [16, 16]}}),
}


def _adapter(algo: str, tmp_path: Path, seed: int) -> SB3Adapter:
    env, overrides = SMALL[algo]
    section = Section.model_validate({"env": env, "algo": algo, "overrides": overrides, "n_eval_episodes": 1,
                                      "tensorboard": False})
    adapter = SB3Adapter(None, section, tmp_path / f"work{seed}")
    adapter.build(seed)
    return adapter


def _rng_state() -> tuple[Any, ...]:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _same_rng(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return (torch.equal(a[0], b[0]) and a[1][0] == b[1][0] and np.array_equal(a[1][1], b[1][1])
            and a[1][2:] == b[1][2:] and a[2] == b[2])


@pytest.mark.parametrize("algo", list(SMALL))
def test_scoring_batches_are_a_function_of_the_seed_and_leave_the_global_rngs(tmp_path, algo):
    first, second = _adapter(algo, tmp_path, 0), _adapter(algo, tmp_path, 1)  # other weights, other envs
    before = _rng_state()
    batches = first.scoring_batches(7, 2)
    first.scoring_loss(batches[0]).backward()
    first.scoring_ones_output().sum().backward()
    assert _same_rng(before, _rng_state())
    again = second.scoring_batches(7, 2)
    assert len(batches) == 2 and all(a.same_as(b) for a, b in zip(batches, again, strict=True))
    assert all(a.same_as(b) for a, b in zip(batches, first.scoring_batches(7, 2), strict=True))
    assert not batches[0].same_as(first.scoring_batches(8, 1)[0])
    assert len(batches[0].returns) == (16 if algo == "a2c" else 32)  # the algorithm's minibatch
    assert not batches[0].same_as(batches[1])  # consecutive blocks of one buffer


@pytest.mark.parametrize("algo", list(SMALL))
def test_the_loss_and_the_all_ones_output_reach_every_prunable_layer(tmp_path, algo):
    adapter = _adapter(algo, tmp_path, 0)
    params = dict(adapter.module.named_parameters())
    names = adapter.default_prunable()
    batch = adapter.scoring_batches(3, 1)[0]
    loss = adapter.scoring_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    output = adapter.scoring_ones_output()
    assert output.shape[0] == 1 and output.ndim == 2
    for objective in (loss, output.sum()):
        grads = torch.autograd.grad(objective, [params[n] for n in names], allow_unused=True, retain_graph=True)
        missing = [n for n, g in zip(names, grads, strict=True) if g is None or not bool(g.abs().sum() > 0)]
        assert not missing, missing
