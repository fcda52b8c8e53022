"""Overhead of learning-curve recording: one unit trained with and without its CurveMonitor.

Whole runs vary by more than the 1 % this measures, so both sides run in one process on one
built adapter, alternating (on/off, then off/on, ...), each repeat training the same unit (the
dense level 0 of seed 0) from scratch; "on" includes formatting ``curve.csv``. No ``eval_every``:
evaluations during training cost what the task asks for and are not logging overhead. Each side is
timed twice: wall time, and the process's CPU time (``time.process_time``; single-threaded torch),
which other processes on a shared machine disturb less. On a loaded machine both still scatter by
several percent, so the "on" runs also time the curve code itself (every CurveMonitor call and the
file's formatting, :func:`attributed`) as a fraction of the unit's time: a bound that noise does
not blur (the adapters' collection of episode infos, one list comprehension per SB3 step, runs on
both sides and is not in it). Prints each pair's ratios on/off, the medians and that fraction. Usage::

    nice -n 5 python scripts/bench_curves.py [--repeats 5] [--rl-steps 8192] [--nlp-steps 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from multiticket.config import load_task
from multiticket.core.curves import Curve, CurveMonitor
from multiticket.core.imp import IMPRunner
from multiticket.core.recipe import resolve
from multiticket.core.store import RunStore, Unit
from multiticket.core.train import Phases, train_unit
from multiticket.domains import adapter_class
from multiticket.paths import TASKS_DIR

TINY_BERT = ["nlp.model_args={hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 128}",
             "nlp.max_train_examples=2000", "nlp.max_eval_examples=64", "nlp.max_length=64", "nlp.batch_size=16"]


#: seconds spent inside the curve code during the "on" runs (see :func:`attributed`)
SPENT = {"seconds": 0.0}


def attributed() -> None:
    """Time every CurveMonitor call point and Curve.csv_text into ``SPENT``."""
    def timed(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                SPENT["seconds"] += time.perf_counter() - t0
        return wrapper

    for name in ("on_start", "before_step", "on_logs", "after_step", "add_metrics", "state", "close"):
        setattr(CurveMonitor, name, timed(getattr(CurveMonitor, name)))
    Curve.csv_text = timed(Curve.csv_text)  # type: ignore[method-assign]


def unit_seconds(adapter: Any, job: Any, curve: bool) -> tuple[float, float]:
    """(wall, CPU) seconds of training (and evaluating) the unit once; with ``curve``, formatting
    its file too."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = train_unit(adapter, replace(job, curve=curve))
    if result.curve is not None:
        result.curve.csv_text()
    return time.perf_counter() - t0, time.process_time() - c0


def bench(name: str, task_file: Path, overrides: list[str], repeats: int) -> None:
    task = load_task(task_file, [*overrides, "controls=[]"], seeds=[0], levels=0)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = adapter_class(task.config.domain)(task.config, task.section, Path(tmp) / "cache", "cpu")
        runner = IMPRunner(task, adapter, RunStore(Path(tmp)))
        runner.prepare()
        recipe = resolve(Unit(0, "ticket", 0), runner.shape)
        job, _ = runner.job(recipe, runner.inputs.load(recipe, Phases()))
        unit_seconds(adapter, job, True)  # warm-up: caches, lazy imports
        wall, cpu, share = [], [], []
        for i in range(repeats):
            order = (True, False) if i % 2 == 0 else (False, True)
            times = {}
            for on in order:
                before = SPENT["seconds"]
                times[on] = unit_seconds(adapter, job, on)
                if on:
                    share.append((SPENT["seconds"] - before) / times[on][0])
            (w_on, c_on), (w_off, c_off) = times[True], times[False]
            wall.append(w_on / w_off)
            cpu.append(c_on / c_off)
            print(f"{name} pair {i + 1}: wall on {w_on:.3f}s off {w_off:.3f}s ratio {wall[-1]:.4f} | "
                  f"cpu on {c_on:.3f}s off {c_off:.3f}s ratio {cpu[-1]:.4f}", flush=True)
        for label, ratios in (("wall", wall), ("cpu", cpu)):
            print(f"{name}: median {label} ratio on/off {statistics.median(ratios):.4f} over {repeats} pairs "
                  f"(min {min(ratios):.4f}, max {max(ratios):.4f})", flush=True)
        print(f"{name}: curve code's share of an 'on' unit's wall time: median {100 * statistics.median(share):.3f} % "
              f"(max {100 * max(share):.3f} %)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rl-steps", type=int, default=8192)
    ap.add_argument("--nlp-steps", type=int, default=60)
    ap.add_argument("--only", choices=["rl", "nlp"])
    args = ap.parse_args()
    attributed()
    if args.only != "nlp":
        bench("sb3 cartpole-ppo", TASKS_DIR / "cartpole-ppo.yaml",
              [f"train.steps={args.rl_steps}", "rewind.step=256", "rl.tensorboard=false"], args.repeats)
    if args.only != "rl":
        bench("hf tiny-bert", TASKS_DIR / "rotten-tomatoes-bert.yaml",
              [f"train.steps={args.nlp_steps}", "rewind.step=2", *TINY_BERT], args.repeats)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
