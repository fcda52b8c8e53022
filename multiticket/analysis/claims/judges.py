"""The judges: each reads a part's loaded runs (:func:`multiticket.analysis.rundata.load_run`) and
the run's level verdicts (:func:`multiticket.analysis.verdicts.run_verdict`) and returns a
verdict with its evidence in words and numbers.

Which verdict a judge returns: *reproduced* when the claim holds at every level it speaks of,
*partly* when at some, *not reproduced* when at none, *untested at this budget* when the run
cannot say (no level that deep, fewer seeds than the sign-flip test needs, a dense network that
has not learnt the metric). "Beats" is always the verdicts' test (:mod:`.evidence`); "matches
dense" is always :func:`multiticket.analysis.stats.matches` with the task's ``report.tolerance``
(or a tolerance the claim states, with its source), a degenerate level never matching, as in the
report (:mod:`.matching`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multiticket.analysis.claims import spec as S
from multiticket.analysis.claims.evidence import (
    below,
    best_random,
    finished_levels,
    gap,
    level_text,
    levels_text,
    one_control,
    pct,
    stat,
    verdict_levels,
)
from multiticket.analysis.claims.matching import match_rule, matching_evidence, tolerance
from multiticket.analysis.claims.spec import (
    NOT_ATTEMPTED,
    NOT_REPRODUCED,
    NOT_RUN,
    PARTLY,
    REPRODUCED,
    UNTESTED,
    ClaimBase,
    ClaimResult,
)
from multiticket.analysis.paired import paired
from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import better, fmt, normalise
from multiticket.analysis.verdicts import RunVerdict, by_mean, run_verdict

#: sparsities within this of a bound count as reaching it (10 levels at 20 % give 0.8926...)
EPS = 1e-9


@dataclass
class Subject:
    """What a part offers a claim: the task it is judged on, the part's runs by task name, and
    baselines measured beside them (added to each run's ``baselines.json``)."""

    part: str
    task: str
    runs: Mapping[str, RunData]
    facts: Mapping[str, float] = field(default_factory=dict)


def _verdict(won: int, of: int) -> str:
    return REPRODUCED if won == of else (PARTLY if won else NOT_REPRODUCED)


def _too_few(v: RunVerdict, levels: list[int]) -> bool:
    return all(v.tests[lv].n < v.needed for lv in levels)


def _too_few_text(run: RunData, v: RunVerdict, levels: list[int]) -> str:
    mean = sum(by_mean(v.tests[lv], run.higher_is_better) for lv in levels)
    return (f"too few seeds for the sign-flip test ({v.seeds_run()} run, {v.needed} needed); better by the mean "
            f"at {mean} of {len(levels)} levels")


def _level_rows(run: RunData, v: RunVerdict, levels: list[int], **extra: Callable[[int], Any]) -> list[dict[str, Any]]:
    return [{"level": lv, "sparsity": run.sparsity[lv], "p": v.tests[lv].p, "n": v.tests[lv].n, "won": lv in v.won,
             "flagged": v.tests[lv].flagged, "better_by_mean": by_mean(v.tests[lv], run.higher_is_better),
             **{k: f(lv) for k, f in extra.items()}} for lv in sorted(levels)]


def beats_random(spec: S.BeatsRandom, run: RunData, sub: Subject, r: ClaimResult) -> None:
    """Won at every level from ``from_sparsity`` under the run's verdict (and, with ``widening``,
    a larger mean margin over the best random control there than below)."""
    v = run_verdict(run)
    r.tables = [(sub.task, ["ticket", *run.random_controls])]
    r.test = (f"{run.metric}: the ticket won at every level from {pct(spec.from_sparsity)} pruned under the run's "
              f"verdict ({v.method_text()})" + (", and its mean margin over the best random control larger there "
                                                 "than below" if spec.widening else ""))
    if v.state == "none":
        r.detail = "no level with the ticket and a random control finished"
        return
    deep = [lv for lv in v.tests if run.sparsity[lv] >= spec.from_sparsity - EPS]
    margins = {lv: gap(run, stat(run, "ticket", lv)[0], best_random(run, lv)[0]) for lv in v.tests}
    r.evidence = _level_rows(run, v, list(v.tests), margin_to_best_random=margins.__getitem__)
    if not deep:
        r.detail = (f"the deepest judged level is {pct(max(run.sparsity[lv] for lv in v.tests))} pruned, below "
                    f"{pct(spec.from_sparsity)}; won at {len(v.won)} of {len(v.tests)} shallower levels")
        return
    if _too_few(v, deep):
        r.detail = _too_few_text(run, v, deep) + f" from {pct(spec.from_sparsity)}"
        return
    won = [lv for lv in deep if lv in v.won]
    shallow = [lv for lv in v.tests if lv not in deep]
    lines = [f"from {pct(spec.from_sparsity)} the ticket won at {len(won)} of {len(deep)} levels ({levels_text(run, won)})"]
    widening = None
    if spec.widening and shallow:
        low, high = (statistics.fmean(margins[lv] for lv in levels) for levels in (shallow, deep))
        widening = high > low
        lines.append(f"mean margin over the best random control {fmt(low)} below {pct(spec.from_sparsity)} vs "
                     f"{fmt(high)} from it ({'widening' if widening else 'not widening'})")
    r.verdict = REPRODUCED if len(won) == len(deep) and widening is not False else (PARTLY if won else NOT_REPRODUCED)
    deepest = max(deep, key=lambda lv: run.sparsity[lv])
    lines += ["deepest level " + level_text(run, deepest, ["ticket", *run.random_controls]),
              "per level: " + verdict_levels(run, v, deep)]
    r.detail = "; ".join(lines)


def beats_control(spec: S.BeatsControl, run: RunData, sub: Subject, r: ClaimResult) -> None:
    """Won against one random control at every level from ``from_sparsity``."""
    v = one_control(run, spec.control)
    r.tables = [(sub.task, ["ticket", spec.control])]
    r.test = (f"{run.metric}: the ticket won against {spec.control} at every level from {pct(spec.from_sparsity)} "
              f"pruned (the run verdict's test and correction, on this control alone: {v.method_text()})")
    levels = [lv for lv in v.tests if run.sparsity[lv] >= spec.from_sparsity - EPS]
    r.evidence = _level_rows(run, v, levels, diff=lambda lv: v.tests[lv].comparisons[spec.control].diff)
    if not levels:
        r.detail = f"no level with the ticket and {spec.control} finished"
        return
    if _too_few(v, levels):
        r.detail = _too_few_text(run, v, levels)
        return
    won = [lv for lv in levels if lv in v.won]
    mean = sum(by_mean(v.tests[lv], run.higher_is_better) for lv in levels)
    r.verdict = _verdict(len(won), len(levels))
    r.detail = (f"won against {spec.control} at {len(won)} of {len(levels)} levels ({levels_text(run, won)}), better by "
                f"the mean at {mean}; per level: {verdict_levels(run, v, levels)}")


def below_random(spec: S.BelowRandom, run: RunData, sub: Subject, r: ClaimResult) -> None:
    """``control`` shown below every random control at every level from ``from_sparsity``."""
    c = spec.control
    r.tables = [(sub.task, ["ticket", c, *run.random_controls])]
    levels = [lv for lv in finished_levels(run, c) if any(run.values(x, lv) for x in run.random_controls)]
    deep = [lv for lv in levels if run.sparsity[lv] >= spec.from_sparsity - EPS]
    v = below(run, c, deep)
    r.test = (f"{run.metric}: {c} below every random control at every level from {pct(spec.from_sparsity)} pruned "
              f"(the verdict's test with each random control in the ticket's seat: {v.method_text()})")
    if not deep:
        reached = max((run.sparsity[lv] for lv in levels), default=0.0)
        r.detail = f"{c} and a random control finished only up to {pct(reached)} pruned (< {pct(spec.from_sparsity)})"
        return
    r.evidence = _level_rows(run, v, deep)
    if _too_few(v, deep):
        r.detail = _too_few_text(run, v, deep).replace("better by the mean", f"{c} below by the mean")
        return
    won = [lv for lv in deep if lv in v.won]
    r.verdict = _verdict(len(won), len(deep))
    deepest = max(deep, key=lambda lv: run.sparsity[lv])
    r.detail = (f"{c} is shown below every random control at {len(won)} of {len(deep)} levels from "
                f"{pct(spec.from_sparsity)}; deepest level {level_text(run, deepest, [c, *run.random_controls])}; "
                f"per level ('won': {c} shown below): {verdict_levels(run, v, deep)}")


def ablation(spec: S.Ablation, run: RunData, sub: Subject, r: ClaimResult) -> None:
    """The ticket beats an ablation by the means at most levels and by a positive mean gain
    (normalised to dense): a trend of the procedure, not a random control, so no test decides it."""
    c = spec.control
    r.tables = [(sub.task, ["ticket", c])]
    r.test = (f"{run.metric}: the ticket better than {c} (means over seeds) at most levels from level "
              f"{spec.from_level}, with a positive mean gain normalised to dense")
    levels = [lv for lv in finished_levels(run, "ticket", c) if lv >= spec.from_level]
    if not levels:
        r.detail = f"no level from level {spec.from_level} with both the ticket and {c} finished"
        return
    dense = stat(run, "ticket", 0)[0]
    wins, gains = [], []
    for lv in levels:
        t, a = stat(run, "ticket", lv)[0], stat(run, c, lv)[0]
        gain = normalise(t, dense, run.higher_is_better) - normalise(a, dense, run.higher_is_better)
        gains.append(gain)
        r.evidence.append({"level": lv, "sparsity": run.sparsity[lv], "ticket": t, c: a, "normalised_gain": gain})
        if better(t, a, run.higher_is_better):
            wins.append(lv)
    valid = [g for g in gains if not math.isnan(g)]
    mean_gain = statistics.fmean(valid) if valid else math.nan
    share = len(wins) / len(levels)
    # a majority of levels and a positive mean gain; neither is no reproduction, one of them partial
    r.verdict = (REPRODUCED if share > 0.5 and mean_gain > 0 else
                 NOT_REPRODUCED if share <= 0.5 and not mean_gain > 0 else PARTLY)
    r.detail = (f"the ticket beats {c} by the mean at {len(wins)} of {len(levels)} levels (up to "
                f"{pct(max(run.sparsity[lv] for lv in levels))}); mean gain {fmt(mean_gain)} in {run.metric} "
                f"normalised to dense (1 = dense; positive: the ticket is better)")


def matches_dense_at(spec: S.MatchesDenseAt, run: RunData, sub: Subject, r: ClaimResult) -> None:
    """The ticket matches dense at the finished level nearest ``sparsity``."""
    tol, source = tolerance(spec, run)
    r.tables = [(sub.task, ["ticket", *run.random_controls])]
    r.test = (f"{run.metric}: the ticket's mean at the level nearest {pct(spec.sparsity)} (within "
              f"{pct(spec.window)}) within {tol:g} × |dense| of the dense mean ({source})")
    match = matching_evidence(run, tol, r)
    if match is None:
        return
    found = [lv for lv, ok in match.items() if ok]
    summary = (f"largest matching sparsity {pct(max(run.sparsity[lv] for lv in found)) if found else 'none'}; "
               f"{match_rule(run, tol, source)}")
    near = [lv for lv in match if abs(run.sparsity[lv] - spec.sparsity) <= spec.window + EPS]
    if not near:
        deepest = max(run.sparsity[lv] for lv in match)
        r.detail = f"no finished level within {pct(spec.window)} of {pct(spec.sparsity)} (deepest {pct(deepest)}); {summary}"
        return
    lv = min(near, key=lambda x: abs(run.sparsity[x] - spec.sparsity))
    r.verdict = REPRODUCED if match[lv] else NOT_REPRODUCED
    r.detail = (f"at {pct(run.sparsity[lv])} the ticket {fmt(stat(run, 'ticket', lv)[0])} "
                f"{'matches' if match[lv] else 'does not match'} dense; {summary}")


def matching_range(spec: S.MatchingRange, run: RunData, sub: Subject, r: ClaimResult) -> None:
    """Some level from ``from_sparsity`` on matches dense (reproduced); only shallower ones (partly)."""
    tol, source = tolerance(spec, run)
    r.tables = [(sub.task, ["ticket"])]
    r.test = (f"{run.metric}: the largest sparsity at which the ticket matches dense, at least "
              f"{pct(spec.from_sparsity)} (matching: within {tol:g} × |dense|, {source})")
    match = matching_evidence(run, tol, r)
    if match is None:
        return
    found = [run.sparsity[lv] for lv, ok in match.items() if ok]
    largest, deepest, reach = max(found, default=None), max(run.sparsity[lv] for lv in match), spec.from_sparsity - EPS
    if largest is not None:
        r.verdict = REPRODUCED if largest >= reach else (PARTLY if deepest >= reach else UNTESTED)
    else:
        r.verdict = NOT_REPRODUCED if deepest >= reach else UNTESTED
    unbroken = None
    for lv in sorted(match):  # every level up to it matches too (IMP's sparsity grows level by level)
        if not match[lv]:
            break
        unbroken = run.sparsity[lv]
    r.detail = (f"{match_rule(run, tol, source)}; largest matching sparsity {'none' if largest is None else pct(largest)}"
                + (f" (every level up to {pct(unbroken)} matches)" if unbroken else "")
                + f"; deepest finished level {pct(deepest)}")


def dense_at_least(spec: S.DenseAtLeast, run: RunData, sub: Subject, r: ClaimResult) -> None:
    """The dense network's mean reaches ``at_least`` and beats each named baseline."""
    facts = {**(run.baselines or {}), **sub.facts}
    r.tables = [(sub.task, ["ticket"])]
    r.test = f"{run.metric} of the dense unit, mean over seeds" + (
        f", at least {fmt(spec.at_least)}" if spec.at_least is not None else "") + "".join(
        f"; {m} above the {b}" for m, b in spec.above.items())
    m, s, n = stat(run, "ticket", 0)
    if not n:
        r.detail = "no dense unit finished"
        return
    checks = [] if spec.at_least is None else [(f"at least {fmt(spec.at_least)}", m >= spec.at_least)]
    for metric, name in spec.above.items():
        if name not in facts:
            r.detail = f"dense {run.metric} {fmt(m)}; the {name} is unknown (not measured for this run)"
            return
        view = run if metric == run.metric else run.with_metric(metric)
        value = stat(view, "ticket", 0)[0]
        checks.append((f"{metric} {fmt(value)} above the {name} {fmt(facts[name])}",
                       better(value, facts[name], view.higher_is_better)))
    per_seed = run.values("ticket", 0)
    r.evidence = [{"level": 0, f"dense_{run.metric}": per_seed, **{k: facts[k] for k in spec.above.values()}}]
    r.verdict = REPRODUCED if all(ok for _, ok in checks) else NOT_REPRODUCED
    seeds = ", ".join(f"seed {k}: {fmt(v)}" for k, v in sorted(per_seed.items()))
    r.detail = (f"dense {run.metric} {fmt(m)}" + (f" ± {fmt(s, 2)}" if n > 1 else "") + f" ({seeds}); "
                + "; ".join(f"{text}: {'yes' if ok else 'no'}" for text, ok in checks))


def _margin(run: RunData, lv: int) -> float:
    """Normalised ticket − best random control at ``lv`` (1.0 = dense), by the means."""
    dense = stat(run, "ticket", 0)[0]
    return (normalise(stat(run, "ticket", lv)[0], dense, run.higher_is_better)
            - normalise(best_random(run, lv)[0], dense, run.higher_is_better))


def wider_margin(spec: S.WiderMargin, run: RunData, sub: Subject, r: ClaimResult) -> None:
    """``task`` wins at every common level and its margin at the deepest is wider than ``against``'s."""
    r.tables = [(sub.task, ["ticket", *run.random_controls]), (spec.against, ["ticket", *run.random_controls])]
    r.test = (f"{run.metric}: {sub.task} won at every level it shares with {spec.against} (the run's verdict), and "
              f"its margin over the best random control (normalised to dense) wider at the deepest common level")
    other = sub.runs.get(spec.against)
    if other is None or not other.records:
        r.detail = f"needs both tasks; {spec.against} has not run"
        return
    other = other if other.metric == run.metric else other.with_metric(run.metric)
    v = run_verdict(run)
    common = sorted(lv for lv in v.tests if lv in other.sparsity and not math.isnan(best_random(other, lv)[0])
                    and stat(other, "ticket", lv)[2])
    if not common:
        r.detail = "no level finished with the ticket and a random control in both tasks"
        return
    r.evidence = _level_rows(run, v, common, margin=lambda lv: _margin(run, lv),
                             margin_against=lambda lv: _margin(other, lv))
    deep = max(common, key=lambda lv: run.sparsity[lv])
    wide, narrow = _margin(run, deep), _margin(other, deep)
    margins = f"normalised margin at {pct(run.sparsity[deep])}: {fmt(wide)} ({sub.task}) vs {fmt(narrow)} ({spec.against})"
    if _too_few(v, common):
        r.detail = f"{_too_few_text(run, v, common)}; {margins}"
        return
    won_all, wider = all(lv in v.won for lv in common), wide > narrow
    r.verdict = REPRODUCED if won_all and wider else (PARTLY if won_all or wider else NOT_REPRODUCED)
    r.detail = (f"{margins}; {sub.task} won at {sum(lv in v.won for lv in common)} of {len(common)} levels; per level: "
                f"{verdict_levels(run, v, common)}")


def compare_controls(spec: S.CompareControls, run: RunData, sub: Subject, r: ClaimResult) -> None:
    """A finding, not a verdict: the ticket against each control by the means, and the sign-flip
    p-value (uncorrected) at the deepest level."""
    r.verdict = S.COMPARISON
    r.tables = [(sub.task, ["ticket", *spec.controls])]
    r.test = f"{run.metric}, " + " and ".join(f"ticket − {c}" for c in spec.controls)
    found = []
    for c, first in spec.controls.items():
        levels = [lv for lv in finished_levels(run, "ticket", c) if lv >= first]
        if not levels:
            continue
        wins = sum(better(stat(run, "ticket", lv)[0], stat(run, c, lv)[0], run.higher_is_better) for lv in levels)
        deep = max(levels, key=lambda lv: run.sparsity[lv])
        d = paired(run.values("ticket", deep), run.values(c, deep), run.higher_is_better)
        assert d is not None
        p = "–" if d.p_better is None else f"{d.p_better:.3g}"
        found.append(f"ticket better than {c} by the mean at {wins} of {len(levels)} levels"
                     + (f" from level {first}" if first > 1 else "") + f"; at {pct(run.sparsity[deep])}: ticket − "
                     f"{c} {fmt(d.diff)} {d.interval_text(fmt)} (one-sided sign-flip p = {p}, n = {d.n}, uncorrected)")
        r.evidence.append({"control": c, "levels": len(levels), "wins_by_mean": wins, "deepest_level": deep,
                           "diff": d.diff, "p": d.p_better, "n": d.n})
    r.detail = "; ".join(found) or "no level with " + " or ".join(spec.controls) + " finished"


JUDGE_FUNCTIONS: dict[str, Callable[[Any, RunData, Subject, ClaimResult], None]] = {
    "beats-random": beats_random, "beats-control": beats_control, "below-random": below_random,
    "ablation": ablation, "matches-dense-at": matches_dense_at, "matching-range": matching_range,
    "dense-at-least": dense_at_least, "wider-margin": wider_margin, "compare-controls": compare_controls,
}


def metric_view(spec: ClaimBase, run: RunData) -> tuple[RunData | None, str]:
    """The run read through the claim's metric, or its fallback where the dense network has not
    reached ``min_dense``; (None, why) when the claim cannot be judged at all."""
    metric = spec.metric or run.metric
    view = run if metric == run.metric else run.with_metric(metric)
    if spec.min_dense is None:
        return view, ""
    dense = stat(view, "ticket", 0)[0]
    if not math.isnan(dense) and dense >= spec.min_dense:
        return view, ""
    why = f"dense {metric} {fmt(dense)} is below {fmt(spec.min_dense)}"
    if spec.fallback_metric is None:
        return None, f"{why}: not judged on {metric} at this budget"
    return run.with_metric(spec.fallback_metric), f"judged on {spec.fallback_metric}: {why}"


def judge_claim(spec: ClaimBase, part: str, runs: Mapping[str, RunData],
                facts: Mapping[str, float] | None = None) -> ClaimResult:
    """Judge ``spec`` on a part's loaded runs (task name -> run, the part's first task first);
    ``facts``: baselines measured beside the runs (they add to each run's ``baselines.json``)."""
    r = ClaimResult(spec.id, part, "", UNTESTED, "", metric=spec.metric or "", text=spec.text)
    if isinstance(spec, S.NotAttempted):
        r.verdict, r.detail = NOT_ATTEMPTED, spec.reason
        return r
    task = spec.task or next(iter(runs), "")
    run = runs.get(task)
    if run is None or not run.records:
        r.verdict, r.detail = NOT_RUN, f"{task or 'the part'} has no finished unit"
        return r
    missing = [c for c in spec.controls_needed() if c not in run.controls]
    if missing:
        r.verdict, r.detail = NOT_ATTEMPTED, f"this part does not run {', '.join(missing)}"
        return r
    view, note = metric_view(spec, run)
    if view is None:
        r.metric, r.detail = spec.metric or run.metric, note
        r.tables = [(task, ["ticket", *run.random_controls])]
        return r
    r.metric = view.metric
    JUDGE_FUNCTIONS[spec.judge](spec, view, Subject(part, task, runs, dict(facts or {})), r)
    if note:
        r.detail = f"{r.detail} ({note})"
    return r
