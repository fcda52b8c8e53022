"""What "matches dense" means for a claim: the tolerance (the task's ``report.tolerance``, or one
the claim states, with its source), which finished ticket levels are within it of the dense mean
(:func:`multiticket.analysis.stats.matches`; a degenerate level never matches, as in the report),
and the rule in words.

A module of its own beside :mod:`.judges` because two judges (``matches-dense-at``,
``matching-range``) share it, as the "beats" judges share :mod:`.evidence`.
"""

from __future__ import annotations

from multiticket.analysis.claims import spec as S
from multiticket.analysis.claims.evidence import finished_levels, stat
from multiticket.analysis.claims.spec import ClaimResult
from multiticket.analysis.degenerate import guard_verdict
from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import fmt, matches


def tolerance(spec: S.MatchesDenseAt | S.MatchingRange, run: RunData) -> tuple[float, str]:
    """The matching tolerance and where it comes from."""
    if spec.tolerance is None:
        return run.tolerance, "the task's report.tolerance"
    return spec.tolerance, spec.tolerance_source or "the claim's own tolerance"


def matching_levels(run: RunData, tol: float) -> dict[int, bool]:
    """Per finished ticket level: within ``tol`` × |dense| of the dense mean (never at a degenerate level)."""
    dense = stat(run, "ticket", 0)[0]
    return {lv: bool(guard_verdict(run, lv, None, matches(stat(run, "ticket", lv)[0], dense, tol,
                                                              run.higher_is_better))[1])
            for lv in finished_levels(run, "ticket")}


def match_rule(run: RunData, tol: float, source: str) -> str:
    """Dense (mean ± std over seeds) and the matching rule, in words."""
    dense, sd, n = stat(run, "ticket", 0)
    return (f"dense {fmt(dense)}" + (f" ± {fmt(sd, 2)}" if n > 1 else "") + f" over {n} seed(s); matching: the ticket's "
            f"mean within {tol:g} × |dense| = {fmt(tol * abs(dense))} of dense ({source})")


def matching_evidence(run: RunData, tol: float, r: ClaimResult) -> dict[int, bool] | None:
    """Which finished levels match dense, recorded as the claim's evidence; None (with the reason
    in ``r.detail``) when there is no finished dense run or ticket level."""
    match = matching_levels(run, tol)
    if not stat(run, "ticket", 0)[2] or not match:
        r.detail = "no finished dense run or ticket level"
        return None
    r.evidence = [{"level": lv, "sparsity": run.sparsity[lv], "ticket": stat(run, "ticket", lv)[0], "matches": ok}
                  for lv, ok in match.items()]
    return match
