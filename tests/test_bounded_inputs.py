"""Bounded parsing of every input (issue 29): task files, ``--set`` values and run-directory files
are refused in one line, exit 2, quickly and in little memory, when they are alias bombs, nested
too deeply, too large, hold integers past Python's digit limit, or name a run too long to be a
directory; nothing is written then."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from multiticket.cli import main
from tests.analysis.synthetic import make_run

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8))  # 10^9 leaves under 'i' once expanded


def _one_line(capsys, *parts: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("multiticket: error: "), err
    for part in parts:
        assert part in err[0], err[0]
    return err[0]


def _task(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text("name: bad\ndomain: toy\ntrain: {steps: 10}\n" + extra)
    return path


@pytest.mark.parametrize("kind", ["bomb", "deep", "huge", "digits"])
def test_hostile_task_files_are_one_line(tmp_path: Path, capsys, kind: str):
    extra = {
        "bomb": "toy:\n  args:\n" + "".join("    " + line + "\n" for line in BOMB.splitlines()),
        "deep": "seeds: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "huge": "description: '" + "x" * (2 << 20) + "'\n",
        "digits": "seeds: [" + "9" * 5000 + "]\n",
    }[kind]
    path = _task(tmp_path, extra)
    start = time.monotonic()
    assert main(["run", str(path), "--out", str(tmp_path / "runs")]) == 2
    assert time.monotonic() - start < 20
    expected = {"bomb": "more than 20000 values", "deep": "nested", "huge": "larger than", "digits": "digits"}[kind]
    _one_line(capsys, str(path), expected)
    assert not (tmp_path / "runs").exists()


def test_set_values_are_bounded_and_a_long_name_is_refused(tmp_path: Path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "toy-mlp", "--out", str(out), "--set", "name=" + "n" * 300]) == 2
    _one_line(capsys, "name", "at most 100 characters")
    assert main(["run", "toy-mlp", "--out", str(out), "--set", "toy.hidden=" + "[" * 5000 + "]" * 5000]) == 2
    _one_line(capsys, "--set toy.hidden", "nested")
    assert main(["run", "toy-mlp", "--out", str(out), "--set", "seeds=[" + "7" * 5000 + "]"]) == 2
    _one_line(capsys, "--set seeds", "digits")
    assert not out.exists()


@pytest.mark.parametrize("target", ["metrics", "baselines", "provenance", "config"])
def test_huge_integers_in_a_run_directory_are_one_line(tmp_path: Path, capsys, target: str):
    run = make_run(tmp_path, "rl", seeds=(0,), levels=1)
    digits = "9" * 100_000
    if target == "metrics":
        path = run / "seed_0" / "ticket" / "level_1" / "metrics.json"
        path.write_text(path.read_text().replace('"level": 1', f'"level": {digits}'))
    elif target == "baselines":
        path = run / "baselines.json"
        path.write_text('{"format": 1, "domain": "rl", "baselines": {"random_return_mean": ' + digits + "}}")
    elif target == "provenance":
        path = run / "provenance.json"
        path.write_text('{"format": ' + digits + "}")
    else:
        path = run / "config.yaml"
        config = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump(config).replace("- 0\n", "- " + "5" * 5000 + "\n", 1))
    if target == "metrics":  # a DONE recomputed as anyone can: the unit counts as finished
        from multiticket.core.store import RunStore

        RunStore(run).finish(path.parent, ["mask.safetensors", "metrics.json"])
    assert main(["report", str(run)]) == 2
    _one_line(capsys, str(path))
    assert not (run / "report.html").exists()
    assert main(["status", str(run)]) in (0, 2)  # status reads less; whatever it says, no traceback
