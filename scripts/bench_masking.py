"""Masking overhead on the toy MLP: plain vs multiticket's enforcer vs torch.nn.utils.prune.

The three variants train the same network on the same batches, interleaved (the order rotates
each repeat) so drift in machine load hits all of them alike; the median step time of each is
reported with the ratios to plain. Target: enforcer <= 1.03x plain, and faster than prune.

    .venv/bin/python scripts/bench_masking.py [--repeats 7] [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from multiticket.adapters.toy import ToySection, make_dataset, make_mlp
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.mask import Mask


def _mask(net: nn.Module, sparsity: float) -> Mask:
    g = torch.Generator().manual_seed(0)
    return Mask({n: torch.rand(p.shape, generator=g) >= sparsity for n, p in net.named_parameters() if n.endswith("weight")})


def time_variant(variant: str, steps: int, cfg: ToySection, sparsity: float) -> float:
    """Seconds per training step of one variant (after a short warm-up)."""
    torch.manual_seed(0)
    net = make_mlp(cfg.n_features, cfg.hidden, cfg.n_classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    mask = _mask(net, sparsity)
    if variant == "enforcer":
        MaskEnforcer(net, mask).attach([opt])
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

    for i in range(20):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--hidden", default="128,64", help="hidden sizes of the toy MLP")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ToySection(hidden=[int(h) for h in args.hidden.split(",")])
    variants = ["plain", "enforcer", "torch_prune"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.repeats):
        order = variants[r % 3:] + variants[:r % 3]
        for v in order:
            times[v].append(time_variant(v, args.steps, cfg, args.sparsity))
    med = {v: statistics.median(t) for v, t in times.items()}
    result = {
        "hidden": cfg.hidden, "sparsity": args.sparsity, "repeats": args.repeats, "steps": args.steps,
        "median_step_ms": {v: round(1e3 * m, 4) for v, m in med.items()},
        "enforcer_vs_plain": round(med["enforcer"] / med["plain"], 4),
        "torch_prune_vs_plain": round(med["torch_prune"] / med["plain"], 4),
        "enforcer_vs_torch_prune": round(med["enforcer"] / med["torch_prune"], 4),
    }
    for v in variants:
        print(f"{v:<12} median {1e3 * med[v]:.4f} ms/step  ({med[v] / med['plain']:.3f}x plain)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
