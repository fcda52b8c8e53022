"""Runs tell themselves apart (issue 32): ``compare --label NAME=RUN_DIR`` names runs; without labels,
runs of one task are titled by the settings that differ (``prune.criterion=movement``), not by
their hash; the page lists every differing setting, defaults included (``config.yaml``'s
``defaults:`` block, or the common defaults for a config written before it), escaped; a sweep's
closing tables get the same titles. A bad label is one line, exit 2, nothing written."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
import yaml

from multiticket.cli import main, run_titles
from multiticket.config import load_task
from multiticket.paths import TASKS_DIR
from tests.analysis.synthetic import make_run


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Two synthetic runs of one task: the first as written before the defaults block (criterion
    left at its default), the second with prune.criterion movement and a hostile description."""
    first = make_run(tmp_path / "a", "nlp", seeds=(0, 1), levels=2)
    second = make_run(tmp_path / "b", "nlp", seeds=(0, 1), levels=2)
    config = yaml.safe_load((second / "config.yaml").read_text())
    config["prune"]["criterion"] = "movement"
    config["description"] = "<script>alert(1)</script>"
    config["defaults"] = {"rewind": {"mode": "weights"}, "early_bird": None}
    (second / "config.yaml").write_text(yaml.safe_dump(config))
    return first, second


def test_titles_and_the_settings_table_say_what_differs(two_runs: tuple[Path, Path], tmp_path: Path, capsys):
    first, second = two_runs
    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "cmp")]) == 0
    page = (tmp_path / "cmp" / "comparison.html").read_text()
    assert "synthetic-nlp (prune.criterion=large_final)" in page  # the default, read from the schema
    assert "synthetic-nlp (prune.criterion=movement)" in page
    assert "synthetic-nlp-0000beef" not in page.split("Settings that differ")[0].split("<h1>")[1]  # not the hash
    table = page.split("<h2>Settings that differ</h2>")[1].split("</table>")[0]
    assert "<code>prune.criterion</code>" in table and "<code>movement</code>" in table
    assert "<script>" not in page and html.escape("<script>alert(1)</script>", quote=False) in table
    assert table.index("prune.criterion") < table.index("description")  # what tells runs apart first


def test_labels_name_the_runs(two_runs: tuple[Path, Path], tmp_path: Path):
    first, second = two_runs
    out = tmp_path / "cmp"
    assert main(["compare", str(first), "--label", f"movement run={second}", "--out", str(out)]) == 0
    page = (out / "comparison.html").read_text()
    assert "movement run</td>" in page and "synthetic-nlp (prune.criterion=large_final)" in page
    assert main(["compare", "--label", f"base={first}", "--label", f"mov={second}", "--out", str(out)]) == 0
    page = (out / "comparison.html").read_text()
    assert "<th>base</th><th>mov</th>" in page


@pytest.mark.parametrize(("label", "message"), [
    ("nameless", "--label nameless: expected NAME=RUN_DIR"),
    ("={run}", "the name must be 1-64 letters"),
    ("$x$={run}", "the name must be 1-64 letters"),
])
def test_a_bad_label_is_one_line_and_writes_nothing(two_runs: tuple[Path, Path], tmp_path: Path, capsys,
                                                   label: str, message: str):
    first, _ = two_runs
    out = tmp_path / "cmp"
    assert main(["compare", "--label", label.format(run=first), "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line and not out.exists()


def test_two_runs_under_one_label_and_no_run_at_all(two_runs: tuple[Path, Path], tmp_path: Path, capsys):
    first, second = two_runs
    out = tmp_path / "cmp"
    assert main(["compare", "--label", f"x={first}", "--label", f"x={second}", "--out", str(out)]) == 2
    assert "--label: 'x' names two runs" in capsys.readouterr().err
    assert main(["compare", "--out", str(out)]) == 2
    assert "give at least one run directory" in capsys.readouterr().err and not out.exists()


def test_sweep_tables_are_titled_by_what_differs(tmp_path: Path):
    toy = TASKS_DIR / "toy-mlp.yaml"
    tasks = [load_task(toy, [f"prune.criterion={c}"]) for c in ("large_final", "movement")]
    tasks.append(load_task(TASKS_DIR / "cartpole-ppo.yaml", user_code=False))
    titles = run_titles(tasks, tmp_path)
    assert titles[tmp_path / tasks[0].run_name] == "toy-mlp (prune.criterion=large_final)"
    assert titles[tmp_path / tasks[1].run_name] == "toy-mlp (prune.criterion=movement)"
    assert titles[tmp_path / tasks[2].run_name] == "cartpole-ppo"  # alone of its name: the name says it
