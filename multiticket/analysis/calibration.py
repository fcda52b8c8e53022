"""Simulated runs to check the verdicts' error rates: the per-level and per-run rates of a false
"won" under the null, and the power under a planted effect, through the very functions the report
uses (:func:`multiticket.analysis.paired.paired`, :func:`multiticket.analysis.verdicts.decide`).

Each simulated run has ``levels`` levels; at each, the ticket and every random control draw one
value per seed from N(0, 1), the ticket's shifted by ``effect`` (0: the null). The suite checks the
null rates (``tests/analysis/test_calibration.py``); ``scripts/calibrate_verdicts.py`` prints
the tables in docs/report.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multiticket.analysis.paired import paired
from multiticket.analysis.verdicts import LevelTest, decide


@dataclass(frozen=True)
class Rates:
    """Over the simulated runs: the share of levels won, of runs with any level won, and of runs
    with every level won."""

    per_level: float
    any_level: float
    all_levels: float
    runs: int


def simulate(runs: int, seeds: int, controls: int, levels: int = 8, effect: float = 0.0,
             correction: str = "sequence", seed: int = 0) -> Rates:
    """Rates of "won" over ``runs`` simulated runs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    sparsity = {lv: 1 - 0.8**lv for lv in range(1, levels + 1)}
    won_levels = any_won = all_won = 0
    for _ in range(runs):
        values = rng.normal(size=(controls + 1, levels, seeds))
        values[0] += effect
        tests = {}
        for lv in range(1, levels + 1):
            ticket = dict(enumerate(values[0, lv - 1]))
            comps = {f"c{c}": paired(ticket, dict(enumerate(values[c, lv - 1])), interval=False)
                     for c in range(1, controls + 1)}
            tests[lv] = LevelTest(lv, comps)  # type: ignore[arg-type]
        won = decide(tests, sparsity, correction).won
        won_levels += len(won)
        any_won += bool(won)
        all_won += len(won) == levels
    return Rates(won_levels / (runs * levels), any_won / runs, all_won / runs, runs)
