"""Trainer throughput with and without an attached mask, and recompiles across IMP levels (not a test).

Trains the same model through ``HFAdapter.train`` -- the HF Trainer with the adapter's callback --
plain, and with an 80 %-sparse random mask kept exact by ``MaskEnforcer`` (the HF adapter's
gradient masking; weight re-zeroing only where the optimizer needs it). By default masked and
plain alternate every ``--block`` steps within one run (the enforcer attached and detached between
the timed spans), so the slow drifts of a shared machine hit both alike; ``--interleave runs``
alternates whole runs instead. The first ``--warmup`` steps are untimed (Trainer start-up and,
with ``--compile``, the compilation); on CUDA the device is synchronised before each clock read.
Reported: the median steps/s of each variant, and the median of the paired ratios (each masked
span against its plain neighbour). Target: masked >= 0.97x plain.

Presets:
- ``tiny-bert`` (default): 1.5M-parameter BERT, Rotten Tomatoes, batch 32 of 64 tokens (CPU).
- ``gpt2``: GPT-2 small (768 wide, 12 layers; BPE 8000), Austen blocks of 128 tokens, batch 32:
  a GPU-sized model.

``--recompile-levels N`` then runs the real IMP loop (the austen-gpt2 task, at GPT-2 small size
with the gpt2 preset; ``--steps`` per level, these device settings) for N pruned levels plus a
random-mask control, and prints how many graphs dynamo compiled in each unit: with ``--compile``
only the dense unit should compile anything.

    .venv/bin/python scripts/bench_nlp.py [--steps 205] [--block 10] [--repeats 3] [--sparsity 0.8]
    python scripts/bench_nlp.py --preset gpt2 --device cuda --bf16 [--compile] [--recompile-levels 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import types
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

from multiticket.adapters.hf import HFAdapter, NLPSection  # noqa: E402
from multiticket.core.enforce import MaskEnforcer  # noqa: E402
from multiticket.core.mask import Mask  # noqa: E402

GPT2_SMALL = {"n_embd": 768, "n_layer": 12, "n_head": 12}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny-bert": dict(
        task="classification", dataset="rotten_tomatoes", max_train_examples=4000, max_eval_examples=64,
        max_length=64, vocab_size=8000, batch_size=32,
    ),
    "gpt2": dict(
        task="causal_lm", dataset="austen", model="gpt2", model_args=GPT2_SMALL, tokenizer="train",
        max_eval_examples=64, max_length=128, vocab_size=8000, batch_size=32,
    ),
}  # fmt: skip


class Timer:
    """TrainHooks that times the steps after ``warmup`` in blocks of ``block`` steps.

    With ``toggle`` it attaches the enforcer for every other block and detaches it in between, so
    masked and plain blocks alternate within one run (drifting machine load hits both alike; the
    attach/detach itself happens between the timed spans). Without it the whole run is one block,
    masked if an enforcer is given (the caller attaches it)."""

    should_stop = False

    def __init__(self, enforcer: MaskEnforcer | None, warmup: int, last: int, cuda: bool, block: int = 0,
                 toggle: bool = False, start_masked: bool = False) -> None:  # fmt: skip
        self.enforcer, self.toggle = enforcer, toggle
        self.warmup, self.cuda = warmup, cuda
        self.block = block if toggle else last - warmup
        self.masked = start_masked if toggle else enforcer is not None
        self.optimizers: list[torch.optim.Optimizer] = []
        self.per_step: dict[str, list[float]] = {"plain": [], "masked": []}  # seconds, one per block
        self.t0: float | None = None

    def on_optimizers(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)
        if self.enforcer is not None and self.enforcer.attached:
            for opt in optimizers:
                self.enforcer.add_optimizer(opt)

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step(self, step: int, logs: dict[str, float] | None = None) -> None:
        if step < self.warmup or (step - self.warmup) % self.block:
            return
        now = self._now()
        if self.t0 is not None:
            self.per_step["masked" if self.masked else "plain"].append((now - self.t0) / self.block)
            if self.toggle:
                self.masked = not self.masked
        if self.toggle and self.enforcer is not None and self.masked != self.enforcer.attached:
            if self.masked:
                self.enforcer.attach(self.optimizers)
            else:
                self.enforcer.detach()
            now = self._now()
        self.t0 = now

    def on_resumable(self, step: int) -> None:
        pass


def device_settings(args: argparse.Namespace) -> dict[str, Any]:
    """This invocation's ``nlp:`` keys that do not change the model or the data."""
    return {
        "logging_steps": 1000, "bf16": args.bf16, "torch_compile": args.compile,
        "torch_compile_backend": args.compile_backend,
    }  # fmt: skip


def throughput(args: argparse.Namespace) -> None:
    section = NLPSection(**PRESETS[args.preset], **device_settings(args))
    task = types.SimpleNamespace(prune=types.SimpleNamespace(biases=False))
    adapter = HFAdapter(task, section, Path(tempfile.mkdtemp(prefix="bench_nlp_")), args.device)
    adapter.build(0)
    names = adapter.default_prunable()
    params = dict(adapter.module.named_parameters())
    gen = torch.Generator().manual_seed(0)
    mask = Mask({n: torch.rand(params[n].shape, generator=gen) >= args.sparsity for n in names})
    n_params = sum(p.numel() for p in adapter.module.parameters())
    print(f"{args.preset}: {n_params / 1e6:.2f}M parameters, {len(names)} masked tensors, sparsity "
          f"{mask.sparsity:.3f}, device {args.device}, bf16 {args.bf16}, compile {args.compile}, "
          f"{args.threads} threads, {args.steps} steps per run ({args.warmup} untimed)")  # fmt: skip
    pairs: list[float] = []  # plain / masked seconds per step of neighbouring spans
    seconds: dict[str, list[float]] = {"plain": [], "masked": []}
    cuda = args.device.startswith("cuda")
    for r in range(args.repeats):
        if args.interleave == "blocks":
            adapter.build(0)
            enforcer = MaskEnforcer(adapter.module, mask, grads=HFAdapter.grad_masking)
            timer = Timer(enforcer, args.warmup, args.steps, cuda, args.block, toggle=True, start_masked=r % 2 == 1)
            adapter.train(0, args.steps, timer)
            enforcer.detach()
            spans = timer.per_step
        else:
            spans = {k: [] for k in seconds}
            for kind in ("plain", "masked") if r % 2 == 0 else ("masked", "plain"):
                adapter.build(0)
                enforcer = None
                if kind == "masked":
                    enforcer = MaskEnforcer(adapter.module, mask, grads=HFAdapter.grad_masking).attach()
                timer = Timer(enforcer, args.warmup, args.steps, cuda)
                adapter.train(0, args.steps, timer)
                if enforcer is not None:
                    enforcer.detach()
                for k in seconds:
                    spans[k] += timer.per_step[k]
        for k in seconds:
            seconds[k] += spans[k]
        pairs += [p / m for p, m in zip(spans["plain"], spans["masked"])]
        print(f"  repeat {r}: plain {1 / statistics.median(spans['plain']):.2f} steps/s, masked "
              f"{1 / statistics.median(spans['masked']):.2f} steps/s", flush=True)  # fmt: skip
    plain, masked = 1 / statistics.median(seconds["plain"]), 1 / statistics.median(seconds["masked"])
    print(f"{len(pairs)} pairs of {'blocks' if args.interleave == 'blocks' else 'runs'}; median steps/s: plain "
          f"{plain:.2f}, masked {masked:.2f}, ratio {masked / plain:.3f}; median of paired ratios "
          f"{statistics.median(pairs):.3f} (target >= 0.97)")  # fmt: skip


def recompiles(args: argparse.Namespace, levels: int) -> None:
    """Graphs dynamo compiles in each unit of a real IMP run (in this process)."""
    from torch._dynamo.utils import counters

    from multiticket.config import load_task
    from multiticket.core import train as train_mod
    from multiticket.launch import LaunchOptions, run_tasks
    from multiticket.paths import TASKS_DIR

    # the austen-gpt2 task as shipped (tiny GPT-2), or at GPT-2 small size with the gpt2 preset
    section = {**(PRESETS["gpt2"] if args.preset == "gpt2" else {}), **device_settings(args)}
    overrides = [f"nlp.{k}={json.dumps(v)}" for k, v in section.items()]  # JSON is YAML
    task = load_task(
        TASKS_DIR / "austen-gpt2.yaml",
        [*overrides, f"train.steps={args.steps}", "rewind.step=2", "controls=[random_mask]"],
        seeds=[0],
        levels=levels,
    )
    torch._dynamo.reset()  # forget the throughput runs' graphs: the dense unit compiles afresh
    compiled: dict[str, int] = {}
    train_unit = train_mod.train_unit

    def counting(adapter: Any, job: Any, *a: Any, **k: Any) -> Any:
        before, t0 = counters["stats"]["unique_graphs"], time.perf_counter()
        out = train_unit(adapter, job, *a, **k)
        key = f"{job.unit.control}/{job.unit.level}"
        compiled[key] = counters["stats"]["unique_graphs"] - before
        print(f"  {key}: {compiled[key]} graphs compiled, {time.perf_counter() - t0:.1f}s", flush=True)
        return out

    train_mod.train_unit = counting  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run_tasks([task], Path(tmp), LaunchOptions(workers=1, device=args.device))
    finally:
        train_mod.train_unit = train_unit  # type: ignore[assignment]
    after_dense = sum(v for k, v in compiled.items() if k != "ticket/0")
    print(f"graphs compiled in the dense unit: {compiled.get('ticket/0', 0)}; "
          f"in the {len(compiled) - 1} later units: {after_dense}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny-bert")
    ap.add_argument("--steps", type=int, default=205)
    ap.add_argument("--warmup", type=int, default=5, help="steps excluded from the timing (compilation)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--interleave",
        choices=("blocks", "runs"),
        default="blocks",
        help="alternate masked and plain every --block steps of one run, or whole runs",
    )
    ap.add_argument("--block", type=int, default=10, help="steps per block (--interleave blocks)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="torch.compile through the Trainer")
    ap.add_argument("--compile-backend", default="inductor", help="with --compile ('aot_eager': no codegen)")
    ap.add_argument("--recompile-levels", type=int, default=0, help="then count compiled graphs over N levels")
    args = ap.parse_args()
    if not 0 < args.warmup < args.steps:
        ap.error("--warmup: must be between 0 and --steps")
    if args.interleave == "blocks" and args.steps - args.warmup < 2 * args.block:
        ap.error("--block: --steps minus --warmup must hold at least two blocks")
    torch.set_num_threads(args.threads)
    if args.repeats > 0:
        throughput(args)
    if args.recompile_levels > 0:
        recompiles(args, args.recompile_levels)


if __name__ == "__main__":
    main()
