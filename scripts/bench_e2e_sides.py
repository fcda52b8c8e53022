"""The two sides of scripts/bench_e2e.py, each a function that any process can call repeatedly.

``multiticket_side`` is one in-process ticket search (what ``multiticket run TASK --workers 1``
does); ``plain_rl`` / ``plain_nlp`` train and evaluate the same networks for the same steps with
the library alone. Each returns its seconds per phase (:data:`PHASES`) and ``steps``: the trained
steps of the plan (the same number on both sides, so per-step ratios are time ratios).

``plain_rl`` is IMP by hand with SB3 and plain torch (:func:`rl_unit`): per seed, the dense unit
is one ``learn(T)`` whose callback snapshots the step-k weights, optimizer state and RNG states
(:func:`snapshot_at`); each pruned level prunes the previous level's trained weights
(:func:`magnitude_mask`, multiticket's counting rule over :func:`prunable`'s weights), rebuilds
envs and model with the seed, loads the snapshot (the optimizer state only under ``rewind.optimizer:
restore``, as multiticket), masks the network with torch hooks (:func:`mask_model`), sets
``num_timesteps = k`` and trains the ticket with ``learn(T - k, reset_num_timesteps=False)``. It
trains the networks multiticket trains, bit for bit (same weights, masks and evaluations on
cartpole-ppo); :func:`rl_plan` refuses task settings it does not mirror. Both sides return
``per_unit`` (seed, level, the primary metric ``eval``: RL's evaluation mean reward, env steps
trained, sparsity) so the parent can show that they did the same work; SB3 rounds every
``learn`` up to whole rollouts on both sides alike, and the RL sides count the env steps trained
(``env_steps``).

``launched`` is the parent's ``time.time()`` when it started this process: start-up is measured
from there to the side's imports done. ``None`` (a later call in the same process): start-up 0.
"""

from __future__ import annotations

import json
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, cast

from bench_e2e_imp_rl import Chain, rl_plan, rl_unit

PHASES = ("startup", "build", "train", "evaluate", "write")
#: the shipped task each domain runs (the demo's, and the tiny BERT of the NLP benchmarks)
TASKS = {"rl": "cartpole-ppo", "nlp": "rotten-tomatoes-bert"}


def plan(domain: str, steps: int | None, levels: int, seeds: list[int], extra: list[str]) -> dict[str, Any]:
    """The task both sides run, and the plain side's (seed, steps) per unit: T for the dense
    unit of each seed, T - k for each pruned level (no controls)."""
    from multiticket.api import resolve_task

    overrides = ["controls=[]", *([f"train.steps={steps}"] if steps else []), *extra]
    if domain == "rl":
        overrides.append("rl.tensorboard=false")
    task = resolve_task(TASKS[domain], overrides, seeds, levels)
    T, k = task.config.train.steps, task.config.rewind_step()
    units = [[s, T] for s in seeds] + [[s, T - k] for s in seeds for _ in range(levels)]
    return {
        "domain": domain,
        "task": TASKS[domain],
        "overrides": overrides,
        "seeds": seeds,
        "levels": levels,
        "units": units,
    }


def _since(launched: float | None) -> float:
    return 0.0 if launched is None else time.time() - launched


def multiticket_side(cfg: dict[str, Any], launched: float | None) -> dict[str, Any]:
    """One in-process ticket search; phases from the runner's per-unit timings. Start-up: what
    `multiticket run` imports before it builds, as it does (its task resolution imports the
    adapter with the collector paused, and the driver's warm-up preloads the same modules as a
    pool worker, torch._dynamo among them; here those imports are the start-up phase)."""
    import multiticket.cli  # noqa: F401
    from multiticket.launch.backends import worker_modules
    from multiticket.runtime import collector_paused

    with collector_paused():
        for module in worker_modules([cfg["domain"]]):
            __import__(module)
    startup = _since(launched)
    from multiticket.analysis.summary import write_summary
    from multiticket.api import resolve_task
    from multiticket.core.hooks import NullReporter
    from multiticket.launch import driver
    from multiticket.launch.backends import LaunchOptions

    task = resolve_task(cfg["task"], cfg["overrides"], cfg["seeds"], cfg["levels"])
    runners: list[Any] = []
    prepare = driver.prepare_run

    def keep(*args: Any, **kwargs: Any) -> Any:
        prepared = prepare(*args, **kwargs)
        runners.append(prepared.runner)
        return prepared

    driver.prepare_run = keep  # to read the runner's phases afterwards (put back below: calls repeat)
    try:
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            driver.run_tasks(
                [task], Path(out), LaunchOptions(workers=1, device="cpu", in_process_threads=1), NullReporter()
            )
            t1 = time.perf_counter()
            _, records = write_summary(Path(out) / task.run_name)
            summary = time.perf_counter() - t1
            per_unit = unit_records(Path(out) / task.run_name, records)  # untimed: for the check of the work
    finally:
        driver.prepare_run = prepare
    sums = {
        k: sum(ph.get(k, 0.0) for r in runners for ph in r.unit_phases.values()) for k in ("train", "evaluate", "save")
    }
    return {
        "startup": startup,
        "build": (t1 - t0) - sum(sums.values()),
        "train": sums["train"],
        "evaluate": sums["evaluate"],
        "write": sums["save"] + summary,
        "steps": sum(r["stop_step"] - r["start_step"] for r in records),
        "units": len(records),
        "per_unit": per_unit,
    }


def unit_records(run_dir: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per unit of a finished run, what :func:`rl_unit` records on the plain side: seed, level,
    the primary metric (RL: the evaluation mean reward), the sparsity, and (SB3 units) the env steps
    trained: the saved ``ticket.zip``'s ``num_timesteps`` minus the start step (SB3 rounds every
    ``learn`` up to whole rollouts, which the records' planned ``stop_step`` does not show)."""
    out = []
    for r in sorted(records, key=lambda r: (r["seed"], r["level"], r["control"])):
        unit: dict[str, Any] = {
            "seed": r["seed"],
            "level": r["level"],
            "metric": r["metric"],
            "eval": r["metrics"].get(r["metric"]),
            "sparsity": r["sparsity"],
        }
        ticket = run_dir / f"seed_{r['seed']}" / r["control"] / f"level_{r['level']}" / "ticket.zip"
        if ticket.is_file():
            with zipfile.ZipFile(ticket) as z:
                unit["env_steps"] = int(json.loads(z.read("data"))["num_timesteps"]) - r["start_step"]
        out.append(unit)
    return out


def _add(out: dict[str, Any], t: tuple[float, ...]) -> None:
    """Add one unit's phase seconds (time stamps build, train, evaluate, write) to ``out``."""
    for key, seconds in zip(PHASES[1:], (t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3]), strict=True):
        out[key] += seconds
    out["units"] += 1


def plain_rl(cfg: dict[str, Any], launched: float | None) -> dict[str, Any]:
    """IMP by hand with SB3 and torch (``bench_e2e_imp_rl.rl_unit``): per seed the dense unit, then each pruned
    level trains the ticket (rewound to step k, masked) for T - k steps; ``evaluate_policy`` on the
    same batched evaluation env of N copies, ``save``."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback  # noqa: F401 - start-up: the library
    from stable_baselines3.common.env_util import make_vec_env  # noqa: F401
    from stable_baselines3.common.evaluation import evaluate_policy  # noqa: F401

    startup = _since(launched)
    plan = rl_plan(cfg)  # untimed: the same hyperparameters and prune rule
    torch.set_num_threads(1)  # as the adapter does for MLP policies
    out: dict[str, Any] = dict.fromkeys(PHASES[1:], 0.0) | {"steps": 0, "units": 0, "env_steps": 0, "per_unit": []}
    chains: dict[int, Chain] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (seed, steps) in enumerate(cfg["units"]):
            stamps, _, record = rl_unit(plan, chains.setdefault(seed, Chain(seed)), Path(tmp) / f"unit_{i}.zip")
            _add(out, stamps)
            out["steps"] += steps
            out["env_steps"] += record["env_steps"]
            out["per_unit"].append(record)
    return {"startup": startup, **out}


def plain_nlp(cfg: dict[str, Any], launched: float | None) -> dict[str, Any]:
    """The HF ``Trainer`` on the adapter's data, model and arguments: ``train``, ``evaluate`` on the
    validation and test splits, ``save_pretrained``."""
    import torch
    from transformers import Trainer

    startup = _since(launched)
    from multiticket.adapters.hf import HFAdapter  # untimed: the same data, model and arguments
    from multiticket.adapters.hf.models import build_model
    from multiticket.api import resolve_task

    task = resolve_task(cfg["task"], cfg["overrides"], cfg["seeds"], cfg["levels"])
    torch.set_num_threads(1)
    out: dict[str, Any] = dict.fromkeys(PHASES[1:], 0.0) | {"steps": 0, "units": 0}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        section: Any = task.section
        adapter = HFAdapter(task.config, section, Path(tmp), "cpu")
        adapter._prepare()  # data and tokenizer, once per run as the adapter does
        out["build"] += time.perf_counter() - t0
        s, feats = adapter.section, cast(Any, adapter._features)
        for i, (seed, steps) in enumerate(cfg["units"]):
            t0 = time.perf_counter()
            adapter.seed = seed
            model, _new_head = build_model(s, adapter.tokenizer, adapter.num_labels, adapter.pretrained, seed, False)
            args = adapter.training_args(steps)
            args.per_device_eval_batch_size = s.eval_batch_size
            trainer = Trainer(
                model=model,
                args=args,
                train_dataset=feats["train"],
                data_collator=adapter.collator(),
                processing_class=adapter.tokenizer,
            )
            t1 = time.perf_counter()
            trainer.train()
            t2 = time.perf_counter()
            trainer.evaluate(feats["validation"])
            trainer.evaluate(feats["test"], metric_key_prefix="test")
            t3 = time.perf_counter()
            model.save_pretrained(str(Path(tmp) / f"unit_{i}"))
            adapter.tokenizer.save_pretrained(str(Path(tmp) / f"unit_{i}"))
            _add(out, (t0, t1, t2, t3, time.perf_counter()))
            out["steps"] += steps
    return {"startup": startup, **out}


def run_side(side: str, cfg: dict[str, Any], launched: float | None) -> dict[str, Any]:
    """``side`` ('multiticket' or 'plain') on ``cfg``'s plan, with ``cpu``: the process CPU seconds
    of the call (a check that preemption by other work on the core does not blur)."""
    fn = multiticket_side if side == "multiticket" else {"rl": plain_rl, "nlp": plain_nlp}[cfg["domain"]]
    c0 = time.process_time()
    out = fn(cfg, launched)
    return out | {"cpu": time.process_time() - c0}


def total(r: dict[str, Any]) -> float:
    """All phases' seconds of one side's result."""
    return sum(r[p] for p in PHASES)


def probe(side: str, cfg: dict[str, Any], launched: float) -> dict[str, Any]:
    """What a fresh process pays once: ``cfg`` (a small plan) run cold, just after the imports, then
    again warm in the same process. ``startup`` is the process start and imports; ``first_use``
    the cold run's extra over the warm one (lazy imports such as torch's compiler stack on the
    first optimizer, data and tokenizer caches); ``once`` the two together."""
    cold = run_side(side, cfg, launched)
    warm = run_side(side, cfg, None)
    first_use = total(cold) - cold["startup"] - total(warm)
    return {
        "startup": cold["startup"],
        "first_use": first_use,
        "once": cold["startup"] + first_use,
        "cold": cold,
        "warm": warm,
    }


def pairs(cfg: dict[str, Any], warmup_cfg: dict[str, Any], n: int, first: str) -> dict[str, Any]:
    """``n`` pairs of both sides in this one process, alternating which goes first (``first`` in
    the first pair), after one untimed warm-up of each on ``warmup_cfg``: the two sides of a
    pair share the process's layout, allocator state and the machine's moment."""
    warmup = {side: run_side(side, warmup_cfg, None) for side in ("multiticket", "plain")}
    order = [first, "plain" if first == "multiticket" else "multiticket"]
    out: list[dict[str, Any]] = []
    for i in range(n):
        pair: dict[str, Any] = {}
        for side in order if i % 2 == 0 else order[::-1]:
            pair[side] = run_side(side, cfg, None)
        out.append(pair)
    return {"warmup": warmup, "pairs": out}
