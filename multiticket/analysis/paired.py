"""Ticket against one control at one level, paired by seed: the sign-flip test and its interval.

A training seed fixes the data order and the evaluation episodes that a ticket and its controls
share, so the evidence is the per-seed difference d_s = ticket_s − control_s. Under the null
(the ticket is no better than the control) each d_s is as likely positive as negative, so every
one of the 2^n sign patterns of the observed |d_s| is equally likely: the one-sided p-value is the
fraction of patterns whose sum is at least the observed one (an exact permutation test, Fisher's
sign-flip; exact at any n, no normality assumed). Its smallest possible value is 2^-n, so with
n seeds no test can reject below that: 5 seeds for p < 0.05 (:func:`seeds_needed`). Above
:data:`EXACT_MAX` seeds the patterns are sampled (a fixed generator, p = (1 + hits) / (1 + draws),
which keeps the test valid).

The interval is scipy's BCa bootstrap interval of the mean per-seed difference, given from
:data:`MIN_INTERVAL_SEEDS` seeds on (below that a bootstrap interval is little more than the
range of the differences) and labelled by what it is. The verdicts never read the interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: one-sided significance level of every verdict
ALPHA = 0.05
#: seeds up to which every sign pattern is enumerated (2^16 patterns)
EXACT_MAX = 16
#: sampled sign patterns above EXACT_MAX seeds, and their generator's seed (reports are reproducible)
MONTE_CARLO_DRAWS = 20_000
MONTE_CARLO_SEED = 0
#: the interval: BCa bootstrap, from this many paired seeds on
MIN_INTERVAL_SEEDS = 5
INTERVAL_RESAMPLES = 9_999
INTERVAL_LABEL = "BCa bootstrap 95 % interval of the mean per-seed difference (scipy.stats.bootstrap)"
TEST_NAME = "one-sided exact sign-flip permutation test on the per-seed differences"


def seeds_needed(alpha: float = ALPHA) -> int:
    """The fewest paired seeds with which a sign-flip test can reject at ``alpha`` (2^-n ≤ alpha)."""
    return max(1, math.ceil(math.log2(1.0 / alpha) - 1e-12))


@lru_cache(maxsize=EXACT_MAX + 1)
def _patterns(n: int) -> np.ndarray:
    """Every sign pattern of n values, as a (2^n, n) array of ±1."""
    bits = (np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)) & 1
    return (1 - 2 * bits).astype(float)


def sign_flip_p(d: np.ndarray | list[float]) -> float:
    """One-sided p-value of "the differences ``d`` are centred above 0": the share of sign
    patterns (all of them up to :data:`EXACT_MAX` values, else a fixed sample) whose sum is at
    least the observed sum. 1.0 for no values."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n == 0:
        return 1.0
    observed = float(d.sum())
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))  # sums equal up to rounding count as at least
    if n <= EXACT_MAX:
        sums = _patterns(n) @ d
        return float(np.mean(sums >= observed - tol))
    rng = np.random.default_rng(MONTE_CARLO_SEED)
    sums = rng.choice(np.array([-1.0, 1.0]), size=(MONTE_CARLO_DRAWS, n)) @ d
    return float((1 + np.sum(sums >= observed - tol)) / (1 + MONTE_CARLO_DRAWS))


def bca_interval(d: np.ndarray) -> tuple[float, float] | None:
    """BCa 95 % interval of the mean of ``d`` (None below :data:`MIN_INTERVAL_SEEDS` values, or
    when the bootstrap distribution is degenerate: every difference equal)."""
    if len(d) < MIN_INTERVAL_SEEDS or float(np.ptp(d)) == 0.0:
        return None
    from scipy.stats import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap((d,), np.mean, confidence_level=0.95, method="BCa", n_resamples=INTERVAL_RESAMPLES,
                        rng=np.random.default_rng(0))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return None if math.isnan(low) or math.isnan(high) else (low, high)


@dataclass(frozen=True)
class Paired:
    """Ticket − control at one level. ``ticket``/``control``: means over each side's seeds;
    ``diffs``: ticket − control per seed both have (``seeds``); ``p_better``/``p_worse``: the
    one-sided sign-flip p-values that the ticket is better / worse in the metric's direction
    (None without a common seed); ``low``/``high``: :data:`INTERVAL_LABEL` (None below
    :data:`MIN_INTERVAL_SEEDS` common seeds)."""

    ticket: float
    control: float
    n_ticket: int
    n_control: int
    seeds: tuple[int, ...]
    diffs: tuple[float, ...]
    p_better: float | None
    p_worse: float | None
    low: float | None = None
    high: float | None = None

    @property
    def n(self) -> int:
        """Seeds the test pairs (both sides finished)."""
        return len(self.seeds)

    @property
    def diff(self) -> float:
        """Mean(ticket) − mean(control) over each side's own seeds."""
        return self.ticket - self.control

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def interval_text(self, fmt: Callable[[float | None], str]) -> str:
        """'[low, high]' formatted by ``fmt``, or why there is none."""
        if self.has_interval:
            return f"[{fmt(self.low)}, {fmt(self.high)}]"
        if self.n < MIN_INTERVAL_SEEDS:
            return f"n={self.n}: no interval below {MIN_INTERVAL_SEEDS} seeds"
        return "no interval (every difference equal)"


def paired(ticket: dict[int, float], control: dict[int, float], higher_is_better: bool = True,
           interval: bool = True) -> Paired | None:
    """Ticket − control paired by seed, with the sign-flip p-values in the metric's direction
    (``higher_is_better``) and (``interval``) the BCa interval; None when either side has no value."""
    if not ticket or not control:
        return None
    seeds = tuple(sorted(set(ticket) & set(control)))
    d = np.array([ticket[s] - control[s] for s in seeds], dtype=float)
    signed = d if higher_is_better else -d
    bounds = bca_interval(d) if interval else None
    return Paired(
        ticket=float(np.mean(list(ticket.values()))), control=float(np.mean(list(control.values()))),
        n_ticket=len(ticket), n_control=len(control), seeds=seeds, diffs=tuple(float(x) for x in d),
        p_better=sign_flip_p(signed) if seeds else None, p_worse=sign_flip_p(-signed) if seeds else None,
        low=None if bounds is None else bounds[0], high=None if bounds is None else bounds[1],
    )
