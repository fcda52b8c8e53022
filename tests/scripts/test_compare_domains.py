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
    assert "grows with sparsity** (positive margin slope over the levels not flagged degenerate) in: synthetic-rl-0000beef, synthetic-nlp-0000beef" in block


def test_study_results_pick_the_figure_runs(cd: Any, tmp_path: Path) -> None:
    yu, chen = tmp_path / "yu", tmp_path / "chen"
    rl, nlp = make_run(yu, "rl"), make_run(chen, "nlp")
    (yu / "results.json").write_text(json.dumps({"parts": {
        "cartpole": {"runs": [{"run_dir": rl.name}]}, "transformer": {"runs": [{"run_dir": "elsewhere"}]},
        "acrobot": {"runs": [{"run_dir": "not-run-yet"}]}}}))
    (chen / "results.json").write_text(json.dumps({"run_dir": nlp.name}))  # before studies/chen2020.yaml
    assert cd.study_runs([yu, chen]) == [rl, nlp]
    # a study's results now: every study lists its parts (studies/*.yaml), MiniLM's included
    (chen / "results.json").write_text(json.dumps({"parts": {"minilm": {"runs": [{"run_dir": nlp.name}]}}}))
    assert cd.study_runs([yu, chen]) == [rl, nlp]
    assert cd.main(["--studies", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def collapsed_minilm(out: Path) -> Path:
    """The MiniLM study's shape: the ticket learns to level 2 and collapses to the majority rate at
    3-4; the random controls never learn (majority rate everywhere)."""
    from tests.analysis.test_degenerate import rewrite, with_baselines

    root = make_run(out, "nlp", seeds=(0, 1), levels=4)
    ticket = {0: 0.82, 1: 0.81, 2: 0.79, 3: 0.59, 4: 0.59}
    rewrite(root, "accuracy", True, lambda s, c, lv: {
        "accuracy": (ticket[lv] if c == "ticket" else 0.59) + 0.002 * s})
    with_baselines(root, "nlp", {"majority_rate": 0.59, "test_majority_rate": 0.55})
    return root


def test_degenerate_levels_are_marked_and_left_out_of_the_margin_trend(cd: Any, tmp_path: Path) -> None:
    root = collapsed_minilm(tmp_path / "runs")
    out = tmp_path / "dom"
    assert cd.main([str(root), "--out", str(out)]) == 0
    row = json.loads((out / "domains.json").read_text())["runs"][0]
    # seed 1 sits 0.002 above the majority rate, seed 0 on it: the ticket of levels 3-4 is flagged
    assert row["flagged_levels"] == [3, 4]
    assert [lv["flagged"] is not None for lv in row["levels"]] == [False, False, False, True, True]
    assert "majority-class rate (seed 0)" in row["levels"][3]["flagged"]
    # judged on levels 1-2 only: the margin shrinks from 0.81 to 0.79 (normalised), not to 0 at the collapse
    dense = 0.821
    assert row["margin_first"] == pytest.approx((0.811 - 0.591) / dense)
    assert row["margin_deepest"] == pytest.approx((0.791 - 0.591) / dense)
    assert row["margin_slope_per_10pct"] == pytest.approx(0.1 * (0.791 - 0.811) / dense / (0.36 - 0.2), rel=0.05)
    # the best of two equal controls, at both judged levels
    assert row["degenerate_controls"] in ({"random_mask": [1, 2]}, {"random_reinit": [1, 2]})
    md = (out / "domains.md").read_text()
    assert "| L3 (" in md and "at L1, L2), the margin says the ticket learns where a random network does not" in md
    # on the baseline-anchored scale (0 = majority rate 0.59, 1 = dense 0.821) the first margin is
    # the share of the gap the ticket keeps and the random controls do not
    gap = 0.821 - 0.59
    assert row["baseline"] == "majority-class rate 0.59"
    assert row["anchored_margin_first"] == pytest.approx((0.811 - 0.591) / gap)
    assert row["levels"][2]["anchored_ticket"] == pytest.approx((0.791 - 0.59) / gap)
    assert "| majority-class rate 0.59 | 0.87 | 0.952 | 0.866 |" in md
    html = (out / "comparison.html").read_text()
    assert "Between the trivial baseline and dense" in html and (out / "plots" / "anchored.png").is_file()
    assert html.count("level flagged, not judged:") == 2
    assert "the margin says the ticket learns where the control does not" in html


def test_a_run_without_degenerate_levels_flags_none(cd: Any, tmp_path: Path) -> None:
    rl = make_run(tmp_path / "runs", "rl", levels=1)
    assert cd.main([str(rl), "--out", str(tmp_path / "dom")]) == 0
    row = json.loads((tmp_path / "dom" / "domains.json").read_text())["runs"][0]
    assert row["flagged_levels"] == [] and row["degenerate_controls"] == {}
    html = (tmp_path / "dom" / "comparison.html").read_text()
    assert "level flagged, not judged" not in html
    # no baselines.json: no anchored figure, and the table says so
    assert row["baseline"] is None and "Between the trivial baseline and dense" not in html
    assert "| synthetic-rl-0000beef | not measured | " in (tmp_path / "dom" / "domains.md").read_text()
    # one judged level: no slope, and the block says so instead of "not in"
    assert "not in: none; too few judged levels to tell: synthetic-rl-0000beef." in (
        tmp_path / "dom" / "readme-block.md").read_text()
