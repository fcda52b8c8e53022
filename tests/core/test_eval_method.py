"""The evaluation method of a run directory: newest for a fresh run, else what its units recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multiticket.core.eval_method import run_eval_method, unit_records
from multiticket.errors import UserError

METHODS = ("batched", "sequential")


def test_rule() -> None:
    assert run_eval_method((), [{"seed": 0}]) is None  # an adapter with one way only records nothing
    assert run_eval_method(METHODS, []) == "batched"
    assert run_eval_method(METHODS, [{"eval_method": "batched"}] * 2) == "batched"
    assert run_eval_method(METHODS, [{"seed": 0}]) == "sequential"  # written before the field existed
    assert run_eval_method(METHODS, [{"eval_method": "batched"}, {"seed": 0}]) == "sequential"
    with pytest.raises(UserError, match="'warp'"):
        run_eval_method(METHODS, [{"eval_method": "warp"}])


def test_unit_records_reads_finished_units_only(tmp_path: Path) -> None:
    for unit, done, text in [("ticket/level_0", True, '{"eval_method": "batched"}'),
                             ("ticket/level_1", False, '{"seed": 0}'),  # not finished: ignored
                             ("random_reinit/level_1", True, "{truncated")]:  # unreadable: skipped
        d = tmp_path / "seed_0" / unit
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(text)
        if done:
            (d / "DONE").write_text(json.dumps({"files": {}}))
    assert list(unit_records(tmp_path)) == [{"eval_method": "batched"}]
