"""Every performance benchmark of multiticket in one run: writes bench.json and prints a table.

Sections (each can be skipped with --skip NAME,...):
- masking: toy MLP step time, plain vs MaskEnforcer vs torch.nn.utils.prune (scripts/bench_masking.py)
- rl, nlp: scripts/bench_rl.py (SB3 PPO CartPole) and scripts/bench_nlp.py (HF Trainer, tiny BERT),
  run as subprocesses when present; their printed ratios are parsed and their output kept
- bookkeeping: IMP's own work per level (load inputs + prune + rewind restore + save) as a fraction
  of the level's training time, on toy and (if SB3 works here) PPO CartPole
- local: the same work with 1 vs 2 local worker processes (throughput ratio)
- ray: the same work on a local Ray instance with 1 vs 2 CPUs
- e2e: scripts/bench_e2e.py, a whole multiticket search against a plain SB3 / HF loop doing the
  same training, per phase (start-up, build, training, evaluation, writing), and batched vs
  sequential RL evaluation
- gpu (skipped without CUDA): masked vs plain step time with bf16 autocast, an MLP and the HF
  Trainer (GPT-2 small, scripts/bench_nlp.py --preset gpt2) eager and compiled; the graphs
  dynamo compiles across 3 IMP levels (a new mask must compile nothing)

Variants compared with each other run side by side, interleaved (the order alternates each
repeat), and medians are reported; the load average before and after is recorded because the
machine may be shared.

    .venv/bin/python scripts/bench.py [--repeats 3] [--out bench.json] [--skip rl,nlp]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_masking import interleaved_step_times, paired_ratio  # noqa: E402

from multiticket.adapters.toy import ToySection  # noqa: E402
from multiticket.config import load_task  # noqa: E402
from multiticket.launch import LaunchOptions, run_tasks  # noqa: E402
from multiticket.paths import TASKS_DIR  # noqa: E402


def interleaved(variants: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    """Call every variant once per repeat, alternating the order; returns the timings."""
    names = list(variants)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names if r % 2 == 0 else names[::-1]:
            out[n].append(variants[n]())
    return out


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in times.items()}


# -- sections ---------------------------------------------------------------------------------


def bench_masking(repeats: int) -> dict[str, Any]:
    cfg = ToySection()
    torch.set_num_threads(1)
    times = interleaved_step_times(cfg, 0.8, rounds=max(repeats, 5) * 12)
    return {
        "hidden": cfg.hidden,
        "sparsity": 0.8,
        "median_step_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
        "enforcer_vs_plain": paired_ratio(times, "enforcer"),
        "enforcer_hook_vs_plain": paired_ratio(times, "enforcer_hook"),
        "torch_prune_vs_plain": paired_ratio(times, "torch_prune"),
        "enforcer_vs_torch_prune": paired_ratio(times, "enforcer", "torch_prune"),
    }


def bench_script(name: str, args: list[str], patterns: dict[str, str]) -> dict[str, Any]:
    """Run scripts/<name>.py (written to print, not to return) and parse the ratios it prints."""
    path = ROOT / "scripts" / f"{name}.py"
    if not path.is_file():
        return {"skipped": f"scripts/{name}.py does not exist"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, cwd=ROOT)
    out: dict[str, Any] = {
        "args": args,
        "seconds": round(time.perf_counter() - t0, 1),
        "output_tail": (proc.stdout + proc.stderr)[-3000:],
    }
    if proc.returncode != 0:
        out["skipped"] = f"scripts/{name}.py exited with {proc.returncode}"
        return out
    for key, pattern in patterns.items():
        m = re.findall(pattern, proc.stdout)
        if m:
            out[key] = float(m[-1])
    return out


def bench_bookkeeping(which: str) -> dict[str, Any]:
    from multiticket.core.imp import IMPRunner
    from multiticket.core.store import RunStore

    if which == "toy":
        path, overrides, levels = TASKS_DIR / "toy-mlp.yaml", [], 4
    else:
        path, overrides, levels = (
            TASKS_DIR / "cartpole-ppo.yaml",
            ["train.steps=12288", "rewind.step=2048"],
            3,
        )
    task = load_task(path, [*overrides, "controls=[]"], seeds=[0], levels=levels)
    from multiticket.domains import adapter_class

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / task.run_name
        adapter = adapter_class(task.config.domain)(task.config, task.section, run_dir / "cache", "cpu")
        runner = IMPRunner(task, adapter, RunStore(run_dir))
        try:
            runner.run()
        finally:
            adapter.close()
    levels_out = []
    for unit, ph in sorted(runner.unit_phases.items(), key=lambda kv: kv[0].level):
        if unit.level == 0:
            continue
        book = sum(ph.get(k, 0.0) for k in ("load_inputs", "prune", "restore", "save"))
        levels_out.append(
            {
                "level": unit.level,
                "train_s": ph["train"],
                "bookkeeping_s": book,
                "build_s": ph.get("build", 0.0),
                "evaluate_s": ph.get("evaluate", 0.0),
                "bookkeeping_pct_of_train": 100 * book / ph["train"],
            }
        )
    pct = [lv["bookkeeping_pct_of_train"] for lv in levels_out]
    return {
        "task": task.run_name,
        "train_steps": task.config.train.steps,
        "levels": levels_out,
        "median_bookkeeping_pct": statistics.median(pct),
    }


#: training steps per unit of the scaling benchmarks (--scaling-steps)
SCALING_STEPS = [1000]


def _scaling_work(tag: str) -> Any:
    """4 independent seed chains of toy-mlp (default sizes), 1 level + random_reinit: 12 units."""
    return load_task(
        TASKS_DIR / "toy-mlp.yaml",
        ["controls=[random_reinit]", f"description={tag}", f"train.steps={SCALING_STEPS[0]}"],
        seeds=[0, 1, 2, 3],
        levels=1,
    )


def _time_run(task: Any, opts: LaunchOptions) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_tasks([task], Path(tmp), opts)
        return time.perf_counter() - t0


def bench_local(repeats: int) -> dict[str, Any]:
    task = _scaling_work("local")
    times = interleaved(
        {
            "pool_1_worker": lambda: _time_run(task, LaunchOptions(workers=1, force_pool=True)),
            "pool_2_workers": lambda: _time_run(task, LaunchOptions(workers=2)),
            "in_process_1_thread": lambda: _time_run(task, LaunchOptions(in_process_threads=1)),
        },
        repeats,
    )
    med = medians(times)
    return {
        "units": 12,
        "steps_per_unit": SCALING_STEPS[0],
        "seconds": times,
        "median_s": med,
        "throughput_2_vs_1_workers": med["pool_1_worker"] / med["pool_2_workers"],
        "throughput_2_workers_vs_in_process": med["in_process_1_thread"] / med["pool_2_workers"],
    }


def bench_ray(repeats: int) -> dict[str, Any]:
    try:
        import ray
    except ModuleNotFoundError:
        return {"skipped": "ray is not installed"}
    task = _scaling_work("ray")

    def run(cpus: int) -> float:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        try:
            return _time_run(task, LaunchOptions(backend="ray", workers=cpus))  # ray.init excluded
        finally:
            ray.shutdown()

    times = interleaved({"ray_1_cpu": lambda: run(1), "ray_2_cpus": lambda: run(2)}, repeats)
    med = medians(times)
    return {
        "units": 12,
        "steps_per_unit": SCALING_STEPS[0],
        "seconds": times,
        "median_s": med,
        "throughput_2_vs_1_cpus": med["ray_1_cpu"] / med["ray_2_cpus"],
    }


#: bench_e2e.py's printed ratios (its --json file holds the per-phase table)
E2E_RATIOS = {
    "rl_whole_run": r"rl whole run per trained step: ([\d.]+)x",
    "nlp_whole_run": r"nlp whole run per trained step: ([\d.]+)x",
    "eval_speedup": r"batched speed-up ([\d.]+)x",
}


def bench_e2e(args: list[str]) -> dict[str, Any]:
    """scripts/bench_e2e.py with ``args``; its per-phase results come back under ``results``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = bench_script("bench_e2e", [*args, "--json", str(Path(tmp) / "e2e.json")], E2E_RATIOS)
        if (Path(tmp) / "e2e.json").is_file():
            out["results"] = json.loads((Path(tmp) / "e2e.json").read_text())
    return out


#: bench_nlp.py's printed ratios (bench.py parses them)
NLP_RATIOS = {
    "masked_vs_plain": r"ratio ([\d.]+);",
    "masked_vs_plain_paired": r"median of paired ratios ([\d.]+)",
}


def bench_gpu(repeats: int) -> dict[str, Any]:
    """On CUDA: an MLP step with bf16 autocast, and the HF Trainer (GPT-2 small, bf16) eager and
    compiled, masked vs plain; then the graphs compiled across 3 IMP levels."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine"}
    trainer = ["--preset", "gpt2", "--device", "cuda", "--bf16", "--steps", "150", "--warmup", "10",
               "--repeats", str(max(repeats, 3))]  # fmt: skip
    return {
        "device": torch.cuda.get_device_name(),
        "mlp_bf16": _gpu_mlp(repeats),
        "trainer_bf16": bench_script("bench_nlp", trainer, NLP_RATIOS),
        "trainer_bf16_compile": bench_script(
            "bench_nlp",
            [*trainer, "--compile", "--recompile-levels", "3"],
            {
                **NLP_RATIOS,
                "graphs_dense_unit": r"graphs compiled in the dense unit: (\d+)",
                "graphs_later_units": r"in the \d+ later units: (\d+)",
            },
        ),
    }


def _gpu_mlp(repeats: int) -> dict[str, Any]:
    from torch import nn

    from multiticket.adapters.toy import make_mlp
    from multiticket.core.enforce import MaskEnforcer
    from multiticket.core.mask import Mask

    def step_time(masked: bool) -> float:
        torch.manual_seed(0)
        net = make_mlp(1024, [4096, 4096, 4096], 1000).cuda()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        if masked:
            g = torch.Generator().manual_seed(0)
            mask = Mask(
                {
                    n: torch.rand(p.shape, generator=g) >= 0.8
                    for n, p in net.named_parameters()
                    if n.endswith("weight")
                }
            )
            MaskEnforcer(net, mask, grads="step").attach([opt])  # a plain loop: no clipping
        x = torch.randn(512, 1024, device="cuda")
        y = torch.randint(0, 1000, (512,), device="cuda")

        def step() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(10):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(100):
            step()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / 100

    med = medians(
        interleaved({"plain": lambda: step_time(False), "masked": lambda: step_time(True)}, max(repeats, 5))
    )
    return {
        "median_step_ms": {k: 1e3 * v for k, v in med.items()},
        "masked_vs_plain_throughput": med["plain"] / med["masked"],
    }


# -- main -------------------------------------------------------------------------------------


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    def get(section: str, key: str, fmt: str = "{:.3f}x") -> str:
        r = results.get(section, {})
        if "skipped" in r:
            return f"skipped: {r['skipped']}"
        return fmt.format(r[key]) if key in r else "n/a"

    rows = [
        ("masking (toy)", "enforcer / plain step time", get("masking", "enforcer_vs_plain")),
        ("masking (toy)", "enforcer, per-tensor hooks / plain", get("masking", "enforcer_hook_vs_plain")),
        ("masking (toy)", "torch prune / plain step time", get("masking", "torch_prune_vs_plain")),
        ("masking (toy)", "enforcer / torch prune step time", get("masking", "enforcer_vs_torch_prune")),
        ("masking (SB3 PPO)", "masked / plain env-steps/s", get("rl", "masked_vs_plain")),
        ("masking (SB3 PPO)", "adapter / plain env-steps/s", get("rl", "adapter_vs_plain")),
        ("masking (SB3 PPO)", "masked / plain update time, same rollout buffer", get("rl", "update_masked_vs_plain")),
        ("masking (SB3 PPO)", "implied masked / plain env-steps/s", get("rl", "update_implied_vs_plain")),
        ("masking (HF Trainer)", "masked / plain steps/s, paired blocks", get("nlp", "masked_vs_plain_paired")),
        (
            "IMP bookkeeping (toy)",
            "% of level training time",
            get("bookkeeping_toy", "median_bookkeeping_pct", "{:.2f}%"),
        ),
        (
            "IMP bookkeeping (SB3 PPO)",
            "% of level training time",
            get("bookkeeping_sb3", "median_bookkeeping_pct", "{:.2f}%"),
        ),
        ("local scaling", "2 vs 1 workers throughput", get("local", "throughput_2_vs_1_workers")),
        ("local scaling", "2 workers vs in-process", get("local", "throughput_2_workers_vs_in_process")),
        ("Ray scaling", "2 vs 1 CPUs throughput", get("ray", "throughput_2_vs_1_cpus")),
        ("whole run (SB3 PPO)", "multiticket / plain loop, time per env-step", get("e2e", "rl_whole_run")),
        ("whole run (HF Trainer)", "multiticket / plain loop, time per step", get("e2e", "nlp_whole_run")),
        ("RL evaluation", "batched vs sequential speed-up", get("e2e", "eval_speedup")),
    ]
    gpu = results.get("gpu", {})
    if "skipped" in gpu or not gpu:
        rows.append(("GPU", "bf16 masked / plain", get("gpu", "device")))
        return rows
    for key, what in (
        ("mlp_bf16", "MLP"),
        ("trainer_bf16", "Trainer GPT-2"),
        ("trainer_bf16_compile", "Trainer GPT-2, compiled"),
    ):
        sub = gpu.get(key, {})
        ratio = sub.get("masked_vs_plain_throughput", sub.get("masked_vs_plain_paired"))
        value = sub.get("skipped", "n/a" if ratio is None else f"{ratio:.3f}x")
        rows.append((f"GPU bf16 ({gpu['device']})", f"{what}: masked / plain throughput", value))
    comp = gpu.get("trainer_bf16_compile", {})
    if "graphs_later_units" in comp:
        rows.append(
            (
                "GPU compile",
                "graphs compiled: dense unit / 6 later units (3 levels)",
                f"{comp['graphs_dense_unit']:.0f} / {comp['graphs_later_units']:.0f}",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench.json")
    parser.add_argument(
        "--skip", default="", help="comma-separated sections: masking,rl,nlp,bookkeeping,local,ray,e2e,gpu"
    )
    parser.add_argument("--e2e-args", default="--repeats 3 --steps 10000 --levels 2 --eval-speedup",
                        help="arguments of scripts/bench_e2e.py")
    parser.add_argument("--rl-args", default="--steps 8000 --repeats 3")
    parser.add_argument("--nlp-args", default="--steps 205 --repeats 3 --threads 1")
    parser.add_argument(
        "--scaling-steps",
        type=int,
        default=1000,
        help="toy training steps per unit in the local/ray scaling runs (12 units)",
    )
    args = parser.parse_args()
    SCALING_STEPS[0] = args.scaling_steps
    skip = set(filter(None, args.skip.split(",")))
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "torch": torch.__version__,
    }
    sections = {
        "masking": lambda: bench_masking(args.repeats),
        "rl": lambda: bench_script(
            "bench_rl",
            args.rl_args.split(),
            {
                "masked_vs_plain": r"masked/plain: ratio of medians [\d.]+x, median of paired ratios ([\d.]+)x",
                "adapter_vs_plain": r"adapter/plain: ratio of medians [\d.]+x, median of paired ratios ([\d.]+)x",
                "update_masked_vs_plain": r"masked/plain update time: ([\d.]+)x",
                "update_implied_vs_plain": r"implied masked/plain env-steps/s: ([\d.]+)x",
            },
        ),
        "nlp": lambda: bench_script("bench_nlp", args.nlp_args.split(), NLP_RATIOS),
        "bookkeeping_toy": lambda: bench_bookkeeping("toy"),
        "bookkeeping_sb3": lambda: bench_bookkeeping("sb3"),
        "local": lambda: bench_local(args.repeats),
        "ray": lambda: bench_ray(args.repeats),
        "e2e": lambda: bench_e2e(args.e2e_args.split()),
        "gpu": lambda: bench_gpu(args.repeats),
    }
    for name, fn in sections.items():
        if name in skip or name.split("_")[0] in skip:
            results[name] = {"skipped": "--skip"}
            continue
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
            results[name] = {"skipped": f"{type(exc).__name__}: {exc}"[:300]}
        print(f"[bench] {name} done in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    results["load_after"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(results, indent=1, default=str) + "\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"multiticket benchmarks ({os.cpu_count()} CPUs, load {results['load_before'][0]:.1f} "
        f"-> {results['load_after'][0]:.1f})"
    )
    for col in ("benchmark", "measure", "result"):
        table.add_column(col)
    for row in table_rows(results):
        table.add_row(*row)
    Console().print(table)
    print(args.out)


if __name__ == "__main__":
    main()
