"""The sign-flip test and its interval, against first principles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from multiticket.analysis.paired import EXACT_MAX, MIN_INTERVAL_SEEDS, paired, seeds_needed, sign_flip_p


def _brute_force_p(d: list[float]) -> float:
    """The share of the 2^n sign patterns whose sum reaches the observed one, by enumeration."""
    observed = sum(d)
    sums = [sum(s * x for s, x in zip(signs, d)) for signs in itertools.product((1, -1), repeat=len(d))]
    return sum(v >= observed - 1e-12 for v in sums) / len(sums)


@pytest.mark.parametrize("d", [[1.0], [2.0, -1.0], [3.0, 1.0, -0.5], [1.0, 2.0, 3.0, 4.0, 5.0],
                               [0.5, -0.2, 0.1, 0.0, 0.3, -0.4, 0.9], [1.0, 1.0, 1.0, -1.0, -1.0]])
def test_sign_flip_p_equals_the_enumeration(d):
    assert sign_flip_p(d) == pytest.approx(_brute_force_p(d), abs=1e-12)


def test_the_smallest_p_is_two_to_the_minus_n_so_five_seeds_are_needed():
    for n in range(1, 9):
        assert sign_flip_p([1.0] * n) == pytest.approx(2.0**-n)
    assert seeds_needed(0.05) == 5 and seeds_needed(0.05 / 8) == 8 and seeds_needed(0.05 / 2) == 6
    assert seeds_needed(0.5) == 1 and seeds_needed(0.25) == 2


def test_monte_carlo_above_the_exact_limit_is_valid_and_reproducible():
    d = list(np.linspace(-0.5, 1.5, EXACT_MAX + 4))
    p = sign_flip_p(d)
    assert p == sign_flip_p(d) and 0 < p < 0.05
    assert sign_flip_p([1.0] * (EXACT_MAX + 4)) > 0  # (1 + hits) / (1 + draws): never 0


def test_paired_follows_the_metric_direction_and_pairs_by_seed():
    ticket = {0: 10.0, 1: 11.0, 2: 12.0, 3: 13.0, 4: 14.0, 9: 99.0}
    control = {s: v - 1.0 for s, v in ticket.items() if s != 9}
    up = paired(ticket, control, higher_is_better=True)
    assert up.seeds == (0, 1, 2, 3, 4) and up.diffs == (1.0,) * 5  # seed 9 has no control: not paired
    assert up.p_better == pytest.approx(1 / 32) and up.p_worse == pytest.approx(1.0)
    down = paired(ticket, control, higher_is_better=False)  # a loss: the ticket is worse
    assert down.p_worse == pytest.approx(1 / 32) and down.p_better == pytest.approx(1.0)
    assert up.ticket == pytest.approx(np.mean(list(ticket.values()))) and up.n_ticket == 6
    assert paired({}, control) is None


def test_the_bca_interval_only_from_five_seeds():
    few = paired({s: float(s) for s in range(MIN_INTERVAL_SEEDS - 1)}, {s: 0.0 for s in range(4)})
    assert not few.has_interval and "no interval below 5 seeds" in few.interval_text(str)
    rng = np.random.default_rng(3)
    d = rng.normal(1.0, 1.0, size=12)
    five = paired({s: float(x) for s, x in enumerate(d)}, {s: 0.0 for s in range(12)})
    assert five.has_interval and five.low < float(np.mean(d)) < five.high
    assert five == paired({s: float(x) for s, x in enumerate(d)}, {s: 0.0 for s in range(12)})  # fixed RNG
    flat = paired({s: 1.0 for s in range(6)}, {s: 0.0 for s in range(6)})
    assert not flat.has_interval and math.isclose(flat.diff, 1.0)
