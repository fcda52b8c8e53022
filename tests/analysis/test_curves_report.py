"""The report's learning-curve section: curve plots per level from each unit's curve.csv, the RL
ticket reward beside the final evaluation, older runs without curves, malformed curve files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from multiticket.analysis.curves import band, load_curves, on_grid, read_curve
from multiticket.analysis.report import write_report
from multiticket.analysis.rundata import load_run
from multiticket.core.store import RunStore
from multiticket.errors import UserError
from tests.analysis.synthetic import make_run


def _write_curves(root: Path) -> None:
    """An RL curve per unit: episodes whose return grows faster for the ticket, evaluations every 25 steps."""
    for metrics in root.glob("seed_*/*/level_*/metrics.json"):
        record = json.loads(metrics.read_text())
        record["metrics"]["ticket_reward"] = record["metrics"]["mean_return"] - 10
        metrics.write_text(json.dumps(record))
        rate = 4.0 if record["control"] == "ticket" else 2.0
        lines = ["step,series,value"]
        for step in range(5, 101, 5):
            lines += [f"{step},train/episode_return,{rate * step}", f"{step},train/episode_length,{rate * step:.0f}"]
            if step % 25 == 0:
                lines.append(f"{step},eval/mean_return,{rate * step + record['seed']}")
        (metrics.parent / "curve.csv").write_text("\n".join(lines) + "\n")
        RunStore(root).finish(metrics.parent, ["mask.safetensors", "metrics.json", "curve.csv"])


def test_report_plots_learning_curves_and_the_ticket_reward(tmp_path: Path) -> None:
    root = make_run(tmp_path, domain="rl", levels=2)
    _write_curves(root)
    html = write_report(root).read_text()
    assert "<h2>Learning curves</h2>" in html and "learning curves, level 2" in html
    assert "train/episode_return" in html and "eval/mean_return" in html and "ticket reward" in html
    assert {p.name for p in (root / "plots").glob("*.png")} >= {"curves_level_0.png", "curves_level_1.png",
                                                                 "curves_level_2.png", "ticket_reward.png"}
    bands = load_curves(load_run(root)).level_bands(1, "train/episode_return")
    assert list(bands) == ["ticket", "random_mask", "random_reinit"]
    ticket, control = bands["ticket"], bands["random_mask"]
    last = ticket.n > 0
    assert np.allclose(ticket.mean[last] / 4.0, control.mean[last] / 2.0), "both seeds alike: mean = the curve"
    assert np.all(ticket.std[last] == 0)


def test_older_runs_without_curves_say_so(tmp_path: Path) -> None:
    root = make_run(tmp_path, domain="nlp", levels=1)
    html = write_report(root).read_text()
    assert "No finished unit of this run has a learning curve" in html and "before multiticket recorded curves" in html
    one = next(root.glob("seed_0/ticket/level_0"))
    (one / "curve.csv").write_text("step,series,value\n10,train/loss,2.5\n20,train/loss,2.0\n")
    html = write_report(root).read_text()
    assert "learning curves, level 0" in html and "have no <code>curve.csv</code>" in html


@pytest.mark.parametrize("text, why", [
    ("step,value\n", "first line"),
    ("step,series,value\n10,train/loss\n", "line 2"),
    ("step,series,value\n-1,train/loss,1\n", "line 2"),
    ("step,series,value\n1,<script>,1\n", "line 2"),
    ("step,series,value\n1,eval/x,nan\n", "finite"),
    ("step,series,value\n1,eval/x,1e400\n", "finite"),
    ("step,series,value\n1,eval/x,abc\n", "not a number"),
])
def test_malformed_curve_files_are_one_line_errors(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "curve.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=why):
        read_curve(path)


def test_a_symlinked_curve_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.csv").write_text("step,series,value\n")
    (tmp_path / "curve.csv").symlink_to(tmp_path / "elsewhere.csv")
    with pytest.raises(UserError, match="symbolic link"):
        read_curve(tmp_path / "curve.csv")


def test_grid_averages_bins_and_interpolates_only_inside_the_data() -> None:
    edges = np.linspace(0, 100, 11)
    got = on_grid(np.array([12, 14, 55]), np.array([1.0, 3.0, 6.0]), edges)
    assert np.isnan(got[0]) and got[1] == 2.0 and got[5] == 6.0 and np.isnan(got[6])
    assert np.allclose(got[2:5], [3.0, 4.0, 5.0])
    b = band([np.array([1.0, np.nan]), np.array([3.0, np.nan])], np.array([0.5, 1.5]))
    assert b.mean[0] == 2.0 and b.std[0] == pytest.approx(np.sqrt(2)) and b.n.tolist() == [2, 0]
