"""A small CNN on scikit-learn's bundled 8x8 handwritten digits (1797 images, no download): the
worked example of ``domain: torch``. These four functions are all multiticket needs; see
docs/torch.md for their contract."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator

import torch
from torch import nn

N_TEST = 397  # the last images of a fixed shuffle; the other 1400 train


@functools.cache
def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): pixels scaled to [0, 1], one fixed shuffle (seed 0)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:-N_TEST], y[:-N_TEST], x[-N_TEST:], y[-N_TEST:]


def build_model(seed: int, args: dict) -> nn.Module:
    """The initial weights come from the global torch RNG, which multiticket has seeded with ``seed``."""
    channels, hidden = args.get("channels", 16), args.get("hidden", 64)
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * channels * 16, hidden), nn.ReLU(), nn.Linear(hidden, 10),
    )  # fmt: skip


def batches(seed: int, start: int, args: dict) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batch of every step from ``start`` on. Each epoch is a permutation drawn from its own
    generator seeded by (seed, epoch), so the batches from any step are the same whether training
    began at 0 or rewound to ``start``."""
    x, y, _, _ = _data()
    size = args.get("batch_size", 32)
    per_epoch = len(y) // size
    for step in itertools.count(start):
        epoch, pos = divmod(step, per_epoch)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        idx = perm[pos * size : (pos + 1) * size]
        yield x[idx], y[idx]


def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    images, labels = batch
    return nn.functional.cross_entropy(model(images), labels)


def evaluate(model: nn.Module, args: dict) -> dict[str, float]:
    """Accuracy and loss on the held-out images (multiticket calls it in eval mode, without grad)."""
    _, _, x, y = _data()
    device = next(model.parameters()).device
    logits = model(x.to(device))
    y = y.to(device)
    return {
        "accuracy": (logits.argmax(1) == y).float().mean().item(),
        "loss": nn.functional.cross_entropy(logits, y).item(),
    }
