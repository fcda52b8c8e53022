"""report.html and comparison.html built from a tiny real toy run and synthetic rl/nlp runs."""

from __future__ import annotations

import csv
import math
import re
import shutil
import statistics
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pytest

from multiticket.analysis.compare import write_comparison
from multiticket.analysis.report import write_report
from multiticket.cli import main
from multiticket.errors import UserError
from tests.analysis.synthetic import make_run


class Cells(HTMLParser):
    """Collects every table cell that carries data-value (with its other data-* attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k[5:]: v or "" for k, v in attrs if k.startswith("data-")}
        if tag == "td" and "value" in a:
            self.cells.append(a)


def cells(html: str) -> list[dict[str, str]]:
    p = Cells()
    p.feed(html)
    return p.cells


def csv_means(run: Path, metric: str) -> dict[tuple[str, int], float]:
    by: dict[tuple[str, int], list[float]] = defaultdict(list)
    with open(run / "summary.csv") as fh:
        for row in csv.DictReader(fh):
            if row["metric"] == metric:
                by[(row["control"], int(row["level"]))].append(float(row["value"]))
    return {k: statistics.fmean(v) for k, v in by.items()}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy")
    args = ["run", "toy-mlp", "--out", str(out), "--quiet", "--levels", "2", "--seeds", "0,1",
            "--set", "train.steps=120", "--set", "toy.n_train=256", "--set", "toy.n_test=128",
            "--set", "toy.hidden=[16,8]"]
    assert main(args) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_toy_report_numbers_equal_summary_csv(toy_run: Path):
    path = write_report(toy_run)
    assert path == toy_run / "report.html"
    for f in ("summary.csv", "plots/metric_vs_sparsity.png", "plots/layers.png", "plots/stability.png"):
        assert (toy_run / f).is_file(), f
    html = path.read_text()
    means = csv_means(toy_run, "accuracy")
    found = {(c["control"], int(c["level"])): float(c["value"]) for c in cells(html) if c["kind"] == "mean"}
    assert found.keys() == means.keys()
    for key, value in means.items():
        assert found[key] == pytest.approx(value, rel=1e-12), key
    for c in cells(html):
        if c["kind"] == "diff":
            level = int(c["level"])
            assert float(c["value"]) == pytest.approx(means[("ticket", level)] - means[(c["control"], level)])
    for control in ("ticket", "random_reinit", "random_mask"):
        assert f">{control}" in html
    # self-contained: plots embedded, nothing fetched
    assert html.count('src="data:image/png;base64,') >= 3
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "missing:" not in html and "higher is better" in html
    assert "BCa 95% interval" in html and "sign-flip" in html and "Mask stability across seeds" in html


def test_partial_run_lists_missing_units(toy_run: Path, tmp_path: Path):
    run = tmp_path / toy_run.name
    shutil.copytree(toy_run, run)
    (run / "seed_1" / "ticket" / "level_2" / "DONE").unlink()
    shutil.rmtree(run / "seed_1" / "random_mask")
    html = write_report(run).read_text()
    assert "missing: 3 unit(s)" in html
    assert "seed 1 ticket: levels 2" in html and "seed 1 random_mask: levels 1-2" in html
    assert "levels finished / planned</th><td>0 / 2" in html
    seeds_of = {(c["control"], int(c["level"])) for c in cells(html) if c["kind"] == "mean"}
    assert ("ticket", 2) in seeds_of  # seed 0 still counts
    with open(run / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert not any(r["seed"] == "1" and r["control"] == "random_mask" for r in rows)


def test_not_a_run_directory(tmp_path: Path):
    with pytest.raises(UserError, match="not a run directory"):
        write_report(tmp_path)
    with pytest.raises(UserError, match="not a run directory"):
        write_comparison([tmp_path / "nope"], tmp_path / "cmp")


def test_rl_report_names_cut_off_observation_dims(tmp_path: Path):
    run = make_run(tmp_path, "rl", levels=3)
    html = write_report(run).read_text()
    assert (run / "plots" / "inputs.png").is_file()
    assert "mlp_extractor.policy_net.0.weight" in html
    # level 2 and 3: dimension 2 is gone in both seeds
    assert html.count("seed 0: obs[2]") == 2 and html.count("seed 1: obs[2]") == 2
    assert "seed 0: none" in html  # levels 0 and 1 keep every dimension (with high probability at 100%/80%)
    assert "✓ yes" in html  # synthetic controls are worse: the ticket wins


def test_nlp_one_seed_lower_is_better(tmp_path: Path):
    run = make_run(tmp_path, "nlp", seeds=(0,), levels=2, controls=("random_reinit", "one_shot"))
    html = write_report(run).read_text()
    assert "perplexity (lower is better)" in html
    assert "n=1: no interval" in html
    assert "at least two seeds" in html
    for role in ("embeddings", "attention.query", "attention.output", "ffn.intermediate", "ffn.output", "pooler", "head"):
        assert f"<th>{role}</th>" in html
    diffs = [c for c in cells(html) if c["kind"] == "diff"]
    assert diffs and all(float(c["value"]) < 0 for c in diffs if c["control"] == "random_reinit")


def test_comparison_of_two_domains(toy_run: Path, tmp_path: Path):
    nlp = make_run(tmp_path / "runs", "nlp", levels=2)
    path = write_comparison([toy_run, nlp], tmp_path / "cmp")
    assert path == tmp_path / "cmp" / "comparison.html"
    for f in ("normalised.png", "margin.png", "roles.png"):
        assert (tmp_path / "cmp" / "plots" / f).is_file(), f
    html = path.read_text()
    assert "different metrics" in html and "dense / value" in html
    assert toy_run.name in html and nlp.name in html
    by = defaultdict(dict)
    for c in cells(html):
        by[(c["run"], int(c["level"]))][c["kind"]] = float(c["value"])
    assert by[(nlp.name, 0)]["ticket"] == pytest.approx(1.0)
    assert by[(toy_run.name, 0)]["ticket"] == pytest.approx(1.0)
    for (_, level), v in by.items():
        if level > 0:
            assert v["margin"] == pytest.approx(v["ticket"] - v["best_random"])
        else:
            assert math.isnan(v["margin"])
    # synthetic nlp: perplexity grows, so the normalised ticket falls below 1 but beats the controls
    assert by[(nlp.name, 2)]["ticket"] < 1.0 and by[(nlp.name, 2)]["margin"] > 0


def test_comparison_anchors_runs_with_a_trivial_baseline(tmp_path: Path):
    from tests.analysis.test_degenerate import with_baselines

    rl, nlp = make_run(tmp_path / "runs", "rl", levels=2), make_run(tmp_path / "runs", "nlp", levels=2)
    with_baselines(rl, "rl", {"trivial_mean_return": 0.0})  # the synthetic RL metric, by the generic key
    html = write_comparison([rl, nlp], tmp_path / "cmp").read_text()
    assert (tmp_path / "cmp" / "plots" / "anchored.png").is_file()
    assert "Between the trivial baseline and dense" in html
    assert f"Not shown (no trivial baseline measured for their metric): {nlp.name}." in html
    by = defaultdict(dict)
    for c in cells(html):
        by[(c["run"], int(c["level"]))][c["kind"]] = float(c["value"])
    # with the baseline at 0 the anchored scale is value / dense, the normalised one for positive returns
    for level in (1, 2):
        assert by[(rl.name, level)]["anchored_margin"] == pytest.approx(by[(rl.name, level)]["margin"])
        assert math.isnan(by[(nlp.name, level)]["anchored_margin"])


def test_compute_section_numbers(toy_run: Path):
    import json

    html = write_report(toy_run).read_text()
    assert "<h2>Compute</h2>" in html
    records = {}
    for path in toy_run.glob("seed_*/*/level_*/metrics.json"):
        r = json.loads(path.read_text())
        records[(r["seed"], r["control"], r["level"])] = r
    found = {(c["kind"], c.get("seed"), c.get("control"), c.get("level")): float(c["value"]) for c in cells(html)
             if c["kind"] in ("unit_steps_per_second", "imp_steps", "imp_seconds")}
    for (seed, control, level), r in records.items():
        rate = (r["stop_step"] - r["start_step"]) / r["train_seconds"]
        assert found[("unit_steps_per_second", str(seed), control, str(level))] == pytest.approx(rate)
        assert 1 < rate < 1e7  # steps per second of a tiny MLP: plausible, finite
    # IMP to level L: the dense run plus L levels trained from k to T, T + L (T - k) steps
    steps, k = 120, records[(0, "ticket", 1)]["start_step"]
    for level in (1, 2):
        assert found[("imp_steps", None, None, str(level))] == steps + level * (steps - k)
        secs = statistics.fmean(sum(records[(s, "ticket", lv)]["train_seconds"] for lv in range(level + 1))
                                for s in (0, 1))
        assert found[("imp_seconds", None, None, str(level))] == pytest.approx(secs)
    assert f"{(steps + 2 * (steps - k)) / steps:.3g}×" in html


def _ticket_iqm_below_half(runs: list[Path], seeds: tuple[int, ...]) -> float:
    """The ticket's IQM over (seed, run) scores in the < 50 % band, relative to dense, recomputed here
    from the units: the mean of the middle half (scipy's trim_mean at 25 %)."""
    from scipy.stats import trim_mean

    from multiticket.analysis.rundata import load_run
    from multiticket.analysis.stats import normalise

    scores = []
    for run in map(load_run, runs):
        band = [lv for lv in run.levels if 0 < run.sparsity[lv] < 0.5]
        scores += [sum(normalise(run.values("ticket", lv)[s], run.dense, False) for lv in band) / len(band)
                   for s in seeds]
    return float(trim_mean(scores, 0.25))


def test_comparison_aggregates_seeds_and_runs_with_rliable(tmp_path: Path):
    """IQM of the ticket over (seed, run) scores, relative to dense, against the value recomputed
    here from the units, inside its interval; the same runs give the same intervals."""
    from multiticket.analysis.aggregate import band_aggregates
    from multiticket.analysis.rundata import load_run

    seeds = (0, 1, 2, 3, 4)
    runs = [make_run(tmp_path / name, "nlp", seeds=seeds, levels=2) for name in ("a", "b")]
    page = write_comparison(runs, tmp_path / "cmp").read_text()
    assert "Aggregates across seeds and runs (rliable)" in page and "P(ticket &gt; random)" in page
    row = re.search(r"<tr><td>&lt; 50 %</td><td>2</td><td>5</td><td class='num'>([^ ]+) \[([^,]+), ([^\]]+)\]", page)
    assert row is not None, page.split("Aggregates")[1][:800]
    iqm, low, high = (float(x) for x in row.groups())
    assert iqm == pytest.approx(_ticket_iqm_below_half(runs, seeds), rel=1e-3)
    assert low <= iqm <= high
    # the bootstrap is seeded (rliable ignores its random_state): the same runs, the same intervals
    again = band_aggregates([load_run(r) for r in runs])
    assert again == band_aggregates([load_run(r) for r in runs])
    assert again[1][0].has_intervals and again[1][0].iqm_ticket[1] < again[1][0].iqm_ticket[2]


def test_report_never_writes_through_a_link_or_outside_the_run(tmp_path: Path, capsys):
    """Someone else's run directory with ``plots`` linked elsewhere: one line, exit 2, nothing
    written there; a plot file or summary.csv linked to an outside file is replaced, never
    written through; a summary.csv that is not UTF-8 is replaced unread."""
    run = make_run(tmp_path / "runs", "rl", seeds=(0, 1), levels=2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "plots").symlink_to(elsewhere, target_is_directory=True)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plots: is a symbolic link" in err[0], err
    assert list(elsewhere.iterdir()) == [] and not (run / "report.html").exists()
    (run / "plots").unlink()
    (run / "plots").mkdir()
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    (run / "plots" / "metric_vs_sparsity.png").symlink_to(victim)
    precious = tmp_path / "precious.csv"
    precious.write_text("do not touch\n")
    (run / "summary.csv").unlink()
    (run / "summary.csv").symlink_to(precious)
    assert main(["report", str(run)]) == 0
    assert victim.read_bytes() == b"precious" and precious.read_text() == "do not touch\n"
    for path in (run / "plots" / "metric_vs_sparsity.png", run / "summary.csv"):
        assert path.is_file() and not path.is_symlink()
    (run / "summary.csv").write_bytes(b"\xff\xfe not utf-8 \x80" * 1000)
    assert main(["report", str(run)]) == 0
    assert (run / "summary.csv").read_text().startswith("task,domain,seed,")


def test_comparison_gives_no_interval_over_two_seeds(tmp_path: Path):
    """At 2 seeds per run the aggregate keeps its point estimates and prints no bracketed range:
    a percentile bootstrap over two values per run is not a 95 % interval."""
    from multiticket.analysis.aggregate import MIN_INTERVAL_SEEDS, band_aggregates
    from multiticket.analysis.rundata import load_run

    runs = [make_run(tmp_path / name, "nlp", seeds=(0, 1), levels=2) for name in ("a", "b")]
    page = write_comparison(runs, tmp_path / "cmp").read_text()
    row = re.search(r"<tr><td>&lt; 50 %</td><td>2</td><td>2</td><td class='num'>([^ ]+) ([^<]+)</td>", page)
    assert row is not None, page.split("Aggregates")[1][:800]
    assert row.group(2) == f"(no interval: 2 seeds per run, {MIN_INTERVAL_SEEDS} needed)"
    assert float(row.group(1)) == pytest.approx(_ticket_iqm_below_half(runs, (0, 1)), rel=1e-3)
    band = band_aggregates([load_run(r) for r in runs])[1][0]
    assert not band.has_intervals and band.seeds == 2 and math.isnan(band.iqm_ticket[1])
