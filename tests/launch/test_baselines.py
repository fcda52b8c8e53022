"""baselines.json: measured once per run directory by the driver (a second invocation reads it),
round-trips, leaves the global RNGs as they were, and a malformed one is one line, exit 2."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from multiticket.adapters.toy import ToyAdapter
from multiticket.cli import main
from multiticket.errors import UserError
from multiticket.launch.baselines import ensure_baselines
from multiticket.rundir import BASELINES, read_baselines

TOY = ["run", "toy-mlp", "--quiet", "--levels", "1", "--seeds", "0", "--set", "train.steps=40", "--set",
       "toy.n_train=128", "--set", "toy.n_test=64", "--set", "toy.hidden=[8]", "--set", "controls=[random_mask]"]


class Drawing:
    """An adapter stand-in whose measurement draws from every global RNG."""

    calls = 0

    def baselines(self) -> dict[str, float]:
        Drawing.calls += 1
        return {"majority_rate": float(torch.rand(1)) * 0 + 0.5, "noise": float(np.random.rand() + random.random())}


def test_measured_once_round_trip_and_rng_untouched(tmp_path: Path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    record = ensure_baselines(tmp_path, Drawing(), "toy")  # type: ignore[arg-type]
    after = torch.get_rng_state(), np.random.get_state()[1], random.getstate()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
    assert read_baselines(tmp_path) == record and record["baselines"]["majority_rate"] == 0.5
    assert ensure_baselines(tmp_path, Drawing(), "toy") == record and Drawing.calls == 1  # type: ignore[arg-type]
    assert read_baselines(tmp_path / "elsewhere") is None


@pytest.mark.parametrize(("content", "field"), [
    ('{"format": 1, "domain": "toy", "baselines": {"majority_rate": NaN}}', "baselines.majority_rate"),
    ('{"format": 1, "domain": "toy", "baselines": {"majority_rate": 1.5}}', "'majority_rate' must lie in [0, 1]"),
    ('{"format": 1, "domain": "toy", "baselines": {"x": "0.5"}}', "baselines.x"),
    ('{"format": 2, "domain": "toy", "baselines": {}}', "format"),
    ('{"format": 1, "domain": "toy", "baselines": {}, "extra": 1}', "extra"),
    ('[1, 2]', "(top level)"),
    ('{"format": 1,', "invalid JSON"),
])  # fmt: skip
def test_malformed_baselines_rejected(tmp_path: Path, content: str, field: str):
    (tmp_path / BASELINES).write_text(content)
    with pytest.raises(UserError) as exc:
        read_baselines(tmp_path)
    assert str(exc.value).startswith(f"{tmp_path / BASELINES}: ") and field in str(exc.value), str(exc.value)


def test_run_measures_once_and_report_refuses_a_malformed_file(tmp_path: Path, monkeypatch, capsys):
    out = tmp_path / "runs"
    assert main([*TOY, "--out", str(out)]) == 0
    (run,) = out.iterdir()
    measured = json.loads((run / BASELINES).read_text())
    assert measured["domain"] == "toy" and 0 < measured["baselines"]["majority_rate"] <= 1

    def never(self: Any) -> dict[str, float]:
        raise AssertionError("measured again")

    monkeypatch.setattr(ToyAdapter, "baselines", never)
    assert main([*TOY, "--out", str(out), "--seeds", "1"]) == 0  # a second invocation, another seed
    assert json.loads((run / BASELINES).read_text()) == measured
    (run / BASELINES).write_text('{"format": 1, "domain": "toy", "baselines": {"majority_rate": -1}}')
    capsys.readouterr()
    for command in (["report", str(run)], [*TOY, "--out", str(out)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"{run / BASELINES}: baselines" in err, err
