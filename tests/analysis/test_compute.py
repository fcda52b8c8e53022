"""The report's compute section on a tiny toy run with an early-bird chain: IMP's and the
early-bird ticket's cost against one dense training, taken from the units' own records."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from multiticket.analysis.compute import duration, unit_cost
from multiticket.analysis.report import write_report
from multiticket.cli import main
from tests.analysis.test_report import cells


def test_imp_and_early_bird_cost_against_dense(tmp_path: Path):
    args = ["run", "toy-mlp", "--out", str(tmp_path), "--quiet", "--levels", "2", "--seeds", "0,1",
            "--set", "train.steps=120", "--set", "toy.n_train=256", "--set", "toy.n_test=128",
            "--set", "toy.hidden=[16,8]", "--set", "controls=[random_mask,early_bird]",
            "--set", "early_bird.interval=4", "--set", "early_bird.window=3"]
    assert main(args) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    html = write_report(run).read_text()
    rec = {(r["seed"], r["control"], r["level"]): r for r in
           (json.loads(p.read_text()) for p in run.glob("seed_*/*/level_*/metrics.json"))}
    found = {(c["kind"], c.get("level")): float(c["value"]) for c in cells(html)
             if c["kind"] in ("imp_steps", "early_bird_steps")}
    for level in (1, 2):
        eb = [rec[(s, "early_bird", level)]["early_bird"]["search_steps"] + rec[(s, "early_bird", level)]["stop_step"]
              - rec[(s, "early_bird", level)]["start_step"] for s in (0, 1)]
        assert found[("early_bird_steps", str(level))] == pytest.approx(statistics.fmean(eb))
        assert found[("early_bird_steps", str(level))] < found[("imp_steps", str(level))]  # it stopped early
    assert "<th>early-bird: optimizer steps</th>" in html and "tokens / s" not in html  # the toy counts no tokens


def test_unit_cost_reads_untrusted_records_defensively():
    good = {"seed": 0, "control": "ticket", "level": 1, "start_step": 10, "stop_step": 110, "train_seconds": 4.0,
            "notes": {"train_tokens": {"tokens_per_step": 256.0}}}
    cost = unit_cost(good)
    assert cost.steps == 100 and cost.steps_per_second == 25 and cost.tokens_per_second == 25 * 256
    for bad, field in (({"train_seconds": "4"}, "seconds"), ({"train_seconds": float("nan")}, "seconds"),
                       ({"stop_step": 5}, "steps"), ({"start_step": True}, "steps"), ({"notes": ["x"]}, "tokens_per_step"),
                       ({"notes": {"train_tokens": {"tokens_per_step": -1}}}, "tokens_per_step")):
        c = unit_cost({**good, **bad})
        assert getattr(c, field) is None and c.tokens_per_second is None, bad
    assert duration(None) == "–" and duration(12.34) == "12.3 s" and duration(300) == "5 min"
    assert duration(9000) == "2.5 h"
