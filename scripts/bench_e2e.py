"""A whole multiticket search against a plain library loop doing the same training (a benchmark, not a test).

Each repeat runs, in alternating order, two fresh processes: ``multiticket`` (one ticket search,
in-process, one worker: what ``multiticket run TASK --workers 1`` does) and ``plain`` (a script
that trains and evaluates the same number of networks for the same steps with the library
alone: SB3 ``PPO(...).learn`` + ``evaluate_policy`` on the same batched evaluation env of N
copies, then ``model.save``; or the HF ``Trainer.train`` + ``Trainer.evaluate`` on the same data,
then ``save_pretrained``). The plain side trains T steps for each dense unit and T - k for each
pruned level, as IMP does. Reported, per phase, seconds per trained step (env timesteps for RL,
optimizer steps of one batch of tokens for NLP) and the ratio multiticket / plain:

- start-up: process start and imports (multiticket: its command line and the domain's adapter;
  plain: torch and the library);
- build: multiticket's validation build, networks, envs/data, IMP's bookkeeping (load inputs,
  prune, rewind) and locks; plain: envs/data and the networks (the plain HF side prepares its
  data with the adapter's own pipeline, timed here as well);
- training, evaluation: the library's own loops;
- writing: multiticket's unit files, checksums, exports and summary.csv; plain: one save.

The plain side reads its hyperparameters through multiticket's task resolution before its timed
phases (that import is not counted anywhere). ``--eval-speedup`` also measures, in one process,
batched against sequential evaluation of the demo's PPO CartPole units (same episodes' count,
alternating): ``--eval-train-steps`` trains the agent first so its episodes are as long as the
demo's.

    .venv/bin/python scripts/bench_e2e.py [--domain rl,nlp] [--repeats 3] [--steps 10000] [--levels 2]
    .venv/bin/python scripts/bench_e2e.py --domain none --eval-speedup --eval-train-steps 20000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("startup", "build", "train", "evaluate", "write")
#: the shipped task each domain runs (the demo's, and the tiny BERT of the NLP benchmarks)
TASKS = {"rl": "cartpole-ppo", "nlp": "rotten-tomatoes-bert"}
RESULT = "E2E-RESULT "


# -- the two sides, each in its own process -----------------------------------------------------


def multiticket_side(cfg: dict[str, Any], launched: float) -> dict[str, Any]:
    """One in-process ticket search; phases from the runner's per-unit timings."""
    import multiticket.cli  # noqa: F401 - what `multiticket run` imports before it builds
    from multiticket.domains import domains

    __import__(domains.module_of(cfg["domain"]))
    startup = time.time() - launched
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

    driver.prepare_run = keep  # to read the runner's phases afterwards
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        driver.run_tasks([task], Path(out), LaunchOptions(workers=1, device="cpu", in_process_threads=1),
                         NullReporter())
        t1 = time.perf_counter()
        _, records = write_summary(Path(out) / task.run_name)
        summary = time.perf_counter() - t1
    sums = {k: sum(ph.get(k, 0.0) for r in runners for ph in r.unit_phases.values())
            for k in ("train", "evaluate", "save")}
    return {
        "startup": startup,
        "build": (t1 - t0) - sum(sums.values()),
        "train": sums["train"],
        "evaluate": sums["evaluate"],
        "write": sums["save"] + summary,
        "steps": sum(r["stop_step"] - r["start_step"] for r in records),
        "units": len(records),
    }


def plain_rl(cfg: dict[str, Any], launched: float) -> dict[str, Any]:
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    startup = time.time() - launched
    from multiticket.adapters.sb3_algos import ALGOS  # untimed: the same hyperparameters
    from multiticket.adapters.sb3_hyper import resolve_hyper
    from multiticket.api import resolve_task

    task = resolve_task(cfg["task"], cfg["overrides"], cfg["seeds"], cfg["levels"])
    s = task.section
    hyper = resolve_hyper(s.algo, s.env, s.hyperparams, s.overrides, s.env_kwargs)
    torch.set_num_threads(1)  # as the adapter does for MLP policies
    out = dict.fromkeys(PHASES[1:], 0.0) | {"steps": 0, "units": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (seed, steps) in enumerate(cfg["units"]):
            t0 = time.perf_counter()
            venv = make_vec_env(s.env, n_envs=hyper.n_envs, seed=seed, env_kwargs=dict(hyper.env_kwargs))
            model = ALGOS[s.algo].cls(hyper.policy, venv, seed=seed, device="cpu", verbose=0, **hyper.kwargs)
            eval_env = make_vec_env(s.env, n_envs=s.n_eval_episodes, seed=seed + s.eval_seed_offset)
            t1 = time.perf_counter()
            model.learn(steps)
            t2 = time.perf_counter()
            evaluate_policy(model, eval_env, n_eval_episodes=s.n_eval_episodes, deterministic=True, warn=False)
            t3 = time.perf_counter()
            model.save(Path(tmp) / f"unit_{i}.zip")
            t4 = time.perf_counter()
            for key, seconds in zip(PHASES[1:], (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                out[key] += seconds
            out["steps"] += int(model.num_timesteps)
            out["units"] += 1
            venv.close()
            eval_env.close()
    return {"startup": startup, **out}


def plain_nlp(cfg: dict[str, Any], launched: float) -> dict[str, Any]:
    import torch
    from transformers import Trainer

    startup = time.time() - launched
    from multiticket.adapters.hf import HFAdapter  # untimed: the same data, model and arguments
    from multiticket.adapters.hf.models import build_model
    from multiticket.api import resolve_task

    task = resolve_task(cfg["task"], cfg["overrides"], cfg["seeds"], cfg["levels"])
    torch.set_num_threads(1)
    out = dict.fromkeys(PHASES[1:], 0.0) | {"steps": 0, "units": 0}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        adapter = HFAdapter(task.config, task.section, Path(tmp), "cpu")
        adapter._prepare()  # data and tokenizer, once per process as the adapter does
        out["build"] += time.perf_counter() - t0
        s, feats = adapter.section, adapter._features
        for i, (seed, steps) in enumerate(cfg["units"]):
            t0 = time.perf_counter()
            adapter.seed = seed
            model, _new_head = build_model(s, adapter.tokenizer, adapter.num_labels, adapter.pretrained, seed, False)
            args = adapter.training_args(steps)
            args.per_device_eval_batch_size = s.eval_batch_size
            trainer = Trainer(model=model, args=args, train_dataset=feats["train"], data_collator=adapter.collator(),
                              processing_class=adapter.tokenizer)
            t1 = time.perf_counter()
            trainer.train()
            t2 = time.perf_counter()
            trainer.evaluate(feats["validation"])
            trainer.evaluate(feats["test"], metric_key_prefix="test")
            t3 = time.perf_counter()
            model.save_pretrained(str(Path(tmp) / f"unit_{i}"))
            adapter.tokenizer.save_pretrained(str(Path(tmp) / f"unit_{i}"))
            t4 = time.perf_counter()
            for key, seconds in zip(PHASES[1:], (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                out[key] += seconds
            out["steps"] += steps
            out["units"] += 1
    return {"startup": startup, **out}


# -- the parent: plan, interleave, report -------------------------------------------------------


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
    return {"domain": domain, "task": TASKS[domain], "overrides": overrides, "seeds": seeds, "levels": levels,
            "units": units}


def run_child(side: str, cfg: dict[str, Any], cpu: int | None = None) -> dict[str, Any]:
    """One side in a fresh process, pinned to ``cpu`` (both sides on the same core) when given."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--config", json.dumps(cfg),
           "--launched", repr(time.time())]
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, preexec_fn=pin)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{side} side exited with {proc.returncode}: {(proc.stdout + proc.stderr)[-2000:]}")
    return json.loads(lines[-1][len(RESULT):])


#: an interval wider than this (hi / lo of the ratio) cannot tell 1.00x from 1.05x
MAX_JUDGEABLE_WIDTH = 1.05
#: the whole-run target of docs/scale.md
TARGET = 1.03


def ratio_interval(ratios: list[float]) -> dict[str, Any]:
    """Geometric mean of paired ratios with a 95 % t interval on their logs (repeats are
    interleaved pairs, so each pair shares the machine's state), and what it can judge."""
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    out: dict[str, Any] = {"ratio": math.exp(mean), "n": len(logs)}
    if len(logs) < 3:
        return out | {"low": None, "high": None, "judged": f"too few repeats ({len(logs)}, 3 needed)"}
    from scipy.stats import t as student

    half = student.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    low, high = math.exp(mean - half), math.exp(mean + half)
    if high < 1.05:
        judged = "below 1.05x"
    elif low > 1.05:
        judged = "above 1.05x"
    elif high / low > MAX_JUDGEABLE_WIDTH:
        judged = "too wide to judge"
    else:
        judged = "includes 1.05x"
    return out | {"low": low, "high": high, "judged": judged}


def compare(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per phase (and the whole run): median seconds per trained step of each side, and the paired
    ratio multiticket / plain of each interleaved repeat with its interval (:func:`ratio_interval`)."""
    def per_step(r: dict[str, Any], key: str) -> float:
        total = sum(r[p] for p in PHASES) if key == "total" else r[key]
        return total / max(r["steps"], 1)

    table = {}
    for key in (*PHASES, "total"):
        pairs = list(zip(runs["multiticket"], runs["plain"], strict=True))
        ratios = [per_step(a, key) / per_step(b, key) for a, b in pairs if per_step(b, key) > 0]
        table[key] = {"multiticket_s_per_step": statistics.median(per_step(r, key) for r in runs["multiticket"]),
                      "plain_s_per_step": statistics.median(per_step(r, key) for r in runs["plain"]),
                      "paired_ratios": ratios, **(ratio_interval(ratios) if ratios else {"ratio": None})}
    return {"phases": table, "steps": {side: runs[side][0]["steps"] for side in runs},
            "units": {side: runs[side][0]["units"] for side in runs}}


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPUs, model, load, versions, date."""
    import platform

    import torch

    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": len(os.sched_getaffinity(0)),
            "cpu_model": model, "load_average": list(os.getloadavg()), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform()}


def bench_domain(cfg: dict[str, Any], repeats: int, cpu: int | None) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"multiticket": [], "plain": []}
    for r in range(repeats):
        for side in ("multiticket", "plain") if r % 2 == 0 else ("plain", "multiticket"):
            runs[side].append(run_child(side, cfg, cpu))
    return {"config": cfg, "runs": runs, **compare(runs)}


def eval_speedup(repeats: int, train_steps: int) -> dict[str, Any]:
    """Batched / sequential evaluation time of one demo unit (cartpole-ppo, its n_eval_episodes),
    alternating on the same trained weights in this process."""
    import torch

    from multiticket.adapters.sb3 import SB3Adapter
    from multiticket.api import resolve_task
    from multiticket.core.hooks import LevelHooks

    task = resolve_task("cartpole-ppo", ["rl.tensorboard=false"])
    torch.set_num_threads(1)
    adapters = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("batched", "sequential"):
            adapter = SB3Adapter(task.config, task.section, Path(tmp) / method, "cpu")
            adapter.eval_method = method
            adapter.build(0)
            adapters[method] = adapter
        if train_steps:
            adapters["batched"].train(0, train_steps, LevelHooks(adapters["batched"], None, 0, ()))
        adapters["sequential"].module.load_state_dict(adapters["batched"].module.state_dict())
        times: dict[str, list[float]] = {m: [] for m in adapters}
        lengths: dict[str, list[int]] = {}
        for r in range(max(repeats, 1)):
            for method in list(adapters) if r % 2 == 0 else list(adapters)[::-1]:
                t0 = time.perf_counter()
                lengths[method] = adapters[method].eval_episodes()[1]
                times[method].append(time.perf_counter() - t0)
        for adapter in adapters.values():
            adapter.close()
    med = {m: statistics.median(v) for m, v in times.items()}
    return {"episodes": task.section.n_eval_episodes, "train_steps": train_steps, "seconds": times,
            "mean_episode_length": {m: statistics.mean(v) for m, v in lengths.items()},
            "speedup": med["sequential"] / med["batched"]}


def _ratio_text(row: dict[str, Any]) -> str:
    if row.get("ratio") is None:
        return "n/a"
    if row.get("low") is None:
        return f"{row['ratio']:.3f}x ({row['judged']})"
    return f"{row['ratio']:.3f}x [{row['low']:.3f}, {row['high']:.3f}] {row['judged']}"


def print_report(results: dict[str, Any]) -> None:
    m = results.get("machine", {})
    print(f"machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), load average at start "
          f"{m.get('load_average')}, at end {results.get('load_average_end')}; {m.get('date')}")
    for domain, res in results.items():
        if domain == "eval_speedup":
            print(f"evaluation, demo PPO CartPole ({res['episodes']} episodes, agent trained {res['train_steps']} "
                  f"steps, mean length {res['mean_episode_length']}): batched speed-up {res['speedup']:.2f}x")
            continue
        if domain not in TASKS:
            continue
        print(f"\n{domain}: {res['config']['task']} {' '.join(res['config']['overrides'])}; "
              f"units {res['units']}; trained steps {res['steps']}")
        print(f"{'phase':<10} {'multiticket s/step':>20} {'plain s/step':>14}  ratio (geometric mean of paired ratios, 95 % t interval)")
        for phase, row in res["phases"].items():
            print(f"{phase:<10} {row['multiticket_s_per_step']:>20.3e} {row['plain_s_per_step']:>14.3e}  {_ratio_text(row)}")
        total = res["phases"]["total"]
        print(f"{domain} whole run per trained step: {_ratio_text(total)}; paired ratios "
              + ", ".join(f"{r:.3f}" for r in total["paired_ratios"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", default="rl,nlp", help="comma-separated: rl, nlp (or none)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=10000, help="RL train.steps per unit (env timesteps)")
    p.add_argument("--nlp-steps", type=int, help="NLP train.steps per unit (default: the task's, 500)")
    p.add_argument("--levels", type=int, default=2)
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--set", action="append", default=[], help="more task overrides (KEY=VALUE), both sides")
    p.add_argument("--eval-speedup", action="store_true", help="also time batched vs sequential evaluation")
    p.add_argument("--eval-train-steps", type=int, default=20000, help="train the evaluated agent first")
    p.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)),
                   help="pin both sides to this CPU (default: the highest allowed); -1: no pinning")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--child", choices=("multiticket", "plain"), help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        cfg = json.loads(args.config)
        side = multiticket_side if args.child == "multiticket" else {"rl": plain_rl, "nlp": plain_nlp}[cfg["domain"]]
        print(RESULT + json.dumps(side(cfg, args.launched)), flush=True)
        return 0
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    results: dict[str, Any] = {"machine": machine()}
    cpu = None if args.cpu < 0 else args.cpu
    for domain in filter(lambda d: d in TASKS, args.domain.split(",")):
        steps = args.steps if domain == "rl" else args.nlp_steps
        results[domain] = bench_domain(plan(domain, steps, args.levels, seeds, args.set), args.repeats, cpu)
    results["load_average_end"] = list(os.getloadavg())
    if args.eval_speedup:
        results["eval_speedup"] = eval_speedup(args.repeats, args.eval_train_steps)
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
