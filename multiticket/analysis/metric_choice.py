"""Which metrics a run recorded, which way each one is better, and which one heads the report.

A unit's ``metrics.json`` holds its primary metric (with the adapter's ``higher_is_better``) and
every other number the adapter evaluated: validation metrics (``accuracy``, ``f1_macro``,
``eval_loss``), ``test_*`` metrics, RL's ``eval_return_std`` or ``ticket_reward``. Only the
primary metric's direction is recorded, so the others get theirs from their name: losses,
perplexities and error rates are lower-is-better; spreads, lengths and timings have no better
direction (they are shown, never judged); everything else (accuracy, F1, BLEU, return, reward)
is higher-is-better. The headline metric is ``multiticket report --metric``, else the task's
``report.metric``, else the primary metric.
"""

from __future__ import annotations

import re
from typing import Any

from multiticket.errors import UserError

#: name parts of lower-is-better metrics (a loss, a perplexity, an error rate)
LOWER = frozenset({"loss", "perplexity", "ppl", "error", "err", "nll", "mse", "mae", "rmse", "wer", "cer", "ter",
                   "regret"})
#: name parts of numbers with no better direction: spreads, lengths, timings, counts
UNDIRECTED = frozenset({"std", "stdev", "var", "variance", "length", "len", "seconds", "time", "runtime", "steps",
                        "count", "samples", "tokens"})


def _parts(name: str) -> list[str]:
    return [p for p in re.split(r"[^a-z0-9]+", name.lower()) if p]


def direction(name: str, primary: str, primary_higher: bool) -> bool | None:
    """True: higher is better; False: lower is better; None: no better direction (a spread, a
    length, a time). The primary metric keeps the direction its adapter recorded; a ``test_``
    metric shares its validation twin's."""
    if name == primary or name == f"test_{primary}" or f"test_{name}" == primary:
        return primary_higher
    parts = _parts(name)
    if any(p in UNDIRECTED for p in parts):
        return None
    return not any(p in LOWER for p in parts)


def direction_text(higher: bool | None) -> str:
    return "no better direction" if higher is None else ("higher is better" if higher else "lower is better")


def recorded_metrics(records: list[dict[str, Any]]) -> list[str]:
    """Numeric metrics of the finished units: the primary first, then validation metrics, then
    ``test_*`` ones (each group sorted by name)."""
    if not records:
        return []
    primary = str(records[0]["metric"])
    found = {name for r in records for name, v in r["metrics"].items() if type(v) in (int, float)}
    others = sorted(found - {primary}, key=lambda n: (n.startswith("test_"), n))
    return [primary, *others]


def choose(records: list[dict[str, Any]], wanted: str | None, source: str) -> str | None:
    """The headline metric: ``wanted`` (checked: recorded and with a direction) or the primary.
    ``source`` names where ``wanted`` came from (``--metric``, ``report.metric``) in the error."""
    if not records or wanted is None:
        return None
    names = recorded_metrics(records)
    primary, higher = str(records[0]["metric"]), bool(records[0].get("higher_is_better", True))
    judged = [n for n in names if direction(n, primary, higher) is not None]
    if wanted not in names:
        raise UserError(f"{source}: unknown metric '{wanted}'; this run records: {', '.join(judged)}")
    if wanted not in judged:
        raise UserError(f"{source}: '{wanted}' has no better direction (a spread, length or time), so it "
                        f"cannot head a report; choose one of: {', '.join(judged)}")
    return wanted
