"""What trivial predictors score on an NLP task, for the report's degenerate-result checks.

Computed from the same tokenised features the evaluation reads (:mod:`multiticket.adapters.hf.metrics`),
so each baseline is in the units of the metric it bounds: a classifier's accuracy against the
majority-class rate, a language model's perplexity against a unigram model's, over the very
tokens the model's perplexity averages over.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np


def majority_rate(examples: list[dict[str, Any]]) -> float:
    """Accuracy of always predicting the most frequent label of ``examples``."""
    counts = Counter(int(e["labels"]) for e in examples)
    return max(counts.values()) / len(examples)


def _predicted_tokens(block: list[int]) -> list[int]:
    """The tokens of a block a causal LM is scored on: every one after the first, labelled."""
    return [t for t in block[1:] if t != -100]


def unigram_counts(examples: Iterable[dict[str, Any]], vocab_size: int) -> np.ndarray:
    """Token counts over every token of the training blocks."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for e in examples:
        ids = np.asarray(e["input_ids"], dtype=np.int64)
        counts += np.bincount(ids[(ids >= 0) & (ids < vocab_size)], minlength=vocab_size)
    return counts


def unigram_perplexity(counts: np.ndarray, examples: list[dict[str, Any]]) -> float:
    """Perplexity on ``examples``' predicted tokens of the unigram model with add-one (Laplace)
    smoothing over the model's whole vocabulary: p(t) = (count(t) + 1) / (N + V), so every token
    the model could emit has a probability and the baseline is finite."""
    log_p = np.log(counts + 1.0) - math.log(float(counts.sum()) + len(counts))
    nll, n = 0.0, 0
    for e in examples:
        ids = np.asarray(_predicted_tokens(list(e["labels"])), dtype=np.int64)
        nll -= float(log_p[ids].sum())
        n += len(ids)
    return math.exp(min(nll / max(n, 1), 50.0))  # capped as lm_metrics caps the model's loss
