"""Degenerate results: units whose number says nothing about a ticket, and the levels they spoil.

A unit is flagged (plain data, for the report; docs/report.md explains each check) when
- ``majority``: a classifier's accuracy is at or below the majority-class rate of its split;
- ``one_class``: a classifier predicted a single class (``predicted_classes`` 1);
- ``unigram``: a language model's perplexity is at or above the unigram model's;
- ``random_policy``: an RL return is within noise of a uniformly random policy's (below, or less
  than two standard errors of the difference above it, :func:`within_noise`);
- ``nan``: the unit failed with non-finite weights or metrics (it has no record; its ``FAILED`` says so).
A level is flagged when a ticket unit of it is, or when every control scored exactly the
ticket's metrics (``identical``: the comparison cannot tell them apart). A flagged level is never
called matching or winning (:func:`guard_verdict`).

The majority, unigram and random-policy checks need the baselines the adapter measured when
the run started (``baselines.json``, :func:`multiticket.rundir.read_baselines`); a run made before
they were measured says "not measured" for them. The other checks need none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import fmt
from multiticket.core.store import Unit
from multiticket.errors import UserError
from multiticket.rundir import MAX_CONFIG_BYTES, read_json

#: a baseline equal to the metric up to float rounding counts as reached
EPS = 1e-9
#: standard errors of the difference that separate a return from a random policy's
NOISE_SE = 2.0
#: (metric, baseline key, "at or below" / "at or above", what the baseline is)
BOUNDS = (
    ("accuracy", "majority_rate", "below", "majority-class rate"),
    ("test_accuracy", "test_majority_rate", "below", "test majority-class rate"),
    ("perplexity", "unigram_perplexity", "above", "unigram perplexity"),
    ("test_perplexity", "test_unigram_perplexity", "above", "test unigram perplexity"),
)
RANDOM_KEYS = ("random_return_mean", "random_return_std", "random_episodes")
#: baselines key prefix for a user metric's trivial score: ``trivial_<metric>`` anchors ``<metric>``
TRIVIAL_PREFIX = "trivial_"


@dataclass(frozen=True)
class Flag:
    """One reason a unit or a level is degenerate: the check's name and a one-line reason."""

    check: str
    reason: str


def within_noise(value: float, value_std: float, n: float, base: float, base_std: float, base_n: float) -> bool:
    """Is a mean return ``value`` (per-episode std ``value_std`` over ``n`` episodes) below a random
    policy's mean ``base`` or above it by less than two standard errors of the difference,
    sqrt(value_std²/n + base_std²/base_n)?"""
    se = math.sqrt(value_std**2 / max(n, 1.0) + base_std**2 / max(base_n, 1.0))
    return value - base <= NOISE_SE * se + EPS


def _bound_flags(metrics: dict[str, Any], baselines: dict[str, float]) -> list[Flag]:
    out = []
    for metric, key, side, what in BOUNDS:
        v, b = metrics.get(metric), baselines.get(key)
        if not isinstance(v, int | float) or b is None:
            continue
        if (v <= b + EPS) if side == "below" else (v >= b - EPS):
            word = "≤" if side == "below" else "≥"
            out.append(Flag("majority" if side == "below" else "unigram", f"{metric} {fmt(v)} {word} {what} {fmt(b)}"))
    return out


def _random_flag(metrics: dict[str, Any], baselines: dict[str, float]) -> list[Flag]:
    v = metrics.get("eval_return")
    if not isinstance(v, int | float) or any(k not in baselines for k in RANDOM_KEYS):
        return []
    mean, std, n = (baselines[k] for k in RANDOM_KEYS)
    v_std = metrics.get("eval_return_std")
    v_std = float(v_std) if isinstance(v_std, int | float) else 0.0
    if not within_noise(float(v), v_std, n, mean, std, n):
        return []
    how = "at or below" if v <= mean else "within noise of"
    return [Flag("random_policy", f"eval_return {fmt(v)} {how} a random policy's {fmt(mean)} ± {fmt(std)}")]


def anchor_baseline(run: RunData) -> tuple[float, str, bool] | None:
    """The trivial score that anchors ``run.metric`` at 0 on :func:`multiticket.analysis.stats.anchor`'s
    scale, as (value, what it is, log scale), or None when the run measured none: a random policy's
    mean return for ``eval_return``, the majority rate for accuracy, the unigram perplexity (on logs)
    for perplexity, and for any other metric a ``trivial_<metric>`` key an adapter's ``baselines()``
    wrote (so a user's own metric is anchored without a change here)."""
    base, metric = run.baselines or {}, run.metric or ""
    found = [(key, what, side == "above") for m, key, side, what in BOUNDS if m == metric]
    if metric == "eval_return":
        found.append(("random_return_mean", "random policy", False))
    found.append((TRIVIAL_PREFIX + metric, "trivial " + metric, False))
    for key, what, log_scale in found:
        value = base.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value), what, log_scale
    return None


def unit_flags(record: dict[str, Any], baselines: dict[str, float] | None) -> list[Flag]:
    """Why a finished unit's record is degenerate (empty: it is not, or nothing could be checked)."""
    metrics = record["metrics"]
    flags = []
    for prefix in ("", "test_"):
        if metrics.get(f"{prefix}predicted_classes") == 1:
            flags.append(Flag("one_class", f"{prefix or 'validation '}predictions are all one class"))
    if baselines:
        flags = _bound_flags(metrics, baselines) + _random_flag(metrics, baselines) + flags
    return flags


def failed_nan(run: RunData) -> dict[Unit, str]:
    """Unfinished units whose ``FAILED`` (untrusted: bounded, checked) says they went non-finite."""
    out = {}
    for unit in run.unfinished:
        path = run.root / unit.relpath() / "FAILED"
        if not path.is_file():
            continue
        try:
            failure = read_json(path, MAX_CONFIG_BYTES)
        except UserError:  # an unreadable FAILED is no evidence of NaN
            continue
        error = failure.get("error") if isinstance(failure, dict) else None
        if isinstance(error, str) and "non-finite" in error:
            out[unit] = error[:300]
    return out


def identical_controls(run: RunData, level: int) -> bool:
    """Every control unit of ``level`` has exactly its seed's ticket metrics (at least one control)."""
    ticket = {r["seed"]: r["metrics"] for r in run.records if r["control"] == "ticket" and r["level"] == level}
    others = [r for r in run.records if r["control"] != "ticket" and r["level"] == level]
    if level == 0 or not others:
        return False
    for r in others:
        t = ticket.get(r["seed"])
        if t is None:
            return False
        shared = [k for k, v in r["metrics"].items() if isinstance(v, int | float) and isinstance(t.get(k), int | float)]
        if not shared or any(r["metrics"][k] != t[k] for k in shared):
            return False
    return True


#: what a flagged ticket unit is, per check, in a level's one-line reason
TICKET_IS = {"majority": "at or below the majority-class rate", "one_class": "predicting one class",
             "unigram": "at or above the unigram perplexity", "random_policy": "within noise of a random policy (or below it)",
             "nan": "non-finite (the unit failed)"}


def _seeds_by_check(run: RunData, control: str, level: int) -> dict[str, list[int]]:
    """check -> the seeds whose ``control`` unit of ``level`` it flags (finished units by their
    record, failed ones by their ``FAILED``)."""
    seeds: dict[str, list[int]] = {}
    for r in run.records:
        if r["control"] == control and r["level"] == level:
            for f in unit_flags(r, run.baselines):
                seeds.setdefault(f.check, []).append(r["seed"])
    for unit in failed_nan(run):
        if unit.control == control and unit.level == level:
            seeds.setdefault("nan", []).append(unit.seed)
    return seeds


def _seed_flags(subject: str, seeds: dict[str, list[int]]) -> list[Flag]:
    return [Flag(check, f"{subject} is {TICKET_IS.get(check, check)} (seed {', '.join(map(str, dict.fromkeys(s)))})")
            for check, s in seeds.items()]


def level_flags(run: RunData, level: int) -> list[Flag]:
    """Why ``level`` is degenerate, one flag per check: ticket units flagged (with their seeds),
    a ticket unit that went non-finite, or controls identical to the ticket."""
    flags = _seed_flags("the ticket", _seeds_by_check(run, "ticket", level))
    if identical_controls(run, level):
        flags.append(Flag("identical", "every control scored exactly the ticket's metrics: they cannot be told apart"))
    return flags


def control_flags(run: RunData, control: str, level: int) -> list[Flag]:
    """Why a control's units of ``level`` are degenerate (e.g. a re-initialised network that never
    learnt): a margin over such a control says the ticket learns where the control does not,
    not by how much a good mask beats a random one."""
    return _seed_flags(control, _seeds_by_check(run, control, level))


def guard_verdict(run: RunData, level: int, winning: bool | None, matching: bool | None) -> tuple[bool | None, bool | None]:
    """A flagged level is never winning nor matching: a verdict it had becomes False."""
    if not level_flags(run, level):
        return winning, matching
    return (None if winning is None else False), (None if matching is None else False)


# -- what the report shows ------------------------------------------------------------------------

#: (check, metric whose presence makes it apply, baseline keys it needs, what it compares)
CHECKS = (
    ("majority", "accuracy", ("majority_rate",), "accuracy ≤ majority-class rate"),
    ("one_class", "accuracy", (), "predictions all one class"),
    ("unigram", "perplexity", ("unigram_perplexity",), "perplexity ≥ unigram perplexity"),
    ("random_policy", "eval_return", RANDOM_KEYS, "return within noise of a random policy"),
)


def check_status(run: RunData) -> list[dict[str, str]]:
    """Which checks ran on this run and which could not ("not measured"), one row each."""
    rows = []
    seen = {k for r in run.records for k in r["metrics"]}
    for check, metric, keys, what in CHECKS:
        if metric not in seen:
            continue
        if check == "one_class":
            status = "checked" if "predicted_classes" in seen else "not measured (its units record no predicted_classes)"
        elif run.baselines is None:
            status = "not measured (no baselines.json: the run was made before baselines were measured)"
        elif all(k in run.baselines for k in keys):
            status = "checked"
        else:
            missing = ", ".join(k for k in keys if k not in run.baselines)
            status = (f"not measured: baselines.json has no {missing} (the domain's adapter gives none; a "
                      f"plain-PyTorch module gives it with baselines(args), docs/torch.md)")
        rows.append({"check": check, "what": what, "status": status})
    rows.append({"check": "identical", "what": "every control identical to the ticket", "status": "checked"})
    rows.append({"check": "nan", "what": "unit failed with non-finite weights or metrics", "status": "checked"})
    return rows


def flagged_units(run: RunData) -> list[tuple[Unit, list[str]]]:
    """Every flagged unit with its reasons (finished ones by their record, failed ones by their
    ``FAILED``), by level, seed, ticket first."""
    out = [(Unit(r["seed"], r["control"], r["level"]), [f.reason for f in flags])
           for r in run.records if (flags := unit_flags(r, run.baselines))]
    out += [(u, [f"failed: {why}"]) for u, why in failed_nan(run).items()]
    out.sort(key=lambda f: (f[0].level, f[0].seed, f[0].control != "ticket", f[0].control))
    return out


def degenerate_section(run: RunData) -> dict[str, Any]:
    """Data for the report's degenerate-results section and headline."""
    units = flagged_units(run)
    levels = {lv: [f.reason for f in level_flags(run, lv)] for lv in run.levels}
    baselines = run.baselines
    return {
        "measured": baselines is not None,
        "baselines": [(k, fmt(v)) for k, v in sorted((baselines or {}).items())],
        "checks": check_status(run),
        "units": [{"unit": str(u.relpath()), "reasons": "; ".join(why)} for u, why in units],
        "units_by_level": {lv: [f"{u.control} seed {u.seed}: {'; '.join(why)}" for u, why in units if u.level == lv]
                           for lv in {u.level for u, _ in units}},
        "n_units": len(run.records) + len(failed_nan(run)),
        "levels": {lv: reasons for lv, reasons in levels.items() if reasons},
    }
