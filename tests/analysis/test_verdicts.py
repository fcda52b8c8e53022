"""Verdicts that are evidence: a level is won only where the sign-flip test rejects against every
random control (intersection-union), the levels follow a fixed sequence from the deepest (or
Holm), too few seeds is said and never computed, and a control's role (not its name) makes it a
random control; --metric / report.metric choose the headline and the terminal table; numbers print
in plain notation. Synthetic run directories (no training)."""

from __future__ import annotations

import html as htmllib
import re
from pathlib import Path

import pytest

from multiticket.analysis.report import level_verdict, write_report
from multiticket.analysis.rundata import load_run
from multiticket.analysis.stats import fmt
from multiticket.analysis.summary import level_table
from multiticket.analysis.verdicts import run_verdict
from multiticket.api import resolve_task
from multiticket.cli import main
from multiticket.errors import UserError
from tests.analysis.synthetic import make_run

SEEDS5 = (0, 1, 2, 3, 4)
#: ticket − control per seed at level 1 for random_mask: better by the mean (+3.8) but one seed
#: loses, so 2 of the 32 sign patterns reach the observed sum: p = 1/16 > 0.05
MIXED = {0: 5.0, 1: 5.0, 2: -1.0, 3: 5.0, 4: 5.0}


def _values(seed: int, control: str, level: int) -> dict[str, float]:
    """accuracy: the ticket ahead (see MIXED); f1_macro: the ticket behind every control."""
    base = 0.8 - 0.01 * level + 0.001 * seed
    if control == "ticket":
        return {"accuracy": base, "f1_macro": base - 0.2, "eval_loss": 0.5}
    gap = MIXED[seed] if (control, level) == ("random_mask", 1) else 5.0 + seed
    return {"accuracy": base - gap / 100, "f1_macro": base - 0.2 + 0.05, "eval_loss": 0.5 + gap / 100}


def _headline(page: str) -> str:
    found = re.search(r'<p class="headline">(.*?)</p>', page, re.S)
    assert found is not None
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    return make_run(tmp_path, "nlp", seeds=SEEDS5, levels=2, values=_values)


def test_a_level_whose_test_does_not_reject_is_not_won(mixed: Path):
    run = load_run(mixed)
    verdict = run_verdict(run)
    assert verdict.tests[1].comparisons["random_mask"].p_better == pytest.approx(2 / 32)
    assert verdict.tests[2].p == pytest.approx(1 / 32) and verdict.needed == 5
    assert level_verdict(run, 1)[0] is False and level_verdict(run, 2)[0] is True
    page = write_report(mixed).read_text()
    headline = _headline(page)
    assert "at 1 of 2 pruned level(s) (L2) over 5 seeds" in headline
    assert "fixed sequence from the deepest level" in headline
    assert "at 1 more level(s) (L1) it is better by the mean only, which is no win" in headline
    assert re.search(r"Level 1 ·[^<]*· winning <span class=\"no\">✗ no</span> <span class=\"kind\">\(p = 0.0625; "
                     r"better by the mean only\)", page)
    assert re.search(r"Level 2 ·[^<]*· winning <span class=\"yes\">✓ yes</span>", page)
    assert "no difference shown, p = 0.0625 (better by the mean)" in page
    assert page.count("ticket better, p = 0.0312") == 3  # random_reinit at L1 and L2, random_mask at L2


def test_the_sequence_stops_at_the_deepest_level_not_won(tmp_path: Path):
    """L2 (deepest) loses to random_mask, so L1 is never reached, however small its p."""
    def values(seed: int, control: str, level: int) -> dict[str, float]:
        gap = -0.05 if (control, level) == ("random_mask", 2) else 0.05 + 0.001 * seed
        return {"accuracy": 0.8 if control == "ticket" else 0.8 - gap}

    run = load_run(make_run(tmp_path, "nlp", seeds=SEEDS5, levels=2, values=values))
    verdict = run_verdict(run)
    assert verdict.order == (2, 1) and verdict.stopped == 2 and verdict.won == frozenset()
    assert verdict.tests[1].p == pytest.approx(1 / 32)
    assert level_verdict(run, 1)[0] is False
    assert "not reached: the sequence stopped at level 2" in write_report(run.root).read_text()


def test_holm_needs_more_seeds_and_says_so(tmp_path: Path):
    root = make_run(tmp_path, "nlp", seeds=SEEDS5, levels=2, values=_values, report={"correction": "holm"})
    verdict = run_verdict(load_run(root))
    assert verdict.correction == "holm" and verdict.needed == 6  # 2^-6 <= 0.05 / 2 < 2^-5
    assert verdict.state == "too_few_seeds" and verdict.won == frozenset()
    headline = _headline(write_report(root).read_text())
    assert "Too few seeds to judge winning: 5 seed(s) run, 6 needed" in headline and "Holm" in headline


@pytest.mark.parametrize("seeds", [(0,), (0, 1), (0, 1, 2, 3)])
def test_fewer_than_five_seeds_are_too_few_and_never_won(tmp_path: Path, seeds: tuple[int, ...]):
    run = make_run(tmp_path, "rl", seeds=seeds, levels=2)
    page = write_report(run).read_text()
    headline = _headline(page)
    assert f"Too few seeds to judge winning: {len(seeds)} seed(s) run, 5 needed" in headline
    assert "By the mean alone the ticket beats every random control at 2 of 2 pruned level(s) (L1, L2)" in headline
    assert level_verdict(load_run(run), 1)[0] is None and level_verdict(load_run(run), 2)[0] is None
    assert "winning <span class=\"yes\">" not in page


def test_a_control_is_random_by_its_role_not_its_name(tmp_path: Path):
    """A control only a plugin knows, recorded as random, counts in the verdict and in compare;
    recorded as an ablation, it does not."""
    def values(seed: int, control: str, level: int) -> dict[str, float]:
        return {"accuracy": 0.8 if control == "ticket" else (0.9 if control == "plugin_rand" else 0.7)}

    for role, won in (("random", False), ("ablation", True)):
        root = make_run(tmp_path / role, "nlp", seeds=SEEDS5, levels=2, values=values,
                        controls=("random_mask", "plugin_rand"), roles={"plugin_rand": role})
        (root / "config.yaml").write_text((root / "config.yaml").read_text().replace("- plugin_rand\n", ""))
        run = load_run(root)
        assert ("plugin_rand" in run.random_controls) is (role == "random")
        assert (run_verdict(run).won == frozenset({1, 2})) is won
        page = write_report(root).read_text()
        assert f"plugin_rand <span class=\"kind\">{'random control' if role == 'random' else 'ablation'}" in page
        assert main(["compare", str(root), "--out", str(tmp_path / f"cmp-{role}")]) == 0
        cmp_page = (tmp_path / f"cmp-{role}" / "comparison.html").read_text()
        assert (">plugin_rand<" in cmp_page) is (role == "random")  # the best random control of the margin table


def test_metric_option_changes_the_headline_and_the_table(mixed: Path, capsys):
    assert main(["report", str(mixed)]) == 0
    default = _headline((mixed / "report.html").read_text())
    assert "accuracy" in capsys.readouterr().out.splitlines()[0]
    assert main(["report", str(mixed), "--metric", "f1_macro"]) == 0
    page = (mixed / "report.html").read_text()
    chosen = _headline(page)
    assert chosen != default and "f1_macro" in chosen and "accuracy" in default
    assert "at 0 of 2 pruned level(s)" in chosen  # the ticket's f1_macro is worse than every control's
    out = capsys.readouterr().out
    assert "f1_macro by level and control" in out
    # the other metrics are still on the page, folded, with their directions
    assert 'data-metric="accuracy"' in page and 'data-metric="eval_loss"' in page
    assert "<b>eval_loss</b> <span class=\"kind\">(lower is better)</span>" in page


def test_report_metric_in_the_task_is_the_default_and_not_hashed(tmp_path: Path):
    run = make_run(tmp_path, "nlp", seeds=SEEDS5, levels=2, values=_values, report={"metric": "f1_macro"})
    assert load_run(run).metric == "f1_macro"
    assert "f1_macro" in _headline(write_report(run).read_text())
    assert load_run(run, "accuracy").metric == "accuracy"  # --metric wins over the task
    plain = resolve_task("toy-mlp")
    chosen = resolve_task("toy-mlp", ["report.metric=loss"])
    assert chosen.config.report.metric == "loss" and chosen.run_name == plain.run_name


def test_unknown_metric_is_one_line_exit_2(mixed: Path, capsys):
    assert main(["report", str(mixed), "--metric", "f1_weighted"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["multiticket: error: --metric: unknown metric 'f1_weighted'; this run records: accuracy, "
                   "eval_loss, f1_macro"]
    assert not (mixed / "report.html").exists()
    with pytest.raises(UserError, match="no better direction"):
        load_run(make_run(mixed.parent / "rl", "rl", values=lambda s, c, lv: {"eval_return": 1.0 + s,
                                                                                "eval_return_std": 0.5}),
                 "eval_return_std")


def test_numbers_print_in_plain_notation():
    assert fmt(170.3) == "170.3" and fmt(169.7, 2) == "170" and fmt(1234567.8) == "1235000"
    assert fmt(0.012345) == "0.01235" and fmt(0.5) == "0.5" and fmt(-4.8) == "-4.8" and fmt(0.0) == "0"
    assert fmt(float("nan")) == "–" and fmt(None) == "–" and fmt(3e-7) == "3e-07"
    records = [{"task": "t", "control": "ticket", "level": 0, "sparsity": 0.0, "seed": s, "metric": "r",
                "metrics": {"r": v}} for s, v in ((0, 100.0), (1, 340.0))]
    _, _, rows = level_table(records)
    assert rows == [["0", "0.0%", "220 ± 170"]]
    assert "e+" not in "".join(fmt(10.0**k) for k in range(-4, 15))


def test_metric_directions_from_names():
    from multiticket.analysis.metric_choice import direction

    lm = [("perplexity", False), ("test_perplexity", False), ("loss", False), ("test_loss", False)]
    clf = [("accuracy", True), ("f1_macro", True), ("eval_loss", False), ("test_f1_macro", True)]
    rl = [("eval_return", True), ("ticket_reward", True), ("eval_return_std", None), ("eval_length", None)]
    for primary, higher, cases in (("perplexity", False, lm), ("accuracy", True, clf), ("eval_return", True, rl)):
        for name, expected in cases:
            assert direction(name, primary, higher) is expected, name
    assert direction("bleu", "bleu", True) and direction("test_bleu", "bleu", True)
    assert direction("word_error_rate", "bleu", True) is False
