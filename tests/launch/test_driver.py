"""The driver refuses, before any training and with one line, a plan that empties the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiticket.cli import main

TOY = ["run", "toy-mlp", "--quiet", "--set", "train.steps=50", "--set", "toy.n_train=256", "--set", "toy.n_test=128",
       "--set", "toy.hidden=[32,16]", "--set", "controls=[random_mask]"]  # fmt: skip


@pytest.mark.parametrize(("settings", "level", "keeps"), [
    (["--levels", "3", "--set", "prune.rate=0.999999"], 1, "no level keeps a weight"),
    (["--levels", "3", "--set", "prune.rate=0.5", "--set", "prune.rate_of=original"], 2, "at most 1 level(s)"),
])  # fmt: skip
def test_a_level_with_no_weight_alive_is_refused_before_training(
    settings: list[str], level: int, keeps: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    assert main([*TOY, *settings, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "prune.rate" in lines[0] and f"alive at level {level} of prune.levels 3" in lines[0] and keeps in lines[0]
    assert not out.exists() or not any(out.iterdir()), "something was written"


def test_the_deepest_level_that_keeps_a_weight_runs(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = [*TOY, "--levels", "1", "--set", "prune.rate=0.5", "--set", "prune.rate_of=original", "--out", str(out)]
    assert main(args) == 0


def test_a_second_driver_on_a_new_run_directory_writes_nothing(tmp_path, capsys):
    """The lock comes before the first write (issue 29): while another process holds a new run
    directory's lock, a second ``run`` leaves nothing there but the lock file, no staged cache and
    no baselines.json, and says why in one line."""
    from multiticket.api import resolve_task
    from multiticket.cli import main
    from multiticket.core.store import RunStore

    sets = ["train.steps=40", "toy.n_train=64", "toy.n_test=32", "toy.hidden=[8]"]
    out = tmp_path / "runs"
    run_dir = out / resolve_task("toy-mlp", sets).run_name
    with RunStore(run_dir).locked():
        code = main(["run", "toy-mlp", "--out", str(out), "--quiet", "--levels", "1",
                     *[x for s in sets for x in ("--set", s)]])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another multiticket process is running this run directory" in err[0], err
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    assert sorted(p.name for p in out.iterdir()) == [run_dir.name]  # no staging folder left beside it
