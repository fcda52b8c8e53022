"""When the report may say the ticket *won* at a level: a test with a known error rate.

Per level and random control (every control whose spec's role is "random", built-in or
registered, :func:`multiticket.core.controls.role_of`), the ticket is compared with the control
by the one-sided exact sign-flip test on the per-seed differences (:mod:`multiticket.analysis.paired`).
A level's hypothesis "the ticket beats every random control" is an intersection-union test: it
is rejected only where the test against *each* random control rejects, so its p-value is the
largest of theirs and no correction across controls is needed. Across the levels of one run the
per-run rate of any false "won" is kept at or below α by one of two procedures
(``report.correction``):

- ``sequence`` (default): a fixed sequence declared before looking, from the deepest level to
  the shallowest; each level is tested at α and the sequence stops at the first level not won
  (or flagged degenerate). With the sign-flip test it needs 5 seeds (2^-5 < 0.05) whatever the
  number of levels, and the ticket is said to win "from the deepest level down to level L".
- ``holm``: Holm's step-down procedure over the m levels tested: any level can be won, but the
  smallest p must reach α/m, which needs log2(m/α) seeds: 8 seeds for 8 levels.

Where the seeds run cannot reach significance (2^-n > the level the procedure needs), the verdict
is "too few seeds", never computed. A flagged (degenerate) level is never won. The false-positive
rates under the null are checked by simulation in ``tests/analysis/test_calibration.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from multiticket.analysis.degenerate import level_flags
from multiticket.analysis.paired import ALPHA, TEST_NAME, Paired, paired, seeds_needed
from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import better

Correction = Literal["sequence", "holm"]
CORRECTIONS: dict[str, str] = {
    "sequence": "fixed sequence from the deepest level (each level at α, stopping at the first not won)",
    "holm": "Holm's step-down procedure over the levels tested",
}


@dataclass(frozen=True)
class LevelTest:
    """The ticket against the random controls at one level. ``p``: the intersection-union p-value
    (the largest one-sided p over the controls); ``n``: the fewest paired seeds among them;
    ``by_mean``: the ticket's mean beats every random control's."""

    level: int
    comparisons: dict[str, Paired]
    flagged: bool = False

    @property
    def controls(self) -> tuple[str, ...]:
        return tuple(self.comparisons)

    @property
    def n(self) -> int:
        return min(c.n for c in self.comparisons.values())

    @property
    def p(self) -> float:
        return max(1.0 if c.p_better is None else c.p_better for c in self.comparisons.values())


def level_test(run: RunData, level: int) -> LevelTest | None:
    """The level's test against every random control with a finished unit there (None when the
    ticket or every random control is missing, or the metric has no better direction)."""
    ticket = run.values("ticket", level)
    if not ticket or not run.judged:
        return None
    comps = {c: paired(ticket, run.values(c, level), run.higher_is_better, interval=False)
             for c in run.random_controls}  # the verdict reads p-values only: no bootstrap here
    found = {c: p for c, p in comps.items() if p is not None}
    return LevelTest(level, found, bool(level_flags(run, level))) if found else None


def by_mean(test: LevelTest, higher_is_better: bool) -> bool:
    return all(better(c.ticket, c.control, higher_is_better) for c in test.comparisons.values())


@dataclass(frozen=True)
class RunVerdict:
    """Which levels of one run view are won, under ``correction`` at one-sided ``alpha``.
    ``needed``: the fewest seeds with which that procedure can call any level won;
    ``order``: the levels in the order the procedure tested them."""

    correction: str
    alpha: float
    needed: int
    tests: dict[int, LevelTest]
    won: frozenset[int]
    order: tuple[int, ...] = ()
    higher_is_better: bool = True
    #: the level at which the procedure stopped (the first not won in its order), None if none
    stopped: int | None = None

    @property
    def state(self) -> str:
        """``none`` (no random control to judge by), ``too_few_seeds`` (no level has the seeds a
        win needs) or ``judged``."""
        if not self.tests:
            return "none"
        if all(t.n < self.needed for t in self.tests.values()):
            return "too_few_seeds"
        return "judged"

    def winning(self, level: int) -> bool | None:
        """True/False where the level was judged; None where it has no test or too few seeds."""
        test = self.tests.get(level)
        if test is None or test.n < self.needed:
            return None
        return level in self.won

    def seeds_run(self) -> int:
        return max((t.n for t in self.tests.values()), default=0)

    def method_text(self) -> str:
        return (f"{TEST_NAME} against every random control (intersection-union), one-sided α = "
                f"{self.alpha:g}, {CORRECTIONS[self.correction]}")


def step_down(tests: dict[int, LevelTest], order: tuple[int, ...], thresholds: list[float],
              needed: int) -> tuple[set[int], int | None]:
    """Walk ``order``: a level is won while its p reaches its threshold (and it has the seeds and
    is not flagged); the first that does not stops the walk. Returns (won, stopped-at)."""
    won: set[int] = set()
    for lv, threshold in zip(order, thresholds):
        t = tests[lv]
        if t.flagged or t.n < needed or t.p > threshold:
            return won, lv
        won.add(lv)
    return won, None


def decide(tests: dict[int, LevelTest], sparsity: dict[int, float], correction: str,
           alpha: float = ALPHA, higher_is_better: bool = True) -> RunVerdict:
    """The run's verdict from its level tests. ``sequence``: deepest level first, each at α;
    ``holm``: the i-th smallest p (from 0) at α / (m − i)."""
    m = len(tests)
    if correction == "holm":
        needed = seeds_needed(alpha / max(m, 1))
        order = tuple(sorted(tests, key=lambda lv: (1.0 if tests[lv].flagged else tests[lv].p, lv)))
        thresholds = [alpha / (m - i) for i in range(m)]
    else:
        needed = seeds_needed(alpha)
        order = tuple(sorted(tests, key=lambda lv: (-sparsity.get(lv, 0.0), -lv)))
        thresholds = [alpha] * m
    won, stopped = step_down(tests, order, thresholds, needed)
    return RunVerdict(correction, alpha, needed, tests, frozenset(won), order, higher_is_better, stopped)


def compute_run_verdict(run: RunData, correction: str | None = None, alpha: float = ALPHA) -> RunVerdict:
    """Test every pruned level of ``run`` and apply the run's correction (``report.correction``)."""
    tests = {lv: t for lv in run.levels if lv > 0 and (t := level_test(run, lv)) is not None}
    return decide(tests, run.sparsity, correction or run.task_config.report.correction, alpha, run.higher_is_better)


def run_verdict(run: RunData) -> RunVerdict:
    """:func:`compute_run_verdict` of a run view, computed once per view."""
    cache = run.cache
    if "verdict" not in cache:
        cache["verdict"] = compute_run_verdict(run)
    return cache["verdict"]


def row_verdict(d: Paired, higher_is_better: bool, needed: int) -> tuple[str, bool]:
    """(text, counts-for-the-ticket) of one control's row: its own one-sided p-values, not
    corrected (the level's verdict is the corrected one)."""
    by_mean = better(d.ticket, d.control, higher_is_better)
    mean_text = "better by the mean" if by_mean else "not better by the mean"
    if d.n < needed:
        return f"too few seeds ({d.n}; {needed} needed): {mean_text}", False
    assert d.p_better is not None and d.p_worse is not None
    if d.p_better <= ALPHA:
        return f"ticket better, p = {_p(d.p_better)}", True
    if d.p_worse <= ALPHA:
        return f"ticket worse, p = {_p(d.p_worse)}", False
    return f"no difference shown, p = {_p(d.p_better)} ({mean_text})", False


def _p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}"


def win_note(verdict: RunVerdict, level: int) -> str:
    """A short qualifier of a level's winning mark ('' when the mark says it all)."""
    test = verdict.tests.get(level)
    if test is None:
        return ""
    mean = by_mean(test, verdict.higher_is_better)
    if test.n < verdict.needed:
        return f"too few seeds: {verdict.needed} needed, {test.n} run" + ("; better by the mean" if mean else "")
    text = f"p = {_p(test.p)}"
    if level not in verdict.won and mean and not test.flagged:
        text += "; better by the mean only"
    if level not in verdict.won and verdict.stopped is not None and level != verdict.stopped:
        text += f"; not reached: the {verdict.correction} stopped at level {verdict.stopped}"
    return text


def win_summary(run: RunData, verdict: RunVerdict) -> dict[str, Any]:
    """The headline's counts: ``won`` levels; ``mean_only`` (judged, better by the mean, not
    won); ``flagged`` (degenerate: counted as neither); ``too_few`` (fewer seeds than a win needs)."""
    tests = verdict.tests
    judged = sorted(tests)
    return {
        "state": verdict.state,
        "judged": judged,
        "won": sorted(verdict.won),
        "mean_only": [lv for lv in judged if lv not in verdict.won and not tests[lv].flagged
                      and by_mean(tests[lv], verdict.higher_is_better)],
        "flagged": [lv for lv in judged if tests[lv].flagged],
        "too_few": [lv for lv in judged if tests[lv].n < verdict.needed],
        "needed": verdict.needed,
        "seeds": verdict.seeds_run(),
        "method": verdict.method_text(),
        "correction": verdict.correction,
        "controls": sorted({c for t in tests.values() for c in t.controls}),
    }


def _levels_text(run: RunData, levels: list[int]) -> str:
    return ", ".join(f"L{lv} ({100 * run.sparsity[lv]:.1f} %)" for lv in sorted(levels))


def verdict_line(run: RunData) -> str:
    """The headline's winning verdict in one line of plain text (the terminal after ``report``)."""
    if not run.judged:
        return f"winning: not judged ({run.metric} has no better direction)"
    v = run_verdict(run)
    summary = win_summary(run, v)
    if v.state == "none":
        return "winning: no random control finished at a pruned level: nothing to judge"
    if v.state == "too_few_seeds":
        return (f"winning: too few seeds to judge ({summary['seeds']} run, {v.needed} needed by the {TEST_NAME}, "
                f"{CORRECTIONS[v.correction]})")
    won = summary["won"]
    text = (f"winning: won at {len(won)} of {len(summary['judged'])} pruned levels"
            + (f": {_levels_text(run, won)}" if won else "")
            + f"; {summary['seeds']} seeds, against {', '.join(summary['controls'])}; {v.method_text()}")
    return text
