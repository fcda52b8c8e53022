"""IMP written by hand with Stable-Baselines3 and plain torch: the plain RL side of
scripts/bench_e2e.py (``bench_e2e_sides.plain_rl``). Per seed one dense ``learn(T)`` with a
step-k snapshot; each level prunes the previous level's trained weights by global (or layerwise)
magnitude, rewinds to the snapshot under the mask and trains k -> T. Nothing of multiticket runs
in the timed phases; :func:`rl_plan` reads the task through multiticket's resolution, untimed,
and refuses settings this loop does not mirror (tests/scripts/test_bench_e2e.py checks that the
masks equal multiticket's ``prune()`` and that the trained networks are the same)."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast


@dataclass
class RLPlan:
    """What the plain RL side reads through multiticket's task resolution, untimed: the env, the
    algorithm class and its hyperparameters, the budget T and rewind step k, and the prune rule."""

    section: Any
    hyper: Any
    algo: Any
    T: int
    k: int
    rate: float
    layerwise: bool
    rate_of: str
    restore_optimizer: bool


def rl_plan(cfg: dict[str, Any]) -> RLPlan:
    """The task's settings for :func:`rl_unit`; refuses what the hand-written loop does not mirror
    (it would train other networks than multiticket and the ratio would compare different work)."""
    from multiticket.adapters.sb3_algos import ALGOS, ROLES
    from multiticket.adapters.sb3_hyper import resolve_hyper
    from multiticket.api import resolve_task

    task = resolve_task(cfg["task"], cfg["overrides"], cfg["seeds"], cfg["levels"])
    s: Any = task.section  # the domain's section (typed as the base model)
    c = task.config
    hyper = resolve_hyper(s.algo, s.env, s.hyperparams, s.overrides, s.env_kwargs)
    p = c.prune
    strategy = {"global_magnitude": "global", "layerwise_magnitude": "layerwise"}.get(p.strategy)
    unsupported = [
        ("prune.strategy", strategy is None),
        ("prune.include/exclude/rates/biases", bool(p.include or p.exclude or p.rates or p.biases)),
        ("prune.criterion", p.criterion != "large_final"),
        ("prune.allocator", p.allocator not in (None, strategy)),
        ("prune.structure", p.structure != "weights"),
        ("rewind.mode", c.rewind.mode != "weights"),
        ("rl.roles/prune_input_layer", set(s.roles) != set(ROLES) or not s.prune_input_layer),
        ("rl.algo (on-policy only: no target networks, no replay buffer)", s.algo not in ("ppo", "a2c")),
        ("rl.env_attrs/torch_threads/device", bool(s.env_attrs) or s.torch_threads is not None
         or s.device not in ("auto", "cpu")),
        ("rl.overrides (normalize, frame_stack, env_wrapper, a policy class)",
         bool(hyper.normalize or hyper.frame_stack or hyper.wrappers or hyper.policy_class)),
    ]  # fmt: skip
    bad = [key for key, hit in unsupported if hit]
    if bad:
        raise ValueError(f"the plain RL side does not mirror these settings: {', '.join(bad)}")
    return RLPlan(
        section=s,
        hyper=hyper,
        algo=ALGOS[s.algo].cls,
        T=c.train.steps,
        k=c.rewind_step(),
        rate=p.rate,
        layerwise=strategy == "layerwise",
        rate_of=p.rate_of,
        restore_optimizer=c.rewind.optimizer == "restore",
    )


@dataclass
class Chain:
    """One seed's IMP state between its units: the last level trained (-1: none), the step-k
    snapshot of the dense run, the last level's mask and its trained prunable weights."""

    seed: int
    level: int = -1
    snapshot: dict[str, Any] = field(default_factory=dict)
    mask: dict[str, Any] | None = None
    final: dict[str, Any] | None = None


def prunable(policy: Any) -> list[str]:
    """The weights multiticket's SB3 adapter prunes by default (every role, input layers included):
    each Linear/Conv weight of the policy (``log_std`` is no layer's), in ``named_parameters`` order."""
    from torch import nn

    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    weights = {id(m.weight) for m in policy.modules() if isinstance(m, layers)}
    return [n for n, w in policy.named_parameters() if id(w) in weights]


def magnitude_mask(
    weights: dict[str, Any], mask: dict[str, Any], rate: float, layerwise: bool = False, rate_of: str = "remaining"
) -> dict[str, Any]:
    """IMP's next mask by multiticket's counting rule (docs/tasks.md): each group (all ``weights``,
    or each one with ``layerwise``) loses floor(rate · base + 0.5) of its live entries, clamped to
    [1, alive] (base: the live count, or the total with ``rate_of='original'``), those of smallest
    |w|, ties going to the earlier position; the masks are bool, True = kept."""
    import torch

    new: dict[str, Any] = {}
    for names in [[n] for n in weights] if layerwise else [list(weights)]:
        alive = torch.cat([mask[n].reshape(-1) for n in names])
        live = alive.nonzero().squeeze(1)
        base = len(live) if rate_of == "remaining" else alive.numel()
        n_prune = min(len(live), max(1, math.floor(base * rate + 0.5))) if len(live) else 0
        scores = torch.cat([weights[n].detach().reshape(-1).float().cpu() for n in names]).abs()[live]
        alive[live[torch.sort(scores, stable=True).indices[:n_prune]]] = False
        for n, part in zip(names, torch.split(alive, [mask[n].numel() for n in names]), strict=True):
            new[n] = part.reshape(mask[n].shape)
    return new


def mask_model(model: Any, mask: dict[str, Any]) -> None:
    """Hold ``mask`` inside SB3's own ``learn`` with plain torch hooks, as multiticket's enforcer
    does: pruned weights and optimizer moments zeroed now, pruned gradients zeroed as backward
    writes them (so PPO's gradient clipping sees only live ones), and a step post-hook re-zeroing
    the weights only for an optimizer that could move a weight with zero gradient and moments
    (Adam, SGD, RMSprop cannot: multiticket skips that pass for them, and so does this)."""
    import torch

    params = dict(model.policy.named_parameters())
    pairs = [(params[n], m.to(params[n].dtype)) for n, m in mask.items()]
    opt = model.policy.optimizer
    with torch.no_grad():
        for p, m in pairs:
            p.mul_(m)
            for value in opt.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    value.mul_(m)
            p.register_post_accumulate_grad_hook(_grad_zeroer(m))

    def rezero(*_: Any) -> None:
        with torch.no_grad():
            for p, m in pairs:
                p.mul_(m)

    if type(opt) not in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.RMSprop):
        opt.register_step_post_hook(rezero)


def _grad_zeroer(mask: Any) -> Any:
    """A post-accumulate-grad hook zeroing the pruned entries of its parameter's gradient."""

    def hook(param: Any) -> None:
        if param.grad is not None:
            param.grad.mul_(mask)

    return hook


def _rng() -> dict[str, Any]:
    """The global RNG states (torch, numpy, Python), which a rewind point holds in multiticket."""
    import random

    import numpy as np
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def snapshot_at(k: int, snap: dict[str, Any]) -> Any:
    """A callback filling ``snap`` once the dense run reaches env step ``k``: policy weights,
    optimizer state, the step and the RNG states, taken inside the step as multiticket takes its
    rewind point (one ``learn(T)``: learn(k) then learn(T - k) would run the first k steps on
    schedules (lin_0.001) ending at k, and take θ_k after one more update). SB3 is imported here,
    after start-up is timed."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Snapshot(BaseCallback):
        def _take(self) -> None:
            policy = self.model.policy
            snap.update(
                step=int(self.model.num_timesteps),
                policy=copy.deepcopy(policy.state_dict()),
                optimizer=copy.deepcopy(policy.optimizer.state_dict()),
                rng=copy.deepcopy(_rng()),
            )

        def _on_training_start(self) -> None:
            if k == 0:
                self._take()

        def _on_step(self) -> bool:
            if not snap and self.num_timesteps >= k:
                self._take()
            return True

    return Snapshot()


def _build(plan: RLPlan, chain: Chain, level: int) -> tuple[Any, Any, int]:
    """Envs and model built and seeded as multiticket builds them; a pruned level also gets its mask
    (pruned from the previous level's trained weights) and the ticket's start: the step-k weights
    (and the optimizer state, with ``rewind.optimizer: restore``), num_timesteps = k and the
    schedules' progress there, the mask and the RNG of step k. Returns model, eval env, start step."""
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    s, seed, h = plan.section, chain.seed, plan.hyper
    if level > 0:
        assert chain.final is not None and chain.snapshot, "a pruned level needs the dense unit first"
        prev = chain.mask or {n: torch.ones_like(w, dtype=torch.bool) for n, w in chain.final.items()}
        chain.mask = magnitude_mask(chain.final, prev, plan.rate, plan.layerwise, plan.rate_of)
    venv = make_vec_env(s.env, n_envs=h.n_envs, seed=seed, env_kwargs=dict(h.env_kwargs))
    model = plan.algo(h.policy, venv, seed=seed, device="cpu", verbose=0, **h.kwargs)
    eval_env = make_vec_env(
        s.env,
        n_envs=s.n_eval_episodes,
        seed=s.eval_seed_offset + seed * s.n_eval_episodes,
        env_kwargs=dict(h.env_kwargs),
    )  # multiticket's disjoint evaluation seeds
    if level == 0:
        return model, eval_env, 0
    snap = chain.snapshot
    model.policy.load_state_dict(snap["policy"])
    if plan.restore_optimizer:
        model.policy.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))
    model.num_timesteps = snap["step"]
    model._current_progress_remaining = 1.0 - snap["step"] / plan.T  # SB3 updates it only after a rollout
    assert chain.mask is not None
    mask_model(model, chain.mask)
    _set_rng(snap["rng"])
    return model, eval_env, snap["step"]


def rl_unit(plan: RLPlan, chain: Chain, path: Path) -> tuple[tuple[float, ...], Any, dict[str, Any]]:
    """One IMP unit of ``chain``'s seed, by hand: its dense network (T steps, the step-k snapshot
    taken on the way) when it has none yet, else its next pruned level: the ticket, rewound to the
    snapshot under the next mask, trained k -> T with ``learn(T - k, reset_num_timesteps=False)``.
    Returns the time stamps of build, train, evaluate and write, the trained model and the unit's
    record (seed, level, evaluation mean reward, env steps trained, sparsity)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    level = chain.level + 1
    t0 = time.perf_counter()
    model, eval_env, start = _build(plan, chain, level)
    t1 = time.perf_counter()
    if level == 0:
        chain.snapshot.clear()
        model.learn(plan.T, callback=snapshot_at(plan.k, chain.snapshot))
    else:
        model.learn(plan.T - start, reset_num_timesteps=False)
    t2 = time.perf_counter()
    n = plan.section.n_eval_episodes
    reward, _ = cast(tuple[float, float], evaluate_policy(model, eval_env, n, deterministic=True, warn=False))
    t3 = time.perf_counter()
    model.save(path)
    params = dict(model.policy.named_parameters())
    chain.final = {name: params[name].detach().clone() for name in prunable(model.policy)}  # the next level's input
    t4 = time.perf_counter()
    chain.level = level
    alive = sum(int(m.sum()) for m in chain.mask.values()) if level and chain.mask else None
    record = {
        "seed": chain.seed,
        "level": level,
        "metric": "eval_return",
        "eval": float(reward),
        "env_steps": int(model.num_timesteps) - start,
        "sparsity": 0.0 if alive is None else 1.0 - alive / sum(w.numel() for w in chain.final.values()),
    }
    model.get_env().close()
    eval_env.close()
    return (t0, t1, t2, t3, t4), model, record
