"""Learning curves (multiticket.core.curves): the CurveMonitor's rows, its checkpoint state, an
evaluation during training that leaves RNG and module modes untouched, and a toy run's curve.csv."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from multiticket.cli import main
from multiticket.core.curves import CURVE_HEADER, Curve, CurveMonitor
from multiticket.core.statefile import load_tree, save_tree
from tests.runsnap import only_run


class _Adapter:
    """What a CurveMonitor reads of an adapter; its evaluation draws from every RNG and switches modes."""

    curve_logs = ("loss", "episode_return")

    def __init__(self, every: int | None) -> None:
        self.eval_every = every
        self.module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
        self.evaluations: list[int] = []

    def curve_metrics(self) -> dict[str, float]:
        self.module.eval()
        torch.rand(3), np.random.rand(), random.random()
        self.evaluations.append(1)
        return {"accuracy": 0.5, "nan": float("nan")}


def test_monitor_records_curve_keys_events_and_evaluations_at_intervals() -> None:
    adapter = _Adapter(every=10)
    monitor = CurveMonitor(adapter, stop=40)  # type: ignore[arg-type]
    monitor.on_start(0)
    for step in (4, 8, 12, 16, 20, 24, 40):
        monitor.on_logs(step, {"loss": 0.25, "grad_norm": 3.0} if step % 8 == 0 else {"episode_return": (1.0, 2.5)})
        monitor.after_step(step, adapter.module)
    rows = list(zip(monitor.curve.steps, monitor.curve.series, monitor.curve.values))
    assert all("grad_norm" not in s for _, s, _ in rows), "only the adapter's curve keys"
    assert rows[:3] == [(4, "train/episode_return", 1.0), (4, "train/episode_return", 2.5), (8, "train/loss", 0.25)]
    evals = [(s, v) for s, n, v in rows if n.startswith("eval/")]
    assert evals == [(12, 0.5), (20, 0.5)], "first step past 10, 20, ...; not at the unit's last step; NaN dropped"
    text = monitor.curve.csv_text()
    assert text.splitlines()[0] == CURVE_HEADER and "12,eval/accuracy,0.5" in text and "4,train/episode_return,1" in text


def test_evaluation_during_training_leaves_rng_and_modes_as_they_were() -> None:
    adapter = _Adapter(every=1)
    monitor = CurveMonitor(adapter, stop=10)  # type: ignore[arg-type]
    monitor.on_start(0)
    adapter.module.train()
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    monitor.after_step(1, adapter.module)
    assert adapter.evaluations and adapter.module.training and adapter.module[1].training
    after = (torch.rand(1).item(), np.random.rand(), random.random())
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    assert after == (torch.rand(1).item(), np.random.rand(), random.random())


def test_state_round_trips_through_a_checkpoint_tree(tmp_path: Path) -> None:
    adapter = _Adapter(every=7)
    monitor = CurveMonitor(adapter, stop=100)  # type: ignore[arg-type]
    monitor.on_start(0)
    monitor.on_logs(3, {"loss": 0.1 + 0.2})
    monitor.after_step(7, adapter.module)
    save_tree(tmp_path, "core", {"curve": monitor.state()})
    again = CurveMonitor(adapter, stop=100)  # type: ignore[arg-type]
    again.load_state(load_tree(tmp_path, "core")["curve"])
    again.on_start(7)  # a resumed unit: the restored schedule wins
    assert again.curve.csv_text() == monitor.curve.csv_text() and again.next_eval == 14
    empty = CurveMonitor(_Adapter(None), stop=5)  # type: ignore[arg-type]
    save_tree(tmp_path / "e", "core", {"curve": empty.state()})
    restored = Curve.from_state(load_tree(tmp_path / "e", "core")["curve"])
    assert len(restored) == 0


@pytest.mark.parametrize("td", [False, True])
def test_toy_units_write_curves_and_eval_every_changes_no_weight(tmp_path: Path, td: bool) -> None:
    args = ["run", "toy-mlp", "--quiet", "--levels", "1", "--set", "train.steps=120", "--set", "toy.n_train=256",
            "--set", "toy.n_test=128", "--set", "toy.hidden=[16]", "--set", "controls=[random_mask]"]
    if td:  # targeted dropout draws in training forwards: an evaluation in between must not
        args += ["--set", "targeted_dropout.gamma=0.5", "--set", "targeted_dropout.apply_to=all"]
    assert main([*args, "--out", str(tmp_path / "off")]) == 0
    assert main([*args, "--set", "toy.eval_every=25", "--out", str(tmp_path / "on")]) == 0
    off, on = only_run(tmp_path / "off"), only_run(tmp_path / "on")
    assert off.name == on.name, "eval_every is not hashed"
    for unit in ("seed_0/ticket/level_0", "seed_0/ticket/level_1", "seed_0/random_mask/level_1"):
        assert (off / unit / "final.safetensors").read_bytes() == (on / unit / "final.safetensors").read_bytes()
        rows = [line.split(",") for line in (on / unit / "curve.csv").read_text().splitlines()[1:]]
        assert [r[0] for r in rows if r[1] == "train/loss"] == ["50", "100"]
        evals = [int(r[0]) for r in rows if r[1] == "eval/accuracy"]
        assert evals[-1] == 120 and len(evals) >= 3
        plain = (off / unit / "curve.csv").read_text()
        assert "train/loss" in plain and [ln for ln in plain.splitlines() if "eval/" in ln][0].startswith("120,")
