"""Degenerate-result flags: they fire on a constant classifier, an LM at the unigram perplexity, a
random RL policy's return, controls identical to the ticket and a unit that went NaN; they stay
silent on results like the shipped demo's; a flagged level is never matching or winning; a run
without baselines.json says "not measured"."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from multiticket.analysis import degenerate as D
from multiticket.analysis.report import headline, level_verdict, write_report
from multiticket.analysis.rundata import load_run
from multiticket.core.store import RunStore, Unit
from tests.analysis.synthetic import make_run

#: CartPole-v1's random policy as `multiticket run cartpole-ppo` measures it (10 episodes)
CARTPOLE_RANDOM = {"random_return_mean": 25.0, "random_return_std": 13.251415018781957, "random_episodes": 10.0}


def rewrite(root: Path, metric: str, higher: bool, metrics_of: Callable[[int, str, int], dict[str, float]]) -> None:
    """Give every unit of a synthetic run the metrics ``metrics_of(seed, control, level)``."""
    store = RunStore(root)
    for path in root.glob("seed_*/*/level_*/metrics.json"):
        record = json.loads(path.read_text())
        record.update(metric=metric, higher_is_better=higher,
                      metrics=metrics_of(record["seed"], record["control"], record["level"]))
        path.write_text(json.dumps(record))
        store.finish(path.parent, ["mask.safetensors", "metrics.json"])


def with_baselines(root: Path, domain: str, values: dict[str, float]) -> None:
    (root / "baselines.json").write_text(json.dumps({"format": 1, "domain": domain, "baselines": values}))


def verdicts(root: Path) -> dict[int, tuple[bool | None, bool | None]]:
    run = load_run(root)
    return {lv: level_verdict(run, lv) for lv in run.levels if lv > 0}


def test_constant_classifier_flagged_never_matching(tmp_path: Path):
    """Rotten Tomatoes MiniLM at 20 steps: 0.59 accuracy, one class predicted, in every unit."""
    root = make_run(tmp_path, "nlp", seeds=(0, 1), levels=2)
    rewrite(root, "accuracy", True, lambda s, c, lv: {
        "accuracy": 0.59, "f1_macro": 0.371, "eval_loss": 0.68 + 0.01 * lv + (c != "ticket") * 0.001,
        "predicted_classes": 1.0, "top_class_fraction": 1.0})
    with_baselines(root, "nlp", {"majority_rate": 0.59, "test_majority_rate": 0.5475})
    run = load_run(root)
    for r in run.records:
        checks = {f.check for f in D.unit_flags(r, run.baselines)}
        assert checks == {"majority", "one_class"}, (r["control"], r["level"], checks)
    # without flags: matching everywhere; winning is not judged at 2 seeds (too few for any test)
    assert all(v == (None, False) for v in verdicts(root).values())
    assert headline(run)["best"] is None and headline(run)["wins"]["won"] == [] and headline(run)["wins"]["mean_only"] == []
    html = write_report(root).read_text()
    assert f"Degenerate results: {len(run.records)} of {len(run.records)} unit(s) flagged" in html
    assert "accuracy 0.59 ≤ majority-class rate 0.59" in html


def test_without_baselines_the_majority_check_says_not_measured(tmp_path: Path):
    root = make_run(tmp_path, "nlp", seeds=(0,), levels=1)
    rewrite(root, "accuracy", True, lambda s, c, lv: {"accuracy": 0.59 + 0.01 * (c == "ticket")})
    run = load_run(root)
    assert run.baselines is None and not D.flagged_units(run)
    status = {c["check"]: c["status"] for c in D.check_status(run)}
    assert status["majority"].startswith("not measured") and status["one_class"].startswith("not measured")
    assert status["identical"] == "checked"
    html = write_report(root).read_text()
    assert "Baselines: not measured" in html and "no unit flagged (baselines not measured" in html


def test_lm_at_unigram_perplexity_flagged(tmp_path: Path):
    root = make_run(tmp_path, "nlp", seeds=(0,), levels=2)  # perplexity ~ 20-21, lower is better
    with_baselines(root, "nlp", {"unigram_perplexity": 20.5, "test_unigram_perplexity": 22.0})
    run = load_run(root)
    flagged = {(u.control, u.level) for u, _ in D.flagged_units(run)}
    expected = {(r["control"], r["level"]) for r in run.records if r["metrics"]["perplexity"] >= 20.5}
    assert flagged == expected and ("ticket", 0) not in flagged and flagged


def test_random_policy_return_flagged_trained_one_not():
    random = CARTPOLE_RANDOM
    unit = {"metrics": {"eval_return": 31.0, "eval_return_std": 12.0}}
    assert [f.check for f in D.unit_flags(unit, random)] == ["random_policy"]  # 6 above, 2 SE = 11.3
    assert not D.unit_flags({"metrics": {"eval_return": 500.0, "eval_return_std": 0.0}}, random)
    assert D.unit_flags({"metrics": {"eval_return": 9.0}}, random)  # below random: flagged too
    se = (random["random_return_std"] ** 2 / 10) ** 0.5
    assert D.within_noise(25.0 + 2 * se, 0.0, 10, 25.0, random["random_return_std"], 10)
    assert not D.within_noise(25.0 + 2 * se + 1e-6, 0.0, 10, 25.0, random["random_return_std"], 10)


def demo_like(seed: int, control: str, level: int) -> dict[str, float]:
    """What cartpole-ppo's demo gives: the ticket keeps 500, the controls fall, training differs."""
    ticket = control == "ticket"
    ret = 500.0 if ticket or level < 2 else 500.0 - 60.0 * level
    return {"eval_return": ret, "eval_return_std": 0.0 if ret == 500.0 else 30.0, "eval_length": ret,
            "ticket_reward": 480.0 - 3.0 * level - (0 if ticket else 20.0)}


def test_silent_on_the_demo_results(tmp_path: Path):
    root = make_run(tmp_path, "rl", seeds=(0,), levels=5)
    rewrite(root, "eval_return", True, demo_like)
    with_baselines(root, "rl", CARTPOLE_RANDOM)
    run = load_run(root)
    assert not D.flagged_units(run) and not D.degenerate_section(run)["levels"]
    assert all(matching for _, matching in verdicts(root).values())
    html = write_report(root).read_text()
    assert "Degenerate-result checks: no unit flagged." in html and "Flagged level" not in html


def test_identical_controls_flag_the_level(tmp_path: Path):
    root = make_run(tmp_path, "rl", seeds=(0, 1, 2, 3, 4), levels=2)  # 5 seeds: winning is judged
    rewrite(root, "eval_return", True, lambda s, c, lv: {"eval_return": 500.0 - lv * (c != "ticket"),
                                                         "eval_length": 500.0})
    run = load_run(root)
    assert D.identical_controls(run, 0) is False and D.identical_controls(run, 2) is False
    assert [f.check for f in D.level_flags(run, 1)] == [] and D.identical_controls(run, 1) is False
    rewrite(root, "eval_return", True, lambda s, c, lv: {"eval_return": 500.0, "eval_length": 500.0 - s})
    run = load_run(root)
    assert [f.check for f in D.level_flags(run, 1)] == ["identical"]
    assert verdicts(root) == {1: (False, False), 2: (False, False)}


def test_unit_that_went_nan_is_flagged(tmp_path: Path):
    root = make_run(tmp_path, "nlp", seeds=(0,), levels=2, skip=((0, "ticket", 2),))
    failed = root / Unit(0, "ticket", 2).relpath() / "FAILED"
    failed.parent.mkdir(parents=True, exist_ok=True)
    failed.write_text(json.dumps({"unit": "seed_0/ticket/level_2",
                                  "error": "non-finite values in 'classifier.weight' at step 40", "time": "x"}))
    (root / Unit(0, "random_mask", 1).relpath() / "FAILED").write_text("not json {")  # ignored, not NaN
    run = load_run(root)
    assert list(D.failed_nan(run)) == [Unit(0, "ticket", 2)]
    section = D.degenerate_section(run)
    assert section["units"][-1]["unit"] == "seed_0/ticket/level_2"
    assert "failed: non-finite values" in write_report(root).read_text()


def test_flag_reasons_are_escaped(tmp_path: Path):
    root = make_run(tmp_path, "nlp", seeds=(0,), levels=1, skip=((0, "ticket", 1),))
    failed = root / Unit(0, "ticket", 1).relpath() / "FAILED"
    failed.parent.mkdir(parents=True, exist_ok=True)
    failed.write_text(json.dumps({"error": "non-finite <script>alert(1)</script>"}))
    html = write_report(root).read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html


def test_a_non_finite_evaluation_fails_the_unit_and_is_flagged(tmp_path: Path, monkeypatch):
    from multiticket.adapters.toy import ToyAdapter
    from multiticket.cli import main

    evaluate = ToyAdapter.evaluate

    def nan_when_pruned(self: ToyAdapter) -> dict[str, float]:
        metrics = evaluate(self)
        pruned = bool((self.module[0].weight == 0).float().mean() > 0.1)
        return {**metrics, "loss": float("nan")} if pruned else metrics

    monkeypatch.setattr(ToyAdapter, "evaluate", nan_when_pruned)
    out = tmp_path / "runs"
    args = ["run", "toy-mlp", "--quiet", "--levels", "1", "--seeds", "0", "--workers", "1", "--out", str(out),
            "--set", "train.steps=40", "--set", "toy.n_train=128", "--set", "toy.n_test=64",
            "--set", "toy.hidden=[8]", "--set", "controls=[random_mask]"]
    assert main(args) != 0
    (root,) = out.iterdir()
    failed = json.loads((root / "seed_0/ticket/level_1/FAILED").read_text())["error"]
    assert "non-finite evaluation: loss=nan" in failed
    run = load_run(root)
    assert set(D.failed_nan(run)) == {Unit(0, "ticket", 1)}  # random_mask needs its mask: skipped
    html = write_report(root).read_text()
    assert "failed: non-finite evaluation: loss=nan" in html and "1 of 2 unit(s) flagged" in html  # the dense unit and the failed one


@pytest.mark.parametrize(("metric", "higher", "baselines", "expected"), [
    ("accuracy", True, {"majority_rate": 0.59, "test_majority_rate": 0.55}, (0.59, "majority-class rate", False)),
    ("perplexity", False, {"unigram_perplexity": 546.0}, (546.0, "unigram perplexity", True)),
    ("eval_return", True, {"random_return_mean": -500.0, "random_return_std": 0.0, "random_episodes": 10.0},
     (-500.0, "random policy", False)),
    ("bleu", True, {"trivial_bleu": 0.4}, (0.4, "trivial bleu", False)),  # a user's own metric, by key
    ("bleu", True, {"majority_rate": 0.59}, None),
    ("accuracy", True, {}, None),  # no baselines.json: a run made before they were measured
])
def test_anchor_baseline_of_each_metric(tmp_path: Path, metric: str, higher: bool, baselines: dict[str, float],
                                        expected: tuple[float, str, bool] | None):
    root = make_run(tmp_path, "nlp", seeds=(0,), levels=1)
    rewrite(root, metric, higher, lambda s, c, lv: {metric: 1.0 + lv})
    if baselines:
        with_baselines(root, "nlp", baselines)
    assert D.anchor_baseline(load_run(root)) == expected
