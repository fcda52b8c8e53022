"""What the judges read off a run: means over seeds, the verdicts' procedure applied to other
pairs of controls, and numbers in words.

Every "beats" judgement goes through :mod:`multiticket.analysis.verdicts`: the ticket against the
random controls is :func:`~multiticket.analysis.verdicts.run_verdict` itself; one random control
alone, or a control below the random ones, is the same procedure (:func:`procedure`: the exact
sign-flip test per level, intersection-union over controls, the run's ``report.correction``,
"too few seeds" below 2^-n ≤ α, degenerate levels never won) on other pairs. Means decide only
what the claim itself states as a trend of means (a widening margin, an ablation's gain).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from multiticket.analysis.degenerate import level_flags
from multiticket.analysis.paired import Paired, paired
from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import better, fmt, mean_std
from multiticket.analysis.verdicts import LevelTest, RunVerdict, decide, run_verdict


def pct(x: float) -> str:
    """0.891 -> '89.1 %' (the results pages' sparsity)."""
    return f"{100 * x:.1f} %"


def stat(run: RunData, control: str, level: int) -> tuple[float, float, int]:
    """(mean, std, n) of the view's metric over seeds."""
    return mean_std(list(run.values(control, level).values()))


def finished_levels(run: RunData, *controls: str) -> list[int]:
    """Pruned levels where every one of ``controls`` has a finished unit."""
    return [lv for lv in run.levels if lv > 0 and all(run.values(c, lv) for c in controls)]


def gap(run: RunData, a: float, b: float) -> float:
    """a − b in the metric's direction (positive: a is better)."""
    return a - b if run.higher_is_better else b - a


def best_random(run: RunData, level: int) -> tuple[float, str]:
    """The best random control's mean at ``level`` and its name (NaN, '' when none finished)."""
    best, name = float("nan"), ""
    for c in run.random_controls:
        m, _, n = stat(run, c, level)
        if n and (not name or better(m, best, run.higher_is_better)):
            best, name = m, c
    return best, name


def level_text(run: RunData, level: int, controls: Iterable[str]) -> str:
    """'89.1 %: ticket 269.8 ± 180, random_reinit 26.6 ± 22' (means ± std over seeds)."""
    parts = []
    for c in controls:
        m, s, n = stat(run, c, level)
        if n:
            parts.append(f"{c} {fmt(m)}" + (f" ± {fmt(s, 2)}" if n > 1 else ""))
    return f"{pct(run.sparsity[level])}: " + ", ".join(parts)


def levels_text(run: RunData, levels: Sequence[int]) -> str:
    return ", ".join(pct(run.sparsity[lv]) for lv in sorted(levels)) or "none"


def procedure(run: RunData, pairs: dict[int, dict[str, Paired]]) -> RunVerdict:
    """The run verdict's procedure (its correction and α) on other comparisons: per level, name
    -> Paired whose ``ticket`` side must be better. A level flagged degenerate is never won."""
    base = run_verdict(run)
    tests = {lv: LevelTest(lv, comps, bool(level_flags(run, lv))) for lv, comps in pairs.items() if comps}
    return decide(tests, run.sparsity, base.correction, base.alpha, run.higher_is_better)


def one_control(run: RunData, control: str) -> RunVerdict:
    """The run's verdict against ``control`` alone (the same p-values, tested on their own)."""
    tests = run_verdict(run).tests
    return procedure(run, {lv: {control: t.comparisons[control]} for lv, t in tests.items()
                           if control in t.comparisons})


def below(run: RunData, control: str, levels: Iterable[int]) -> RunVerdict:
    """Is ``control`` below every random control? Each random control sits in the ticket's seat."""
    pairs = {}
    for lv in levels:
        found = {c: paired(run.values(c, lv), run.values(control, lv), run.higher_is_better, interval=False)
                 for c in run.random_controls}
        pairs[lv] = {c: d for c, d in found.items() if d is not None}
    return procedure(run, pairs)


def p_text(test: LevelTest, needed: int) -> str:
    """A level test in words: its intersection-union p and seeds, or why it cannot reject."""
    if test.n < needed:
        return f"{test.n} seeds: too few for the test ({needed} needed)"
    return f"p = {test.p:.3g} over {test.n} seeds" + (" (flagged degenerate: never won)" if test.flagged else "")


def verdict_levels(run: RunData, verdict: RunVerdict, levels: Sequence[int]) -> str:
    """'L9 (86.4 %) p = 0.125 over 5 seeds; L10 (89.1 %) won, p = 0.03125 ...' for ``levels``."""
    out = []
    for lv in sorted(levels, key=lambda x: run.sparsity[x]):
        t = verdict.tests[lv]
        out.append(f"{pct(run.sparsity[lv])} {'won' if lv in verdict.won else 'not won'}, {p_text(t, verdict.needed)}")
    return "; ".join(out)

