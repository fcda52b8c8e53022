"""scripts/compare_domains.py on synthetic RL and NLP runs, given directly and through study results files."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.analysis.synthetic import make_run

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_domains.py"


@pytest.fixture(scope="module")
def cd() -> Any:
    spec = importlib.util.spec_from_file_location("compare_domains", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_numbers_figures_and_readme_block(cd: Any, tmp_path: Path) -> None:
    rl, nlp = make_run(tmp_path / "runs", "rl", levels=3), make_run(tmp_path / "runs", "nlp", levels=3)
    out, img = tmp_path / "dom", tmp_path / "img"
    assert cd.main([str(rl), str(nlp), "--out", str(out), "--publish", str(img)]) == 0
    assert (out / "comparison.html").is_file()
    assert sorted(p.name for p in img.iterdir()) == ["domains-margin.png", "domains-normalised.png", "domains-roles.png"]

    data = json.loads((out / "domains.json").read_text())
    by = {r["domain"]: r for r in data["runs"]}
    # the synthetic controls lose 5 % of the metric per level: the ticket's margin grows with sparsity
    for r in by.values():
        assert [lv["level"] for lv in r["levels"]] == [0, 1, 2, 3]
        assert 0 < r["margin_first"] < r["margin_deepest"] and r["margin_slope_per_10pct"] > 0
        assert r["first_level"]["level"] == 1
    assert set(by["rl"]["matched"]["roles"]) == {"input", "hidden", "output"}
    assert {"attention.query", "attention.key", "attention.output", "ffn.intermediate", "ffn.output", "pooler",
            "embeddings", "head"} == set(by["nlp"]["matched"]["roles"])
    assert set(by["nlp"]["matched"]["families"]) == {"embeddings", "attention", "ffn", "pooler", "head"}
    # matched sparsity: the largest every run has reached
    assert data["sparsity"] == pytest.approx(min(r["levels"][-1]["sparsity"] for r in data["runs"]))

    block = (out / "readme-block.md").read_text()
    assert f"]({img / 'domains-normalised.png'})" in block and "| run | domain |" in block
    assert "grows with sparsity** (positive margin slope) in: synthetic-rl-0000beef, synthetic-nlp-0000beef" in block


def test_study_results_pick_the_figure_runs(cd: Any, tmp_path: Path) -> None:
    yu, chen = tmp_path / "yu", tmp_path / "chen"
    rl, nlp = make_run(yu, "rl"), make_run(chen, "nlp")
    (yu / "results.json").write_text(json.dumps({"parts": {
        "cartpole": {"runs": [{"run_dir": rl.name}]}, "transformer": {"runs": [{"run_dir": "elsewhere"}]},
        "acrobot": {"runs": [{"run_dir": "not-run-yet"}]}}}))
    (chen / "results.json").write_text(json.dumps({"run_dir": nlp.name}))
    assert cd.study_runs([yu, chen]) == [rl, nlp]
    assert cd.main(["--studies", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
