"""Which evaluation method a run directory uses, so that a resumed run never mixes two.

An adapter may offer several ways to evaluate (:attr:`DomainAdapter.eval_methods`, newest first):
SB3 evaluates its N episodes either on N environment copies at once (``batched``) or one after
another on one environment (``sequential``, the method of runs written before batching existed).
The two start their episodes from different initial states, so the units of one run must agree.
Each unit records its method in ``metrics.json`` (``eval_method``); a unit without the field was
evaluated the oldest way. A run with no finished unit takes the newest method.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from multiticket.errors import UserError


def unit_records(run_dir: Path) -> Iterator[Mapping[str, Any]]:
    """The ``metrics.json`` of every unit that has a ``DONE`` (checksums not verified: this runs
    before every job, and a corrupt unit is recomputed anyway); unreadable ones are skipped."""
    for done in sorted(Path(run_dir).glob("seed_*/*/level_*/DONE")):
        try:
            record = json.loads((done.parent / "metrics.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            yield record


def run_eval_method(methods: Sequence[str], records: Iterable[Mapping[str, Any]]) -> str | None:
    """The method of a run whose finished units' ``metrics.json`` records are ``records``;
    None for an adapter that offers no choice (``methods`` empty)."""
    if not methods:
        return None
    recorded = {str(r.get("eval_method", methods[-1])) for r in records}
    unknown = sorted(recorded - set(methods))
    if unknown:
        raise UserError(
            f"metrics.json: a finished unit was evaluated with '{unknown[0]}', which this version does not "
            f"offer (one of {', '.join(methods)})"
        )
    if not recorded:
        return methods[0]
    return next(m for m in reversed(methods) if m in recorded)  # mixed (edited by hand): the oldest
