"""Batched RL evaluation: one episode on each of N seeded env copies, one batched predict per step.
Deterministic for a seed, the same episodes as one-at-a-time evaluation from the same initial
states; two training seeds never share an evaluation episode (``disjoint``, recorded per unit);
a run directory evaluated an older way (overlapping ``batched``, ``sequential``) keeps it on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402

from multiticket.adapters.sb3 import SB3Adapter, Section  # noqa: E402
from multiticket.cli import main as cli_main  # noqa: E402
from multiticket.core.store import DONE, RunStore  # noqa: E402

N = 6


def _adapter(tmp_path: Path, method: str, episodes: int = N, seed: int = 3) -> SB3Adapter:
    torch.set_num_threads(1)
    section = Section.model_validate({"env": "CartPole-v1", "algo": "ppo", "n_eval_episodes": episodes,
                                      "tensorboard": False, "overrides": {"policy_kwargs": {"net_arch": [8]}}})
    adapter = SB3Adapter(None, section, tmp_path / "work")
    adapter.eval_method = method
    adapter.build(seed)
    return adapter


def test_training_seeds_never_share_an_evaluation_episode(tmp_path: Path) -> None:
    seeds = {s: _adapter(tmp_path / str(s), "disjoint", seed=s) for s in range(4)}
    episode_seeds = {s: set(a.eval_seeds()) for s, a in seeds.items()}
    for s in seeds:
        assert len(episode_seeds[s]) == N
        for t in seeds:
            assert s == t or not episode_seeds[s] & episode_seeds[t], (s, t)
    # the overlapping scheme of older runs, kept for them: seeds 0 and 1 shared N - 1 episodes
    old = {s: set(_adapter(tmp_path / f"old{s}", "batched", seed=s).eval_seeds()) for s in (0, 1)}
    assert len(old[0] & old[1]) == N - 1
    # the recorded seeds are the ones the env copies were seeded with: the same returns again
    a = seeds[1]
    assert a.eval_env is not None and a.eval_env.num_envs == N
    returns = a.eval_episodes()
    a.eval_env.seed(min(a.eval_seeds()))
    assert a.eval_episodes() == returns


def test_batched_is_deterministic_and_uses_one_copy_per_episode(tmp_path: Path) -> None:
    a, b = _adapter(tmp_path / "a", "batched"), _adapter(tmp_path / "b", "batched")
    assert a.eval_env is not None and a.eval_env.num_envs == N
    episodes = a.eval_episodes()
    assert len(episodes[0]) == N and a.eval_episodes() == episodes  # again on the same adapter
    assert b.eval_episodes() == episodes and b.evaluate() == a.evaluate()
    assert len(set(episodes[1])) > 1  # the copies start from different states


def test_batched_matches_sequential_from_the_same_initial_states(tmp_path: Path) -> None:
    """Episode i of the batched evaluation starts where a one-env evaluation seeded
    seed + offset + i starts; both give the same (length, return) per episode."""
    batched = _adapter(tmp_path / "a", "batched")
    sequential = _adapter(tmp_path / "b", "sequential", episodes=1)
    assert sequential.eval_env is not None and sequential.eval_env.num_envs == 1
    returns, lengths = batched.eval_episodes()
    one_by_one = []
    base = sequential.seed + sequential.section.eval_seed_offset
    for i in range(N):
        sequential.eval_env.seed(base + i)
        r, n = evaluate_policy(sequential.model, sequential.eval_env, n_eval_episodes=1, deterministic=True,
                               return_episode_rewards=True, warn=False)
        one_by_one.append((int(n[0]), float(r[0])))
    assert sorted(zip(lengths, returns)) == sorted(one_by_one)  # batched lists them as they end


def _run(out: Path, levels: int) -> Path:
    code = cli_main(["run", "cartpole-ppo", "--out", str(out), "--quiet", "--workers", "1", "--levels", str(levels),
                     "--set", "train.steps=256", "--set", "rewind.step=64", "--set", "controls=[]",
                     "--set", "rl.n_eval_episodes=3", "--set", "rl.tensorboard=false"])
    assert code == 0
    (run_dir,) = out.glob("cartpole-ppo-*")
    return run_dir


def _method(unit_dir: Path) -> str | None:
    return json.loads((unit_dir / "metrics.json").read_text()).get("eval_method")


def test_a_run_keeps_the_evaluation_method_it_began_with(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, 1)
    dense, level1 = run_dir / "seed_0/ticket/level_0", run_dir / "seed_0/ticket/level_1"
    assert _method(dense) == _method(level1) == "disjoint"
    record = json.loads((level1 / "metrics.json").read_text())
    assert record["eval_seeds"] == [10_000 + i for i in range(3)] and record["role"] == "ticket"
    # make the dense unit look like one written before batching existed (no field, valid DONE)
    record = json.loads((dense / "metrics.json").read_text())
    del record["eval_method"]
    (dense / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")
    RunStore(run_dir).finish(dense, sorted(json.loads((dense / DONE).read_text())["files"]))
    for f in level1.iterdir():
        f.unlink()
    level1.rmdir()
    assert _run(tmp_path, 1) == run_dir
    assert _method(dense) is None and _method(level1) == "sequential"
    assert json.loads((level1 / "metrics.json").read_text())["metrics"]["eval_length"] > 0
