"""The seeded order the HF adapter reads training examples in.

A fixed order per seed (epoch permutations of the training split), independent of where a level
starts, so that a level starting at the rewind step k reads from batch k on, exactly as the dense
run did; the Trainer reads it through a SequentialSampler, drawing no randomness of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def train_order(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """Example indices of the first ``steps`` batches: concatenated seeded epoch permutations.
    Independent of where a level starts, so batch i is the same in every level of a seed."""
    rng = np.random.default_rng(seed)
    need = steps * batch_size
    chunks = [rng.permutation(n) for _ in range(-(-need // n))]
    return np.concatenate(chunks)[:need] if chunks else np.zeros(0, dtype=np.int64)


class Ordered(torch.utils.data.Dataset):
    """Map-style view of ``examples`` in a fixed order (read with a SequentialSampler)."""

    def __init__(self, examples: list[dict[str, Any]], order: np.ndarray) -> None:
        self.examples, self.order = examples, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.examples[int(self.order[i])]
