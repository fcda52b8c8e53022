"""Trainer throughput with and without an attached mask (not a test).

Trains the same tiny BERT (rotten_tomatoes, batch 32, length 64) through ``HFAdapter.train`` --
the HF Trainer with the adapter's callback -- plain, and with an 80 %-sparse random mask kept
exact by ``MaskEnforcer`` (gradient hooks + optimizer step post-hooks). Runs are interleaved
(plain, masked, plain, ...) so drifting machine load hits both alike; steps/s is timed between
the first and the last ``on_step`` of a run (Trainer construction excluded); the median of
``--repeats`` runs is reported. Target: masked >= 0.97x plain.

    .venv/bin/python scripts/bench_nlp.py [--steps 60] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

from multiticket.adapters.hf import HFAdapter, NLPSection  # noqa: E402
from multiticket.core.enforce import MaskEnforcer  # noqa: E402
from multiticket.core.mask import Mask  # noqa: E402


class Timer:
    """TrainHooks that attaches an optional enforcer and timestamps every step."""

    should_stop = False

    def __init__(self, enforcer: MaskEnforcer | None) -> None:
        self.enforcer = enforcer
        self.times: list[float] = []

    def on_optimizers(self, optimizers: list[torch.optim.Optimizer]) -> None:
        if self.enforcer is not None:
            for opt in optimizers:
                self.enforcer.add_optimizer(opt)

    def on_step(self, step: int, logs: dict[str, float] | None = None) -> None:
        self.times.append(time.perf_counter())

    def on_resumable(self, step: int) -> None:
        pass

    def steps_per_s(self) -> float:
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sparsity", type=float, default=0.8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    section = NLPSection(
        task="classification", dataset="rotten_tomatoes", max_train_examples=4000, max_eval_examples=64,
        max_length=64, vocab_size=8000, batch_size=32, logging_steps=1000,
    )  # fmt: skip
    task = types.SimpleNamespace(prune=types.SimpleNamespace(biases=False))
    adapter = HFAdapter(task, section, Path(tempfile.mkdtemp(prefix="bench_nlp_")))
    adapter.build(0)
    names = adapter.default_prunable()
    params = dict(adapter.module.named_parameters())
    gen = torch.Generator().manual_seed(0)
    mask = Mask({n: torch.rand(params[n].shape, generator=gen) >= args.sparsity for n in names})
    n_params = sum(p.numel() for p in adapter.module.parameters())
    print(f"tiny BERT: {n_params / 1e6:.2f}M parameters, {len(names)} masked tensors, "
          f"sparsity {mask.sparsity:.3f}, {args.threads} threads, {args.steps} steps per run")  # fmt: skip
    rates: dict[str, list[float]] = {"plain": [], "masked": []}
    for r in range(args.repeats):
        for kind in ("plain", "masked"):
            adapter.build(0)
            enforcer = MaskEnforcer(adapter.module, mask).attach() if kind == "masked" else None
            timer = Timer(enforcer)
            adapter.train(0, args.steps, timer)
            if enforcer is not None:
                enforcer.detach()
            rates[kind].append(timer.steps_per_s())
            print(f"  repeat {r} {kind:6s} {rates[kind][-1]:.2f} steps/s", flush=True)
    plain, masked = statistics.median(rates["plain"]), statistics.median(rates["masked"])
    print(f"median steps/s: plain {plain:.2f}, masked {masked:.2f}, ratio {masked / plain:.3f} (target >= 0.97)")


if __name__ == "__main__":
    main()
