"""A whole multiticket search against a plain library loop doing the same training (a benchmark, not a test).

Two sides run the same plan (scripts/bench_e2e_sides.py; the plain RL IMP in scripts/bench_e2e_imp_rl.py): ``multiticket`` (one ticket search,
in-process, one worker: what ``multiticket run TASK --workers 1`` does) and ``plain`` (a script
that trains and evaluates the same networks for the same steps with the library alone).

- RL: IMP written by hand with SB3 and torch. Per seed, the dense unit is one
  ``PPO(...).learn(T)`` whose callback snapshots the policy weights, the optimizer state, the
  step and the RNG states at env step k. Each pruned level prunes the previous level's trained
  weights by multiticket's rule (the task's rate, global or layerwise magnitude, over every
  Linear weight of the policy), rebuilds envs and model with the seed, loads the snapshot, masks
  the network with plain torch hooks, sets ``num_timesteps = k`` and trains the ticket with
  ``learn(T - k, reset_num_timesteps=False)``. Both sides then ``evaluate_policy`` on the same
  batched evaluation env of N copies (seeded offset + seed·N + i, multiticket's) and save. On
  cartpole-ppo the two sides train bit-identical networks (same weights, masks, evaluations);
  the per-unit table printed with each RL report shows each unit's evaluation mean reward, env
  steps and sparsity side by side, so a reader sees whether they did the same work.
- NLP: the HF ``Trainer.train`` + ``Trainer.evaluate`` on the same data, then
  ``save_pretrained``: a fresh network per unit, T steps for each dense unit and T - k for each
  pruned level.

Reported, per phase, seconds per trained step (env timesteps for RL, optimizer steps of one batch
of tokens for NLP) and the ratio multiticket / plain:

- start-up: process start and imports (multiticket: its command line and the domain's adapter;
  plain: torch and the library); in the shared mode also the first run's one-time costs;
- build: multiticket's validation build, networks, envs/data, IMP's bookkeeping (load inputs,
  prune, rewind) and locks; plain: envs/data and the networks, and for RL the mask, the
  snapshot's load and the hooks (the plain HF side prepares its data with the adapter's own
  pipeline, timed here as well);
- training, evaluation: the library's own loops;
- writing: multiticket's unit files, checksums, exports and summary.csv; plain: one save (RL:
  and a copy of the trained prunable weights, which the next level prunes).

Modes (every child pinned to ``--cpu``, ``OMP_NUM_THREADS=1``):

- ``shared`` (default): a pair is both sides' whole runs one after the other inside one child
  process (``--per-process`` pairs per child, the order alternating, after one warm-up of both
  on a small plan), so the two share the process's memory layout and allocator state and the
  machine's moment: fresh processes differ by up to ±10 % in speed on a 2-core VM whatever they
  run, and that scatter no longer enters the ratio. What a fresh process pays once (start-up
  and the first run's extra: lazy imports, caches) comes from ``--probes`` start-up probes per
  side, each a fresh process running the small plan cold, then warm; each side's median is its
  start-up in every pair.
- ``fresh``: each side's whole run in its own fresh process, the order alternating.

The plain side reads its hyperparameters (and for RL the prune and rewind settings) through
multiticket's task resolution before its timed phases (that import is not counted anywhere). ``--eval-speedup`` also measures, in one process,
batched against sequential evaluation of the demo's PPO CartPole units (same episodes' count,
alternating): ``--eval-train-steps`` trains the agent first so its episodes are as long as the
demo's.

    .venv/bin/python scripts/bench_e2e.py [--domain rl,nlp] [--repeats 3] [--steps 10000] [--levels 2] [--mode fresh]
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

import bench_e2e_sides as sides
from bench_e2e_sides import PHASES, TASKS

ROOT = Path(__file__).resolve().parent.parent
RESULT = "E2E-RESULT "


# -- the parent: plan, interleave, report -------------------------------------------------------


def run_child(job: dict[str, Any], cpu: int | None = None) -> Any:
    """One child process (``job['kind']``: a side's whole run, a start-up probe or a series of
    pairs), pinned to ``cpu`` (every child on the same core) when given; its printed result."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job), "--launched", repr(time.time())]
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, preexec_fn=pin)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{job['kind']} child exited with {proc.returncode}: {(proc.stdout + proc.stderr)[-2000:]}")
    return json.loads(lines[-1][len(RESULT) :])


def child(job: dict[str, Any], launched: float) -> Any:
    """What a child process runs (:func:`run_child`'s ``job``)."""
    if job["kind"] == "fresh":
        return sides.run_side(job["side"], job["cfg"], launched)
    if job["kind"] == "probe":
        return sides.probe(job["side"], job["cfg"], launched)
    return sides.pairs(job["cfg"], job["warmup"], job["n"], job["first"])


#: an interval wider than this (hi / lo of the ratio) cannot tell 1.00x from 1.05x
MAX_JUDGEABLE_WIDTH = 1.05
#: the whole-run target of docs/scale.md
TARGET = 1.03


def ratio_interval(ratios: list[float]) -> dict[str, Any]:
    """Geometric mean of paired ratios with a 95 % t interval on their logs (each pair shares the
    machine's state), the logs' standard deviation (the spread a mode is judged by), and what the
    interval can judge."""
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    out: dict[str, Any] = {
        "ratio": math.exp(mean),
        "n": len(logs),
        "log_sd": statistics.stdev(logs) if len(logs) > 1 else None,
    }
    if len(logs) < 3:
        return out | {"low": None, "high": None, "judged": f"too few repeats ({len(logs)}, 3 needed)"}
    from scipy.stats import t as student

    half = student.ppf(0.975, len(logs) - 1) * out["log_sd"] / math.sqrt(len(logs))
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


def per_step(r: dict[str, Any], key: str) -> float:
    """Seconds per trained step of one side's result in phase ``key`` (``total``: all phases)."""
    return (sides.total(r) if key == "total" else r[key]) / max(r["steps"], 1)


def compare(
    runs: dict[str, list[dict[str, Any]]], startup: dict[str, list[dict[str, Any]]] | None = None
) -> dict[str, Any]:
    """Per phase (and the whole run): median seconds per trained step of each side, and the paired
    ratio multiticket / plain of each pair with its interval (:func:`ratio_interval`). ``startup``:
    the start-up row's own pairs (the shared mode's fresh-process probes) instead of ``runs``'."""
    table = {}
    for key in (*PHASES, "total"):
        src = startup if key == "startup" and startup is not None else runs
        pairs = list(zip(src["multiticket"], src["plain"], strict=True))
        ratios = [per_step(a, key) / per_step(b, key) for a, b in pairs if per_step(b, key) > 0]
        table[key] = {
            "multiticket_s_per_step": statistics.median(per_step(r, key) for r in src["multiticket"]),
            "plain_s_per_step": statistics.median(per_step(r, key) for r in src["plain"]),
            "paired_ratios": ratios,
            **(ratio_interval(ratios) if ratios else {"ratio": None}),
        }
    cpu = [a["cpu"] / b["cpu"] for a, b in zip(runs["multiticket"], runs["plain"], strict=True) if b.get("cpu")]
    table_cpu = {"paired_ratios": cpu, **(ratio_interval(cpu) if cpu else {"ratio": None})}
    return {
        "phases": table,
        "cpu": table_cpu,
        "steps": {side: runs[side][0]["steps"] for side in runs},
        "units": {side: runs[side][0]["units"] for side in runs},
        "per_unit": {side: runs[side][0].get("per_unit") for side in runs},
        "per_unit_repeated": {
            side: all(r.get("per_unit") == runs[side][0].get("per_unit") for r in runs[side]) for side in runs
        },
    }


def same_work(per_unit: dict[str, Any]) -> bool | None:
    """Whether both sides trained the same networks, unit by unit (in any order: the plain side
    trains every seed's dense unit first): the same units with the same evaluation, env steps and
    sparsity (None: a side did not record its units, as the plain NLP side does not)."""
    mt, plain = per_unit.get("multiticket"), per_unit.get("plain")
    if not mt or not plain:
        return None
    keys = ("seed", "level", "eval", "env_steps", "sparsity")
    return sorted([u.get(key) for key in keys] for u in mt) == sorted([u.get(key) for key in keys] for u in plain)


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_units(res: dict[str, Any]) -> None:
    """Each unit's evaluation (RL: mean reward), env steps and sparsity on both sides, side by
    side (first pair): whether the ratio compares the same work is read here."""
    mt, plain = (res.get("per_unit") or {}).get("multiticket"), (res.get("per_unit") or {}).get("plain")
    if not mt or not plain:
        return
    by = {(u["seed"], u["level"]): u for u in plain}
    repeated = res.get("per_unit_repeated", {})
    print(
        f"per unit, multiticket | plain ({mt[0]['metric']}; env steps; sparsity): "
        f"{'identical' if same_work(res['per_unit']) else 'DIFFERENT'}; the same in every pair: "
        f"multiticket {repeated.get('multiticket')}, plain {repeated.get('plain')}"
    )
    for u in mt:
        p = by.get((u["seed"], u["level"]), {})
        print(
            f"  seed {u['seed']} level {u['level']}: {_num(u['eval'], '.2f')} | {_num(p.get('eval'), '.2f')}; "
            f"{_num(u.get('env_steps'), 'd')} | {_num(p.get('env_steps'), 'd')}; "
            f"{_num(u['sparsity'], '.4f')} | {_num(p.get('sparsity'), '.4f')}"
        )


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPUs, model, load, versions, date."""
    import platform

    import torch

    model = (
        next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def bench_fresh(cfg: dict[str, Any], repeats: int, cpu: int | None) -> dict[str, Any]:
    """``--mode fresh``: each side's whole run in its own fresh process, the order alternating."""
    runs: dict[str, list[dict[str, Any]]] = {"multiticket": [], "plain": []}
    for r in range(repeats):
        for side in ("multiticket", "plain") if r % 2 == 0 else ("plain", "multiticket"):
            runs[side].append(run_child({"kind": "fresh", "side": side, "cfg": cfg}, cpu))
    return {"mode": "fresh", "config": cfg, "runs": runs, **compare(runs)}


def probe_plan(cfg: dict[str, Any], steps: int) -> dict[str, Any]:
    """The small plan of the start-up probes and warm-ups: ``cfg`` at ``steps`` trained steps per
    dense unit (at least twice the rewind step, at most the full budget)."""
    full = cfg["units"][0][1]
    k = full - cfg["units"][-1][1]
    steps = min(full, max(steps, 2 * k))
    return sides.plan(
        cfg["domain"],
        steps,
        cfg["levels"],
        cfg["seeds"],
        [o for o in cfg["overrides"] if not o.startswith("train.steps=")],
    )


def bench_shared(
    cfg: dict[str, Any], small: dict[str, Any], repeats: int, per_process: int, probes: int, cpu: int | None
) -> dict[str, Any]:
    """``--mode shared``: ``repeats`` pairs run inside child processes (``per_process`` pairs each,
    after one warm-up of both sides on ``small``), so a pair's two sides share one process; plus
    ``probes`` fresh-process start-up probes per side (:func:`sides.probe`, alternating). Each side's
    start-up phase in a pair is its median probe's one-time cost (imports and first use)."""
    probed: dict[str, list[dict[str, Any]]] = {"multiticket": [], "plain": []}
    for r in range(probes):
        for side in ("multiticket", "plain") if r % 2 == 0 else ("plain", "multiticket"):
            probed[side].append(run_child({"kind": "probe", "side": side, "cfg": small}, cpu))
    once = {side: statistics.median(p["once"] for p in probed[side]) for side in probed}
    runs: dict[str, list[dict[str, Any]]] = {"multiticket": [], "plain": []}
    process_of_pair, warmups = [], []
    for j, start in enumerate(range(0, repeats, per_process)):
        n = min(per_process, repeats - start)
        job = {"kind": "pairs", "cfg": cfg, "warmup": small, "n": n, "first": ("multiticket", "plain")[j % 2]}
        res = run_child(job, cpu)
        warmups.append(res["warmup"])
        for pair in res["pairs"]:
            for side, r in pair.items():
                runs[side].append(r | {"startup": once[side]})
            process_of_pair.append(j)
    steps = runs["plain"][0]["steps"]
    startup_runs = {side: [{"startup": p["once"], "steps": steps} for p in probed[side]] for side in probed}
    return {
        "mode": "shared",
        "config": cfg,
        "probe_config": small,
        "runs": runs,
        "process_of_pair": process_of_pair,
        "probes": probed,
        "warmups": warmups,
        **compare(runs, startup_runs),
    }


def eval_speedup(repeats: int, train_steps: int) -> dict[str, Any]:
    """Batched / sequential evaluation time of one demo unit (cartpole-ppo, its n_eval_episodes),
    alternating on the same trained weights in this process."""
    import torch

    from multiticket.adapters.sb3 import SB3Adapter
    from multiticket.api import resolve_task
    from multiticket.core.hooks import LevelHooks

    task = resolve_task("cartpole-ppo", ["rl.tensorboard=false"])
    section: Any = task.section  # the rl section (typed as the base model)
    torch.set_num_threads(1)
    adapters = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("batched", "sequential"):
            adapter = SB3Adapter(task.config, section, Path(tmp) / method, "cpu")
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
    return {
        "episodes": section.n_eval_episodes,
        "train_steps": train_steps,
        "seconds": times,
        "mean_episode_length": {m: statistics.mean(v) for m, v in lengths.items()},
        "speedup": med["sequential"] / med["batched"],
    }


def _ratio_text(row: dict[str, Any]) -> str:
    if row.get("ratio") is None:
        return "n/a"
    if row.get("low") is None:
        return f"{row['ratio']:.3f}x ({row['judged']})"
    return f"{row['ratio']:.3f}x [{row['low']:.3f}, {row['high']:.3f}] {row['judged']}"


def _sd_text(row: dict[str, Any]) -> str:
    return f"; sd of log ratios {row['log_sd']:.4f}" if row.get("log_sd") is not None else ""


def print_report(results: dict[str, Any]) -> None:
    """The per-phase tables and the whole-run lines (scripts/bench.py parses the latter)."""
    m = results.get("machine", {})
    print(
        f"machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), load average at start "
        f"{m.get('load_average')}, at end {results.get('load_average_end')}; {m.get('date')}"
    )
    for domain, res in results.items():
        if domain == "eval_speedup":
            print(
                f"evaluation, demo PPO CartPole ({res['episodes']} episodes, agent trained {res['train_steps']} "
                f"steps, mean length {res['mean_episode_length']}): batched speed-up {res['speedup']:.2f}x"
            )
            continue
        if domain not in TASKS:
            continue
        print(
            f"\n{domain} ({res['mode']} mode): {res['config']['task']} {' '.join(res['config']['overrides'])}; "
            f"units {res['units']}; trained steps {res['steps']}"
        )
        if res["mode"] == "shared":
            once = {s: statistics.median(p["once"] for p in res["probes"][s]) for s in res["probes"]}
            print(
                f"pairs in {max(res['process_of_pair']) + 1} processes; start-up = median one-time cost of "
                f"{len(res['probes']['plain'])} fresh-process probes: multiticket {once['multiticket']:.2f} s, "
                f"plain {once['plain']:.2f} s"
            )
        print(
            f"{'phase':<10} {'multiticket s/step':>20} {'plain s/step':>14}  ratio (geometric mean of paired ratios, 95 % t interval)"
        )
        for phase, row in res["phases"].items():
            print(
                f"{phase:<10} {row['multiticket_s_per_step']:>20.3e} {row['plain_s_per_step']:>14.3e}  {_ratio_text(row)}"
            )
        total = res["phases"]["total"]
        print_units(res)
        print(
            f"CPU seconds of the sides' calls (a check against preemption, not the measure): "
            f"{_ratio_text(res['cpu'])}{_sd_text(res['cpu'])}"
        )
        print(
            f"{domain} whole run per trained step: {_ratio_text(total)}; paired ratios "
            + ", ".join(f"{r:.3f}" for r in total["paired_ratios"])
            + _sd_text(total)
        )


def parser() -> argparse.ArgumentParser:
    """The command line (the module docstring says what each mode measures)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", default="rl,nlp", help="comma-separated: rl, nlp (or none)")
    p.add_argument(
        "--mode",
        choices=("shared", "fresh"),
        default="shared",
        help="shared: both sides of a pair in one process; fresh: each side's run in its own process",
    )
    p.add_argument("--repeats", type=int, default=3, help="pairs per domain")
    p.add_argument("--nlp-repeats", type=int, help="pairs for NLP (default: --repeats)")
    p.add_argument("--per-process", type=int, default=2, help="shared mode: pairs per child process")
    p.add_argument("--probes", type=int, default=3, help="shared mode: fresh-process start-up probes per side")
    p.add_argument(
        "--probe-steps",
        type=int,
        help="shared mode: train.steps of the probes and warm-ups "
        "(default 4096 RL, 20 NLP; at least twice the rewind step, at most --steps)",
    )
    p.add_argument("--steps", type=int, default=10000, help="RL train.steps per unit (env timesteps)")
    p.add_argument("--nlp-steps", type=int, help="NLP train.steps per unit (default: the task's, 500)")
    p.add_argument("--levels", type=int, default=2)
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--set", action="append", default=[], help="more task overrides (KEY=VALUE), both sides")
    p.add_argument("--eval-speedup", action="store_true", help="also time batched vs sequential evaluation")
    p.add_argument("--eval-train-steps", type=int, default=20000, help="train the evaluated agent first")
    p.add_argument(
        "--cpu",
        type=int,
        default=max(os.sched_getaffinity(0)),
        help="pin every child to this CPU (default: the highest allowed); -1: no pinning",
    )
    p.add_argument("--json", help="write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    return p


#: the probes' and warm-ups' default train.steps (cartpole-ppo rewinds to 2048 env steps)
PROBE_STEPS = {"rl": 4096, "nlp": 20}


def bench_domain(domain: str, args: argparse.Namespace) -> dict[str, Any]:
    """One domain's comparison in the mode ``args.mode`` asks for."""
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    cfg = sides.plan(domain, args.steps if domain == "rl" else args.nlp_steps, args.levels, seeds, args.set)
    cpu = None if args.cpu < 0 else args.cpu
    repeats = args.nlp_repeats if domain == "nlp" and args.nlp_repeats else args.repeats
    if args.mode == "fresh":
        return bench_fresh(cfg, repeats, cpu)
    small = probe_plan(cfg, args.probe_steps or PROBE_STEPS[domain])
    return bench_shared(cfg, small, repeats, max(args.per_process, 1), max(args.probes, 1), cpu)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        print(RESULT + json.dumps(child(json.loads(args.child), args.launched)), flush=True)
        return 0
    results: dict[str, Any] = {"machine": machine()}
    for domain in filter(lambda d: d in TASKS, args.domain.split(",")):
        results[domain] = bench_domain(domain, args)
    results["load_average_end"] = list(os.getloadavg())
    if args.eval_speedup:
        results["eval_speedup"] = eval_speedup(args.repeats, args.eval_train_steps)
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
