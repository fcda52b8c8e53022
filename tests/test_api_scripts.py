"""The Python API in ordinary scripts (issue 32): ``multiticket.run(..., workers=2)`` at a script's
top level is refused at once in one line saying what to add (each pool worker would run the
script again), and works under ``if __name__ == "__main__":``; ``Ticket.apply`` names the
parameters that do not fit; ``Run.curves()`` and ``Run.verdicts()`` are DataFrames."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import multiticket
from multiticket.adapters.toy import make_mlp
from multiticket.analysis.paired import TEST_NAME
from multiticket.errors import UserError
from tests.analysis.synthetic import make_run

ROOT = Path(__file__).resolve().parents[1]
TASK = """{"name": "toy-script", "domain": "toy", "seeds": [0], "train": {"steps": 30}, "rewind": {"step": 3},
        "prune": {"levels": 1}, "controls": ["random_reinit"],
        "toy": {"n_train": 128, "n_test": 128, "hidden": [16], "lr": 0.05}}"""


def _script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(body).format(task=TASK, out=str(tmp_path / "runs")))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def test_workers_at_a_scripts_top_level_fail_at_once_saying_what_to_add(tmp_path: Path):
    start = time.monotonic()
    done = _script(tmp_path, """
        import multiticket
        run = multiticket.run({task}, out={out!r}, workers=2)
        print(run.summary())
    """)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("multiticket.errors.UserError: multiticket.run(workers=2): train.py calls it at its top "
                           "level (line 3)"), done.stderr
    assert "if __name__ == \"__main__\":" in last
    assert "BrokenProcessPool" not in done.stderr and not (tmp_path / "runs").exists()
    assert time.monotonic() - start < 120  # at once: no pool started, nothing trained


def test_workers_under_a_main_guard_work(tmp_path: Path):
    done = _script(tmp_path, """
        import multiticket

        def main():
            run = multiticket.run({task}, out={out!r}, workers=2)
            print("levels", sorted(set(run.summary().level)))

        if __name__ == "__main__":
            main()
    """)
    assert done.returncode == 0, done.stderr
    assert "levels [0, 1]" in done.stdout


def test_ticket_apply_names_what_does_not_fit(tmp_path: Path):
    run = multiticket.run(eval(TASK), out=tmp_path / "runs")  # noqa: S307 - the literal above
    ticket = run.ticket(seed=0, level=1)
    renamed = torch.nn.Sequential()
    renamed.add_module("first", torch.nn.Linear(32, 16))
    renamed.add_module("act", torch.nn.ReLU())
    renamed.add_module("2", torch.nn.Linear(16, 5))  # the run's output layer has 4 classes
    with pytest.raises(UserError) as caught:
        ticket.apply(renamed)
    message = str(caught.value)
    assert message.startswith("ticket.apply: the model does not match the run's weights: ")
    assert "missing in the run: first.weight, first.bias" in message
    assert "not in the model: 0.bias, 0.weight" in message
    assert "mis-shaped: 2.weight (model 5x16, run 4x16), 2.bias (model 5, run 4)" in message
    fitting = make_mlp(32, [16], 4)
    ticket.apply(fitting)
    assert all(torch.all(dict(fitting.named_parameters())[n].detach()[~m] == 0) for n, m in ticket.mask.items())


def test_curves_and_verdicts_are_dataframes(tmp_path: Path):
    run = multiticket.run(eval(TASK), out=tmp_path / "runs")  # noqa: S307
    curves = run.curves()
    assert list(curves.columns) == ["seed", "control", "level", "sparsity", "step", "metric", "value"]
    assert "eval/accuracy" in set(curves.metric) and len(curves) > 0
    ticket = curves[(curves.control == "ticket") & (curves.level == 1)]
    assert ticket.sparsity.iloc[0] == pytest.approx(0.2, abs=1e-3) and ticket.step.is_monotonic_increasing

    def values(seed: int, control: str, level: int) -> dict[str, float]:  # the ticket ahead at every seed
        return {"accuracy": 0.9 - 0.01 * level + 0.001 * seed if control == "ticket" else 0.5 + 0.001 * seed}

    synthetic = multiticket.load_run(make_run(tmp_path / "syn", "nlp", seeds=(0, 1, 2, 3, 4, 5), levels=2,
                                              values=values))
    verdicts = synthetic.verdicts()
    assert list(verdicts.columns) == ["level", "sparsity", "won", "verdict", "note", "p_value", "n_seeds", "test",
                                      "correction"]
    assert list(verdicts.level) == [1, 2] and list(verdicts.won) == [True, True]
    assert list(verdicts.verdict) == ["won", "won"] and list(verdicts.n_seeds) == [6, 6]
    assert all(p == pytest.approx(2 ** -6) for p in verdicts.p_value)
    assert set(verdicts.test) == {TEST_NAME} and set(verdicts.correction) == {"sequence"}
    few = run.verdicts()  # one seed: not judged (too few seeds, or a level at the majority rate)
    assert list(few.won) == [None] and list(few.n_seeds) == [1] and not math.isnan(few.p_value.iloc[0])
    assert few.verdict.iloc[0] in ("too few seeds (1; 5 needed)", "not judged (degenerate level)")
