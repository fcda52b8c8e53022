"""The report's compute section: what each unit cost, and what a ticket cost against the dense network.

Per unit the record holds its training wall time (``train_seconds``, a resumed unit's including
the time before the kill) and the steps it trained (``stop_step − start_step``, in the unit its
domain declared: environment steps for RL, optimizer steps for NLP); an HF unit also notes its mean input tokens
per optimizer step (``notes.train_tokens``), so its tokens per second can be shown. Evaluation,
building and saving are not in ``train_seconds``.

Per run, the cost of the ticket at level L against one dense training (T steps):

- IMP: the dense run plus every level up to L, each trained from the rewind step k to T:
  T + L·(T − k) steps (the measured wall times of those units are summed the same way);
- early-bird (:mod:`multiticket.analysis.early_bird`): the steps its search needed to find the
  level's mask (``search_steps``: e₀ + Σ(eᵢ − k)) plus training the found ticket (T − k). The
  early-bird chain in a run directory trains every level to T so that its metrics compare with
  IMP's, so only its step count (not its wall time) is the early-bird cost.

The whole run (every control, every seed) is set against the dense network as well: how many
dense trainings the study cost.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from multiticket.analysis import plots
from multiticket.analysis.htmlpage import render
from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import fmt


def _number(value: Any) -> float | None:
    """A finite, non-negative number from an untrusted record, else None."""
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


@dataclass(frozen=True)
class UnitCost:
    """One finished unit's training cost (None: not recorded by the version that wrote it)."""

    seed: int
    control: str
    level: int
    steps: float | None
    seconds: float | None
    tokens_per_step: float | None

    @property
    def steps_per_second(self) -> float | None:
        return self.steps / self.seconds if self.steps is not None and self.seconds else None

    @property
    def tokens_per_second(self) -> float | None:
        rate = self.steps_per_second
        return rate * self.tokens_per_step if rate is not None and self.tokens_per_step is not None else None


def unit_cost(record: dict[str, Any]) -> UnitCost:
    start, stop = _number(record.get("start_step")), _number(record.get("stop_step"))
    notes = record.get("notes")
    tokens = notes.get("train_tokens") if isinstance(notes, dict) else None
    return UnitCost(
        int(record["seed"]), str(record["control"]), int(record["level"]),
        stop - start if start is not None and stop is not None and stop >= start else None,
        _number(record.get("train_seconds")),
        _number(tokens.get("tokens_per_step")) if isinstance(tokens, dict) else None,
    )


def duration(seconds: float | None) -> str:
    """Wall time in words: '12.3 s', '4.5 min', '2.1 h'."""
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{fmt(seconds, 3)} s"
    return f"{fmt(seconds / 60, 3)} min" if seconds < 7200 else f"{fmt(seconds / 3600, 3)} h"


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def _ratio(cost: float | None, dense: float | None) -> str:
    return "–" if cost is None or not dense else f"{fmt(cost / dense, 3)}×"


def level_costs(run: RunData, costs: list[UnitCost]) -> list[dict[str, Any]]:
    """Per pruned level: IMP's cumulative steps and wall time to the trained ticket there, and the
    early-bird ticket's steps, each as a multiple of the dense network's (means over seeds)."""
    by = {(c.seed, c.control, c.level): c for c in costs}
    seeds = sorted({c.seed for c in costs if (c.seed, "ticket", 0) in by})
    early = {(int(r["seed"]), int(r["level"])): r for r in run.records
             if r["control"] == "early_bird" and isinstance(r.get("early_bird"), dict)}
    rows = []
    for level in [lv for lv in run.levels if lv > 0]:
        chains = [ch for s in seeds if (ch := _chain(by, s, level))]
        imp_steps = [_sum([u.steps for u in ch]) for ch in chains]
        imp_secs = [_sum([u.seconds for u in ch]) for ch in chains]
        dense_steps = [ch[0].steps for ch in chains]
        dense_secs = [ch[0].seconds for ch in chains]
        eb = [_early_bird_steps(early[(s, level)], by.get((s, "early_bird", level))) for s in seeds
              if (s, level) in early]
        eb_dense = [by[(s, "ticket", 0)].steps for s in seeds if (s, level) in early]
        if not chains and not eb:
            continue
        rows.append({
            "level": level, "remaining": plots.pct(run.remaining(level)), "seeds": len(chains),
            "imp_steps": _mean(imp_steps), "imp_steps_x": _ratio(_mean(imp_steps), _mean(dense_steps)),
            "imp_seconds": _mean(imp_secs), "imp_seconds_x": _ratio(_mean(imp_secs), _mean(dense_secs)),
            "eb_steps": _mean(eb) if eb else None, "eb_steps_x": _ratio(_mean(eb), _mean(eb_dense)) if eb else "",
        })
    return rows


def _chain(by: dict[tuple[int, str, int], UnitCost], seed: int, level: int) -> list[UnitCost]:
    """The seed's ticket units 0..level, or [] when one of them is not finished."""
    units = [by.get((seed, "ticket", lv)) for lv in range(level + 1)]
    return [u for u in units if u is not None] if all(u is not None for u in units) else []


def _sum(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(sum(v for v in values if v is not None))


def _early_bird_steps(record: dict[str, Any], cost: UnitCost | None) -> float | None:
    """Steps to find the level's early-bird mask plus training the ticket found there."""
    search = _number(record["early_bird"].get("search_steps"))
    train = cost.steps if cost is not None else None
    return search + train if search is not None and train is not None else None


def totals(costs: list[UnitCost]) -> list[dict[str, Any]]:
    """Per control (ticket first): units, total and mean wall time, mean steps and tokens per second."""
    by: dict[str, list[UnitCost]] = defaultdict(list)
    for c in costs:
        by[c.control].append(c)
    rows = []
    for control, units in sorted(by.items(), key=lambda kv: (kv[0] != "ticket", kv[0])):
        secs = [u.seconds for u in units if u.seconds is not None]
        rates = [u.steps_per_second for u in units if u.steps_per_second is not None]
        tokens = [u.tokens_per_second for u in units if u.tokens_per_second is not None]
        rows.append({"control": control, "color": plots.control_color(control), "units": len(units),
                     "total": sum(secs) if secs else None, "mean": sum(secs) / len(secs) if secs else None,
                     "rate": sum(rates) / len(rates) if rates else None,
                     "tokens": sum(tokens) / len(tokens) if tokens else None})
    return rows


def compute_section(run: RunData) -> Markup:
    """HTML of the compute section (``templates/compute.html.j2``), or "" without finished units."""
    costs = sorted((unit_cost(r) for r in run.records), key=lambda c: (c.control != "ticket", c.control,
                                                                        c.level, c.seed))
    if not costs:
        return Markup("")
    dense = [c for c in costs if c.control == "ticket" and c.level == 0]
    dense_seconds = _mean([c.seconds for c in dense]) if dense else None
    total = _sum([c.seconds for c in costs])
    known = [c.seconds for c in costs if c.seconds is not None]
    levels = level_costs(run, costs)
    return render(
        "compute.html.j2", run=run, step_unit=run.facts.step_unit,
        tokens=any(c.tokens_per_step is not None for c in costs), units=costs, levels=levels,
        controls=totals(costs), dense_seconds=dense_seconds, dense_steps=_mean([c.steps for c in dense]),
        total_seconds=sum(known) if known else None, total_complete=total is not None,
        total_x=_ratio(sum(known), dense_seconds) if known else "–", duration=duration,
        early_bird=any(r["eb_steps"] is not None for r in levels),
    )
