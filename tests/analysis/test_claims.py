"""Claims and their verdicts (multiticket.analysis.claims) on hand-made runs: every verdict each
judge can return, and the borderline cases where the sign-flip test, not the means, decides."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from multiticket.analysis.claims import (
    COMPARISON,
    NOT_ATTEMPTED,
    NOT_REPRODUCED,
    NOT_RUN,
    PARTLY,
    REPRODUCED,
    UNTESTED,
    ClaimResult,
    claim_spec,
    judge_claim,
)
from multiticket.analysis.rundata import RunData, load_run
from multiticket.errors import UserError
from tests.analysis.synthetic import make_run

RANDOM = ("random_reinit", "random_mask")
Values = Callable[[int, str, int], float]


def run_of(tmp: Path, value: Values, seeds: int = 5, levels: int = 4,
           controls: tuple[str, ...] = RANDOM, metrics: Callable[[float], dict[str, float]] | None = None,
           report: dict[str, Any] | None = None, name: str = "run") -> RunData:
    """A finished synthetic run whose primary metric ``score`` (higher is better) of (seed,
    control, level) is ``value``; ``metrics`` adds more metrics derived from it. Level L is
    exactly 1 - 0.8^L sparse (20 %, 36 %, 48.8 %, 59 %)."""
    def unit(s: int, c: str, lv: int) -> dict[str, float]:
        v = float(value(s, c, lv))
        return {"score": v, **(metrics(v) if metrics else {})}
    return load_run(make_run(tmp / name, "rl", seeds=tuple(range(seeds)), levels=levels, controls=controls,
                             values=unit, report=report, extra=lambda s, c, lv: {"sparsity": 1 - 0.8**lv}))


def judge(data: dict[str, Any], run: RunData, **runs: RunData) -> ClaimResult:
    spec = claim_spec({"id": "c", "text": "a claim", **data}, "claim", "test")
    return judge_claim(spec, "part", {"task": run, **runs})


def ticket_wins(s: int, c: str, lv: int) -> float:
    """The ticket at 100 - level, every random control 5 x level below it, at every seed."""
    return 100.0 - lv + s * 0.1 - (0.0 if c == "ticket" else 5.0 * lv + (c == "random_mask"))


DEEP = {"judge": "beats-random", "from_sparsity": 0.45, "widening": True}  # levels 3 and 4 (48.8 %, 59 %)


def test_beats_random_reproduced_from_the_run_verdict(tmp_path: Path) -> None:
    run = run_of(tmp_path, ticket_wins)
    r = judge(DEEP, run)
    assert r.verdict == REPRODUCED and r.metric == "score"
    assert [e["level"] for e in r.evidence] == [1, 2, 3, 4] and all(e["won"] for e in r.evidence)
    assert all(e["p"] == pytest.approx(1 / 32) for e in r.evidence)
    assert "won at 2 of 2 levels" in r.detail and "(widening)" in r.detail
    assert r.tables == [("task", ["ticket", *RANDOM])] and "sign-flip" in r.test


def test_borderline_sign_flip_p_decides_not_the_means(tmp_path: Path) -> None:
    """One seed of five a hair worse at the deepest level: the mean gap is still 20 points, but
    p = 2/32 > 0.05, so the level is not won, and the fixed sequence stops there."""
    def one_seed_flips(hair: float) -> Values:
        def value(s: int, c: str, lv: int) -> float:
            if lv == 4 and c == "random_reinit" and s == 4:
                return ticket_wins(s, "ticket", lv) + hair  # the control beats (or trails) the ticket by `hair`
            return ticket_wins(s, c, lv)
        return value

    worse = judge(DEEP, run_of(tmp_path, one_seed_flips(0.01), name="worse"))
    assert worse.verdict == NOT_REPRODUCED
    deepest = next(e for e in worse.evidence if e["level"] == 4)
    assert deepest["p"] == pytest.approx(2 / 32) and not deepest["won"] and deepest["better_by_mean"]
    assert not any(e["won"] for e in worse.evidence)  # the sequence stopped at its first level
    assert "won at 0 of 2 levels" in worse.detail and "p = 0.0625" in worse.detail
    better = judge(DEEP, run_of(tmp_path, one_seed_flips(-0.01), name="better"))
    assert better.verdict == REPRODUCED  # every seed better again: p = 1/32


def test_beats_random_partly_untested_and_too_few_seeds(tmp_path: Path) -> None:
    # level 3 has one seed reversed: the deepest level is won, level 3 is not
    def value(s: int, c: str, lv: int) -> float:
        return ticket_wins(s, "ticket", lv) + 1 if (lv == 3 and s == 0 and c != "ticket") else ticket_wins(s, c, lv)
    run = run_of(tmp_path, value)
    partly = judge(DEEP, run)
    assert partly.verdict == PARTLY and "won at 1 of 2 levels" in partly.detail
    assert judge({**DEEP, "from_sparsity": 0.95}, run).verdict == UNTESTED  # nothing that deep
    few = judge(DEEP, run_of(tmp_path, ticket_wins, seeds=3, name="three"))
    assert few.verdict == UNTESTED and "too few seeds" in few.detail and "3 run, 5 needed" in few.detail
    assert "better by the mean at 2 of 2" in few.detail
    alone = judge(DEEP, run_of(tmp_path, ticket_wins, controls=("one_shot",), name="alone"))
    assert alone.verdict == UNTESTED and "no level with the ticket and a random control" in alone.detail


def test_the_claims_follow_the_runs_correction(tmp_path: Path) -> None:
    """report.correction = holm over 4 levels needs 7 seeds (2^-n <= 0.05 / 4): 5 seeds cannot win."""
    holm = run_of(tmp_path, ticket_wins, report={"correction": "holm"})
    r = judge(DEEP, holm)
    assert r.verdict == UNTESTED and "5 run, 7 needed" in r.detail and "Holm" in r.test
    assert judge({"judge": "beats-control", "control": "random_mask"}, holm).verdict == UNTESTED


def test_beats_random_all_won_but_not_widening_is_partly(tmp_path: Path) -> None:
    # the margin shrinks with sparsity: 20 points at levels 1-2, 2 at levels 3-4
    run = run_of(tmp_path, lambda s, c, lv: 100.0 + s - (0.0 if c == "ticket" else 20.0 if lv < 3 else 2.0))
    r = judge(DEEP, run)
    assert r.verdict == PARTLY and "not widening" in r.detail
    assert judge({**DEEP, "widening": False}, run).verdict == REPRODUCED


def test_beats_one_random_control_alone(tmp_path: Path) -> None:
    """random_prune always loses, random_reinit never: the run verdict (against both) wins nothing,
    each control's own claim follows its own test."""
    run = run_of(tmp_path, lambda s, c, lv: 80.0 + s + (0 if c == "ticket" else -5 if c == "random_prune" else 5),
                 controls=("random_prune", "random_reinit"))
    prune = judge({"judge": "beats-control", "control": "random_prune"}, run)
    assert prune.verdict == REPRODUCED and "won against random_prune at 4 of 4 levels" in prune.detail
    assert judge({"judge": "beats-control", "control": "random_reinit"}, run).verdict == NOT_REPRODUCED
    assert judge({"judge": "beats-random"}, run).verdict == NOT_REPRODUCED
    missing = judge({"judge": "beats-control", "control": "random_mask"}, run)
    assert missing.verdict == NOT_ATTEMPTED and "does not run random_mask" in missing.detail


def test_below_random(tmp_path: Path) -> None:
    controls = (*RANDOM, "one_shot")
    low = run_of(tmp_path, lambda s, c, lv: 50.0 + s - (20 if c == "one_shot" else 10 if c != "ticket" else 0),
                 controls=controls, name="low")
    spec = {"judge": "below-random", "control": "one_shot", "from_sparsity": 0.45}
    assert judge(spec, low).verdict == REPRODUCED
    high = run_of(tmp_path, lambda s, c, lv: 50.0 + s - (5 if c == "one_shot" else 10 if c != "ticket" else 0),
                  controls=controls, name="high")
    r = judge(spec, high)
    assert r.verdict == NOT_REPRODUCED and "shown below every random control at 0 of 2" in r.detail
    assert judge({**spec, "from_sparsity": 0.95}, high).verdict == UNTESTED
    assert judge(spec, run_of(tmp_path, ticket_wins, name="no-one-shot")).verdict == NOT_ATTEMPTED


@pytest.mark.parametrize(("ticket", "ablation", "verdict"), [
    ([100, 99, 95, 90], [99, 95, 60, 40], REPRODUCED),
    ([100, 99, 95, 90], [101, 100, 96, 91], NOT_REPRODUCED),
    ([100, 90, 80, 70], [99, 95, 90, 85], NOT_REPRODUCED),   # one win in four that the losses outweigh
    ([100, 99, 98, 10], [99, 98, 97, 90], PARTLY),           # most wins, one heavy loss: a negative mean gain
])
def test_ablation_by_the_means(tmp_path: Path, ticket: list[float], ablation: list[float], verdict: str) -> None:
    run = run_of(tmp_path, lambda s, c, lv: 100.0 if lv == 0 else (ticket if c == "ticket" else ablation)[lv - 1],
                 seeds=1, controls=("rewind_init",))
    r = judge({"judge": "ablation", "control": "rewind_init"}, run)
    assert r.verdict == verdict and "by the mean" in r.detail
    # one_shot's level 1 is the ticket's own mask: compared from level 2
    skip = judge({"judge": "ablation", "control": "rewind_init", "from_level": 2}, run)
    assert [e["level"] for e in skip.evidence] == [2, 3, 4]


def dense_then(values: list[float]) -> Values:
    """ticket value per level (level 0 = dense), random controls far below, seeds within 0.1."""
    return lambda s, c, lv: values[lv] + 0.01 * s - (0 if c == "ticket" else 30)


def test_matches_dense_at_uses_the_tasks_tolerance_and_says_so(tmp_path: Path) -> None:
    run = run_of(tmp_path, dense_then([100, 99, 98.5, 97, 90]), report={"tolerance": 0.02})
    at_half = {"judge": "matches-dense-at", "sparsity": 0.5, "window": 0.05}  # level 3, 48.8 %
    r = judge(at_half, run)
    assert r.verdict == NOT_REPRODUCED  # 97.02 < 100.02 - 2.0004
    assert "within 0.02 × |dense| = 2 of dense (the task's report.tolerance)" in r.detail
    assert "largest matching sparsity 36" in r.detail
    loose = judge({**at_half, "tolerance": 0.031, "tolerance_source": "the paper's drop"}, run)
    assert loose.verdict == REPRODUCED and "(the paper's drop)" in loose.detail and "0.031 ×" in loose.test
    assert judge({**at_half, "sparsity": 0.9}, run).verdict == UNTESTED  # no level near 90 %


def test_matches_dense_at_the_tolerance_edge(tmp_path: Path) -> None:
    """Exactly tolerance × |dense| below dense still matches (stats.matches: no worse by more than)."""
    edge = run_of(tmp_path, lambda s, c, lv: (100.0 if lv == 0 else 98.0) - (0 if c == "ticket" else 30), seeds=2,
                  report={"tolerance": 0.02}, name="edge")
    assert judge({"judge": "matches-dense-at", "sparsity": 0.5}, edge).verdict == REPRODUCED
    below = run_of(tmp_path, lambda s, c, lv: (100.0 if lv == 0 else 97.99) - (0 if c == "ticket" else 30), seeds=2,
                   report={"tolerance": 0.02}, name="below")
    assert judge({"judge": "matches-dense-at", "sparsity": 0.5}, below).verdict == NOT_REPRODUCED


def test_min_dense_and_the_fallback_metric(tmp_path: Path) -> None:
    """BLEU below 1 dense: a BLEU claim is not judged; one with a fallback is judged on eval_loss."""
    run = run_of(tmp_path, dense_then([0.5, 0.5, 0.5, 0.5, 0.5]), metrics=lambda v: {"eval_loss": 6.0 - v})
    bleu = judge({"judge": "matches-dense-at", "sparsity": 0.5, "min_dense": 1.0}, run)
    assert bleu.verdict == UNTESTED and "dense score 0.52 is below 1: not judged on score" in bleu.detail
    loss = judge({"judge": "ablation", "control": "random_reinit", "min_dense": 1.0, "fallback_metric": "eval_loss"}, run)
    assert loss.metric == "eval_loss" and "judged on eval_loss" in loss.detail
    assert loss.verdict == REPRODUCED  # the ticket's loss is lower: eval_loss is lower-is-better


@pytest.mark.parametrize(("values", "verdict"), [
    ([100, 100, 100, 99.5, 90], REPRODUCED),        # matches up to 48.8 % (>= 40 %)
    ([100, 100, 90, 90, 90], PARTLY),               # matches only at 20 %, deeper levels ran
    ([100, 90, 90, 90, 90], NOT_REPRODUCED),
])
def test_matching_range(tmp_path: Path, values: list[float], verdict: str) -> None:
    run = run_of(tmp_path, dense_then(values), report={"tolerance": 0.01})
    r = judge({"judge": "matching-range", "from_sparsity": 0.4}, run)
    assert r.verdict == verdict and "(the task's report.tolerance)" in r.detail
    shallow = run_of(tmp_path, dense_then([100, 100, 100]), levels=2, report={"tolerance": 0.01}, name="shallow")
    assert judge({"judge": "matching-range", "from_sparsity": 0.4}, shallow).verdict == UNTESTED


def test_dense_at_least_reads_baselines_and_facts(tmp_path: Path) -> None:
    run = run_of(tmp_path, dense_then([0.8] * 3), levels=2, metrics=lambda v: {"f1_macro": v - 0.05})
    (run.root / "baselines.json").write_text(json.dumps({"format": 1, "domain": "rl",
                                                         "baselines": {"majority_rate": 0.6}}))
    run = load_run(run.root)
    spec = {"judge": "dense-at-least", "at_least": 0.75, "above": {"score": "majority_rate", "f1_macro": "constant_f1"}}
    unknown = judge(spec, run)
    assert unknown.verdict == UNTESTED and "constant_f1 is unknown" in unknown.detail
    ok = judge_claim(claim_spec({"id": "d", "text": "t", **spec}, "c", "-"), "p", {"t": run}, {"constant_f1": 0.37})
    assert ok.verdict == REPRODUCED and "above the majority_rate 0.6: yes" in ok.detail
    high = judge_claim(claim_spec({"id": "d", "text": "t", **spec, "at_least": 0.9}, "c", "-"), "p", {"t": run},
                       {"constant_f1": 0.37})
    assert high.verdict == NOT_REPRODUCED and "at least 0.9: no" in high.detail


def test_wider_margin_needs_both_tasks_and_a_wider_margin(tmp_path: Path) -> None:
    layers = run_of(tmp_path, lambda s, c, lv: 100.0 + s - (0 if c == "ticket" else 10 * lv), name="layers")
    every = run_of(tmp_path, lambda s, c, lv: 100.0 + s - (0 if c == "ticket" else 2 * lv), name="all")
    spec = {"judge": "wider-margin", "against": "all"}
    assert judge(spec, layers, all=every).verdict == REPRODUCED
    assert judge(spec, every, all=layers).verdict == PARTLY  # won everywhere, but narrower
    assert judge(spec, layers).verdict == UNTESTED  # the other task has not run


def test_comparison_not_attempted_and_not_run(tmp_path: Path) -> None:
    run = run_of(tmp_path, ticket_wins, controls=("one_shot",))
    found = judge({"judge": "compare-controls", "controls": {"one_shot": 2}}, run)
    assert found.verdict == COMPARISON and "by the mean at 3 of 3 levels from level 2" in found.detail
    skipped = judge({"judge": "not-attempted", "reason": "no GPU"}, run)
    assert (skipped.verdict, skipped.detail) == (NOT_ATTEMPTED, "no GPU")
    spec = claim_spec({"id": "c", "text": "t", "judge": "beats-random"}, "c", "-")
    assert judge_claim(spec, "part", {}).verdict == NOT_RUN
    assert judge_claim(spec, "part", {"task": run}, None).as_dict()["claim"] == "t"


@pytest.mark.parametrize(("data", "message"), [
    ({"judge": "beats-randon"}, "test: claim.judge: unknown judge 'beats-randon' (judges: beats-random,"),
    ({"judge": "beats-random", "from_sparsity": "0.8"}, "test: claim.from_sparsity: Input should be a valid number"),
    ({"judge": "beats-random", "from_sparsity": 1.5}, "test: claim.from_sparsity: Input should be less than 1"),
    ({"judge": "ablation"}, "test: claim.control: required key is missing"),
    ({"judge": "ablation", "control": "one_shot", "levels": 2}, "test: claim.levels: unknown key"),
])
def test_a_bad_claim_is_one_line_naming_its_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as err:
        claim_spec({"id": "c", "text": "t", **data}, "claim", "test")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
