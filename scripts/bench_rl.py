"""Overhead of exact masks inside SB3's own training loop (a benchmark, not a test).

Env-steps/s of plain SB3 PPO on CartPole-v1 (RL-Zoo settings from agents/ppo.yaml) against the
same run with a random 80 %-sparse mask kept exact by ``MaskEnforcer`` (gradient hooks + optimizer
step post-hooks), and against the full adapter path (enforcer + the per-step callback that feeds
the core's hooks). Variants are interleaved within each repeat so machine noise hits all of them
alike; the median over repeats is reported. Target: masked/plain >= 0.97.

Whole ``learn()`` runs are noisy (+-25 % here): a masked policy acts differently, so episode
lengths, resets and thus env-steps/s differ for reasons that have nothing to do with masking. The
second measurement removes that: masking touches only PPO's update phase (a rollout's forward pass
costs the same with zeros in the weights), so it times ``model.train()`` on one fixed rollout
buffer, restoring the same weights and optimizer state before each call, plain and masked taking
turns, and times ``collect_rollouts`` alike. The implied throughput ratio is
``(rollout + plain update) / (rollout + masked update)``.

    .venv/bin/python scripts/bench_rl.py [--steps 20000] [--repeats 5] [--updates 60]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from multiticket.adapters.sb3 import HooksCallback, SB3Adapter, Section
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.mask import Mask


class NoHooks:
    """What the core's hooks cost at minimum: nothing but the call (the whole TrainHooks protocol)."""

    should_stop = False

    def on_optimizers(self, optimizers: Any) -> None:
        pass

    def on_step(self, step: int, logs: dict[str, float] | None = None) -> None:
        pass

    def on_resumable(self, step: int) -> None:
        pass


def one_run(variant: str, steps: int, seed: int, sparsity: float) -> tuple[float, float]:
    """Env-steps per wall-clock second and per CPU second of one ``learn(steps)``."""
    adapter = _adapter(seed)
    model = adapter.model
    assert model is not None
    enforcer = None
    callback = None
    if variant != "plain":
        gen = torch.Generator().manual_seed(seed)
        params = dict(adapter.module.named_parameters())
        mask = Mask(
            {n: torch.rand(params[n].shape, generator=gen) >= sparsity for n in adapter.default_prunable()}
        )
        enforcer = MaskEnforcer(adapter.module, mask, grads=adapter.grad_masking).attach(adapter.optimizers())
    if variant == "adapter":
        callback = HooksCallback(NoHooks(), adapter)
    t0, c0 = time.perf_counter(), time.process_time()
    model.learn(steps, callback=callback)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if enforcer is not None:
        enforcer.detach()
    adapter.close()
    return model.num_timesteps / seconds, model.num_timesteps / cpu


def _adapter(seed: int) -> SB3Adapter:
    section = Section.model_validate({"env": "CartPole-v1", "algo": "ppo", "tensorboard": False})
    adapter = SB3Adapter(None, section, Path("/tmp/multiticket-bench"))
    adapter.build(seed)  # also sets torch to one thread, as a real run does
    return adapter


def update_phase(rounds: int, sparsity: float) -> dict[str, float]:
    """Seconds of one PPO update (``train()``) on one fixed rollout buffer, plain vs masked in turns
    from the same weights and optimizer state, and of one ``collect_rollouts``; medians."""
    from stable_baselines3.common.callbacks import CallbackList

    adapter = _adapter(0)
    model = adapter.model
    assert model is not None
    model.learn(2_048)  # a trained-ish policy and warm optimizer state
    _, callback = model._setup_learn(10**9, CallbackList([]), reset_num_timesteps=False)
    callback.on_training_start(locals(), globals())
    policy_state = copy.deepcopy(model.policy.state_dict())
    opt = model.policy.optimizer
    opt_state = copy.deepcopy(opt.state_dict())
    gen = torch.Generator().manual_seed(0)
    params = dict(adapter.module.named_parameters())
    mask = Mask({n: torch.rand(params[n].shape, generator=gen) >= sparsity for n in adapter.default_prunable()})
    enforcer = MaskEnforcer(adapter.module, mask, grads=adapter.grad_masking)
    times: dict[str, list[float]] = {"rollout": [], "plain": [], "masked": []}
    for r in range(rounds + 2):  # the first two rounds warm up
        t0 = time.perf_counter()
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
        rollout = time.perf_counter() - t0
        for v in ("plain", "masked") if r % 2 == 0 else ("masked", "plain"):
            model.policy.load_state_dict(policy_state)
            opt.load_state_dict(opt_state)
            if v == "masked":
                enforcer.attach([opt])
            t0 = time.perf_counter()
            model.train()
            if r >= 2:
                times[v].append(time.perf_counter() - t0)
            enforcer.detach()
        if r >= 2:
            times["rollout"].append(rollout)
    adapter.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    update = statistics.median(a / b for a, b in zip(times["masked"], times["plain"]))
    return {**med, "update_ratio": update,
            "throughput_ratio": (med["rollout"] + med["plain"]) / (med["rollout"] + med["plain"] * update)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env timesteps per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--updates", type=int, default=60, help="update-phase rounds (0: skip)")
    args = parser.parse_args()
    variants = ("plain", "masked", "adapter")
    rates: dict[str, dict[str, list[float]]] = {c: {v: [] for v in variants} for c in ("wall", "cpu")}
    one_run("plain", 2_000, 0, args.sparsity)  # warm-up: imports, allocator, caches
    for rep in range(args.repeats):
        order = variants if rep % 2 == 0 else variants[::-1]
        for v in order:
            wall, cpu = one_run(v, args.steps, rep, args.sparsity)
            rates["wall"][v].append(wall)
            rates["cpu"][v].append(cpu)
        print(
            f"repeat {rep + 1}/{args.repeats}: "
            + ", ".join(f"{v} {rates['wall'][v][-1]:.0f}" for v in variants)
        )
    threads = torch.get_num_threads()
    print(f"\nPPO CartPole-v1, {args.steps} steps x {args.repeats} repeats, torch threads {threads}")
    print("(per CPU second is the fairer clock on a shared machine: other processes do not inflate it)")
    for clock, table in rates.items() if args.repeats else ():
        med = {v: statistics.median(r) for v, r in table.items()}
        print(f"env-steps per {clock} second:")
        for v in variants:
            print(f"  {v:8s} median {med[v]:8.0f}  (min {min(table[v]):.0f}, max {max(table[v]):.0f})")
        for v in variants[1:]:
            paired = statistics.median(a / b for a, b in zip(table[v], table["plain"]))
            print(
                f"  {v}/plain: ratio of medians {med[v] / med['plain']:.3f}x, median of paired ratios "
                f"{paired:.3f}x (target >= 0.97x)"
            )
    if args.updates:
        u = update_phase(args.updates, args.sparsity)
        print(f"\nupdate phase, one fixed rollout buffer, {args.updates} interleaved rounds (medians): "
              f"rollout {1e3 * u['rollout']:.1f} ms, update plain {1e3 * u['plain']:.1f} ms, "
              f"masked {1e3 * u['masked']:.1f} ms")
        print(f"  masked/plain update time: {u['update_ratio']:.3f}x (paired)")
        print(f"  implied masked/plain env-steps/s: {u['throughput_ratio']:.3f}x (target >= 0.97x)")


if __name__ == "__main__":
    main()
