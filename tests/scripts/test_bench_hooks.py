"""The benchmark scripts drive the adapters with their own TrainHooks: they must implement the
whole protocol, or the benchmark dies at the first hook the adapters gained since (as happened)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from multiticket.core.adapter import TrainHooks

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _protocol_members() -> set[str]:
    return {n for n in (*vars(TrainHooks), *TrainHooks.__annotations__) if not n.startswith("_")}


@pytest.mark.parametrize(("module", "cls", "needs"), [
    ("bench_rl", "NoHooks", "stable_baselines3"), ("bench_nlp", "Timer", "transformers")])
def test_benchmark_hooks_implement_the_whole_protocol(module: str, cls: str, needs: str) -> None:
    pytest.importorskip(needs)
    sys.path.insert(0, str(SCRIPTS))
    try:
        hooks = getattr(__import__(module), cls)
    finally:
        sys.path.remove(str(SCRIPTS))
    missing = sorted(m for m in _protocol_members() if not hasattr(hooks, m))
    assert not missing, f"{module}.{cls} lacks {missing}"
    assert {"on_optimizers", "on_step", "on_resumable", "should_stop"} <= _protocol_members()


def test_rl_update_phase_measures_both_variants_on_one_buffer() -> None:
    pytest.importorskip("stable_baselines3")
    sys.path.insert(0, str(SCRIPTS))
    try:
        from bench_rl import update_phase
    finally:
        sys.path.remove(str(SCRIPTS))
    u = update_phase(rounds=2, sparsity=0.8)
    assert min(u["rollout"], u["plain"], u["masked"]) > 0
    assert 0.5 < u["update_ratio"] < 2 and 0.5 < u["throughput_ratio"] < 2


def test_nlp_benchmark_prints_what_bench_py_parses() -> None:
    """bench_nlp.py end to end on a tiny budget: both ratios, and the compiled-graph counts of a
    3-unit IMP run (aot_eager: dynamo traces, nothing is generated) -- only the dense unit compiles."""
    pytest.importorskip("transformers")
    sys.path.insert(0, str(SCRIPTS))
    try:
        from bench import NLP_RATIOS, bench_script
    finally:
        sys.path.remove(str(SCRIPTS))
    args = "--steps 5 --warmup 1 --block 2 --repeats 1 --compile --compile-backend aot_eager --recompile-levels 1"
    out = bench_script("bench_nlp", args.split(), {
        **NLP_RATIOS, "dense": r"in the dense unit: (\d+)", "later": r"in the 2 later units: (\d+)"})
    assert "skipped" not in out, out["output_tail"]
    # one pair of 2-step blocks: the paired ratio is the ratio (its size means nothing here)
    assert out["masked_vs_plain"] > 0 and out["masked_vs_plain_paired"] == out["masked_vs_plain"]
    assert out["dense"] > 0 and out["later"] == 0


def test_nlp_timer_alternates_masked_and_plain_blocks() -> None:
    """bench_nlp's block interleaving: the enforcer is attached exactly in the masked blocks, and
    each block's time lands under its own variant."""
    pytest.importorskip("transformers")
    import torch
    from torch import nn

    from multiticket.core.enforce import MaskEnforcer
    from multiticket.core.mask import Mask

    sys.path.insert(0, str(SCRIPTS))
    try:
        from bench_nlp import Timer
    finally:
        sys.path.remove(str(SCRIPTS))
    net = nn.Linear(4, 4)
    enforcer = MaskEnforcer(net, Mask({"weight": torch.rand(4, 4) > 0.5}))
    timer = Timer(enforcer, warmup=2, last=12, cuda=False, block=2, toggle=True)
    timer.on_optimizers([torch.optim.SGD(net.parameters(), lr=0.1)])
    attached = []
    for step in range(1, 13):
        timer.on_step(step)
        attached.append(enforcer.attached)
    assert attached == [False, False, False, True, True, False, False, True, True, False, False, True]
    assert len(timer.per_step["plain"]) == 3 and len(timer.per_step["masked"]) == 2
