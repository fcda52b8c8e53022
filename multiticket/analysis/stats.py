"""Small statistics over seeds: mean ± std, matching, the normalised and anchored scales, number
formatting. Paired tests and intervals live in :mod:`multiticket.analysis.paired`, verdicts in
:mod:`multiticket.analysis.verdicts`.
"""

from __future__ import annotations

import math
import statistics


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample std, n); std is 0.0 for one value, both NaN for none."""
    if not values:
        return math.nan, math.nan, 0
    if len(values) == 1:
        return float(values[0]), 0.0, 1
    return float(statistics.fmean(values)), float(statistics.stdev(values)), len(values)


def better(a: float, b: float, higher_is_better: bool) -> bool:
    """Is ``a`` strictly better than ``b`` in the metric's direction?"""
    return a > b if higher_is_better else a < b


def matches(value: float, dense: float, tolerance: float, higher_is_better: bool) -> bool:
    """Is ``value`` no worse than dense by more than ``tolerance`` × |dense|?

    Being better than dense always matches; the tolerance is a fraction of the dense metric
    (``report.tolerance`` in the task file).
    """
    if math.isnan(value) or math.isnan(dense):
        return False
    slack = tolerance * abs(dense)
    return value >= dense - slack if higher_is_better else value <= dense + slack


def normalise(value: float, dense: float, higher_is_better: bool) -> float:
    """Metric relative to dense, so that 1.0 = dense and higher = better, in any domain.

    Higher-is-better: ``1 + (value − dense) / |dense|`` (= value / dense when dense > 0; still
    correct for negative RL returns). Lower-is-better (loss, perplexity): ``dense / value`` when
    both are positive, else ``1 − (value − dense) / |dense|``. NaN when dense is 0.
    """
    if dense == 0 or math.isnan(dense) or math.isnan(value):
        return math.nan
    if higher_is_better:
        return 1.0 + (value - dense) / abs(dense)
    if value > 0 and dense > 0:
        return dense / value
    return 1.0 - (value - dense) / abs(dense)


def anchor(value: float, dense: float, base: float, higher_is_better: bool, log_scale: bool = False) -> float:
    """The fraction of the gap from a trivial baseline to dense that ``value`` closes: 0 = the
    baseline (a random policy, the majority class, a unigram model), 1 = dense, in either metric
    direction: ``(value − base) / (dense − base)``, on logs with ``log_scale`` (perplexity, whose
    natural scale is nats). Unlike :func:`normalise` it does not divide by |dense|, so a return
    near 0 or a negative one (Acrobot's −96 against a random policy's −500) compares across
    domains. NaN when dense is not better than the baseline (the scale would flip: a degenerate
    run), or for a log of a non-positive value.
    """
    if log_scale:
        if min(value, dense, base) <= 0:
            return math.nan
        value, dense, base = math.log(value), math.log(dense), math.log(base)
    gap = dense - base
    if any(math.isnan(x) for x in (value, dense, base)) or not better(dense, base, higher_is_better) or abs(gap) < 1e-12:
        return math.nan
    return (value - base) / gap


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for tables and headlines in plain notation at ``digits`` significant digits:
    ``170.3``, ``0.01235``, ``1234568`` (never ``1.7e+02``); trailing zeros dropped, '–' for missing.
    Only magnitudes below 1e-5 (where plain notation would be a row of zeros) use an exponent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"
    if abs(value) < 1e-5:
        return f"{value:.{digits}g}"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = digits - 1 - magnitude
    text = f"{round(value, decimals):.0f}" if decimals <= 0 else f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "0") else text
