"""Masking overhead on the toy MLP: plain vs multiticket's enforcer vs torch.nn.utils.prune.

``enforcer`` masks gradients the way the toy adapter does (``ToyAdapter.grad_masking``: one fused
op right before the step, its loop reads no gradient in between); ``enforcer_hook`` with the
per-tensor hooks that loops the adapter does not own (SB3, the HF Trainer) need. The variants train the same network on the same batches, side by side in one process,
taking turns every ``--block`` steps (the order alternating) so drift in machine load hits all of
them alike; the ratios are medians of the per-round ratios to plain. Target: enforcer <= 1.03x
plain (>= 0.97x its throughput), and faster than prune.

    .venv/bin/python scripts/bench_masking.py [--rounds 60] [--block 50] [--hidden 128,64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from multiticket.adapters.toy import ToyAdapter, ToySection, make_dataset, make_mlp
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.mask import Mask


def _mask(net: nn.Module, sparsity: float) -> Mask:
    g = torch.Generator().manual_seed(0)
    return Mask({n: torch.rand(p.shape, generator=g) >= sparsity for n, p in net.named_parameters() if n.endswith("weight")})


VARIANTS = ("plain", "enforcer", "enforcer_hook", "torch_prune")


def make_step(variant: str, cfg: ToySection, sparsity: float) -> Callable[[int], None]:
    """One training step of one variant (the same network, data and optimizer for all)."""
    torch.manual_seed(0)
    net = make_mlp(cfg.n_features, cfg.hidden, cfg.n_classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    mask = _mask(net, sparsity)
    if variant == "enforcer":
        MaskEnforcer(net, mask, grads=ToyAdapter.grad_masking).attach([opt])
    elif variant == "enforcer_hook":
        MaskEnforcer(net, mask, grads="hook").attach([opt])
    elif variant == "torch_prune":
        modules = dict(net.named_modules())
        for name, m in mask.items():
            torch_prune.custom_from_mask(modules[name.rsplit(".", 1)[0]], "weight", m)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)  # prune re-registers weight_orig
    x, y, _, _ = make_dataset(cfg)
    loss_fn = nn.CrossEntropyLoss()
    b = cfg.batch_size
    n_batches = x.shape[0] // b

    def step(i: int) -> None:
        j = i % n_batches
        loss = loss_fn(net(x[j * b:(j + 1) * b]), y[j * b:(j + 1) * b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def interleaved_step_times(cfg: ToySection, sparsity: float, rounds: int, block: int = 50) -> dict[str, list[float]]:
    """Seconds per step of every variant, block by block: the variants live side by side and take
    turns every ``block`` steps (order alternating), so drift in machine load hits each alike;
    compare them with :func:`paired_ratio`."""
    steps = {v: make_step(v, cfg, sparsity) for v in VARIANTS}
    for fn in steps.values():  # warm-up
        for i in range(20):
            fn(i)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for v in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            t0 = time.perf_counter()
            for i in range(r * block, (r + 1) * block):
                steps[v](i)
            times[v].append((time.perf_counter() - t0) / block)
    return times


def paired_ratio(times: dict[str, list[float]], variant: str, base: str = "plain") -> float:
    """Median over rounds of variant / base in the same round (robust to load drift)."""
    return statistics.median(a / b for a, b in zip(times[variant], times[base]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="blocks per variant")
    parser.add_argument("--block", type=int, default=50, help="steps per block")
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--hidden", default="128,64", help="hidden sizes of the toy MLP")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ToySection(hidden=[int(h) for h in args.hidden.split(",")])
    times = interleaved_step_times(cfg, args.sparsity, args.rounds, args.block)
    med = {v: statistics.median(t) for v, t in times.items()}
    result = {
        "hidden": cfg.hidden, "sparsity": args.sparsity, "rounds": args.rounds, "block": args.block,
        "median_step_ms": {v: round(1e3 * m, 4) for v, m in med.items()},
        "grad_masking": ToyAdapter.grad_masking,
        "enforcer_vs_plain": round(paired_ratio(times, "enforcer"), 4),
        "enforcer_hook_vs_plain": round(paired_ratio(times, "enforcer_hook"), 4),
        "torch_prune_vs_plain": round(paired_ratio(times, "torch_prune"), 4),
        "enforcer_vs_torch_prune": round(paired_ratio(times, "enforcer", "torch_prune"), 4),
    }
    for v in VARIANTS:
        print(f"{v:<12} median {1e3 * med[v]:.4f} ms/step  ({paired_ratio(times, v):.3f}x plain, paired)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
