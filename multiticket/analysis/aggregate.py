"""Aggregates across seeds and runs, as Agarwal et al. 2021 ("Deep RL at the Edge of the
Statistical Precipice") recommend for few-seed comparisons: the interquartile mean (IQM) with
stratified-bootstrap 95 % intervals, and the probability of improvement of the ticket over the
best random control, both from ``rliable``.

Scores: each unit's metric on the baseline-anchored scale (0 = the run's trivial baseline, 1 =
dense, :func:`multiticket.analysis.stats.anchor`) when every run measured a baseline, else
relative to dense (:func:`multiticket.analysis.stats.normalise`), so that runs of different tasks
and domains share one scale. A *task* is one run directory; its *runs* (rliable's word) are its
seeds. Within a sparsity band a seed's score is its mean over the run's levels in that band, and
the random control is the band's best by the mean (so this aggregate favours the control). rliable
needs the same number of seeds per task: the first n seeds every run has are used, and the
table says n. Below ``MIN_INTERVAL_SEEDS`` seeds per run it gives the point estimates only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from multiticket.analysis import degenerate as D
from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import anchor, better, normalise

#: (label, lowest sparsity, highest sparsity): the bands the aggregates are computed over
BANDS = (("< 50 %", 0.0, 0.5), ("50–80 %", 0.5, 0.8), ("≥ 80 %", 0.8, 1.01))
REPS = 2000
SEED = 0
#: fewest seeds per run for which an interval is printed: the 5 the per-run verdict needs. Below it a
#: percentile bootstrap resamples 2-4 values per run, and calling its range a 95 % interval would
#: claim a coverage it does not have; the aggregate then gives point estimates only.
MIN_INTERVAL_SEEDS = 5


@dataclass(frozen=True)
class BandAggregate:
    """One sparsity band over several runs: IQMs and probability of improvement with intervals."""

    band: str
    tasks: int
    seeds: int
    iqm_ticket: tuple[float, float, float]
    iqm_random: tuple[float, float, float]
    p_improve: tuple[float, float, float]

    @property
    def has_intervals(self) -> bool:
        """Whether (low, high) of each triple are bootstrap intervals; NaN below MIN_INTERVAL_SEEDS."""
        return self.seeds >= MIN_INTERVAL_SEEDS


def _scorer(runs: list[RunData]) -> tuple[str, Any]:
    """The shared scale and a function (run, value) -> score on it."""
    anchors = {r.name: D.anchor_baseline(r) for r in runs}
    if all(a is not None for a in anchors.values()):
        def anchored(run: RunData, value: float) -> float:
            a = anchors[run.name]
            assert a is not None
            return anchor(value, run.dense, a[0], run.higher_is_better, a[2])
        return "baseline-anchored (0 = trivial baseline, 1 = dense)", anchored
    return "relative to dense (1 = dense)", lambda run, v: normalise(v, run.dense, run.higher_is_better)


def _band_scores(run: RunData, levels: list[int], seeds: list[int], score: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Per seed: the ticket's and the band's best random control's mean score over ``levels``."""
    def per_seed(control: str) -> np.ndarray | None:
        rows = []
        for s in seeds:
            vals = [run.values(control, lv).get(s) for lv in levels]
            if any(v is None for v in vals):
                return None
            rows.append(float(np.mean([score(run, v) for v in vals])))
        return np.array(rows)

    ticket = per_seed("ticket")
    best: np.ndarray | None = None
    for c in run.random_controls:
        cand = per_seed(c)
        if cand is not None and (best is None or better(float(cand.mean()), float(best.mean()), True)):
            best = cand
    if ticket is None or best is None or np.isnan(ticket).any() or np.isnan(best).any():
        return None
    return ticket, best


@contextmanager
def _seeded_global_numpy() -> Iterator[None]:
    """numpy's global generator at SEED, restored after. rliable's stratified bootstraps draw their
    resamples from ``np.random.choice`` and ignore the ``random_state`` they are given, so without
    this the same runs give intervals that differ in the second decimal from one call to the next."""
    saved = np.random.get_state()
    np.random.seed(SEED)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _points_only(band: str, tasks: int, seeds: int, ticket: np.ndarray, random: np.ndarray) -> BandAggregate:
    """The IQMs and the probability of improvement without intervals (too few seeds per run)."""
    import rliable.metrics as rm

    nan = float("nan")
    return BandAggregate(band, tasks, seeds, (float(rm.aggregate_iqm(ticket)), nan, nan),
                         (float(rm.aggregate_iqm(random)), nan, nan),
                         (float(rm.probability_of_improvement(ticket, random)), nan, nan))


def band_aggregates(runs: list[RunData]) -> tuple[str, list[BandAggregate]]:
    """(scale, one aggregate per band that at least one run reaches with ticket and random controls)."""
    import rliable.library as rly
    import rliable.metrics as rm

    scale, score = _scorer(runs)
    out = []
    for label, low, high in BANDS:
        found = []
        for run in runs:
            levels = [lv for lv in run.levels if lv > 0 and low <= run.sparsity[lv] < high]
            seeds = sorted(set.intersection(*[set(run.values("ticket", lv)) for lv in levels])) if levels else []
            if levels and seeds and not math.isnan(run.dense):
                found.append((run, levels, seeds))
        n = min((len(seeds) for _, _, seeds in found), default=0)
        pairs = [p for run, levels, seeds in found if (p := _band_scores(run, levels, seeds[:n], score)) is not None]
        if not pairs or n < 2:
            continue
        ticket = np.stack([t for t, _ in pairs], axis=1)  # (seeds, tasks)
        random = np.stack([r for _, r in pairs], axis=1)
        if n < MIN_INTERVAL_SEEDS:
            out.append(_points_only(label, len(pairs), n, ticket, random))
            continue
        state = np.random.RandomState(SEED)
        iqm = lambda x: np.array([rm.aggregate_iqm(x)])  # noqa: E731
        pi = lambda x, y: np.array([rm.probability_of_improvement(x, y)])  # noqa: E731
        with warnings.catch_warnings(), _seeded_global_numpy():  # arch's notice that RandomState is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            points, intervals = rly.get_interval_estimates({"ticket": ticket, "random": random}, iqm, reps=REPS,
                                                           random_state=state)
            p_points, p_intervals = rly.get_interval_estimates({"pi": [ticket, random]}, pi, reps=REPS,
                                                               random_state=state)

        def triple(points: dict, intervals: dict, key: str) -> tuple[float, float, float]:
            return float(points[key][0]), float(intervals[key][0][0]), float(intervals[key][1][0])

        out.append(BandAggregate(label, len(pairs), n, triple(points, intervals, "ticket"),
                                 triple(points, intervals, "random"), triple(p_points, p_intervals, "pi")))
    return scale, out
