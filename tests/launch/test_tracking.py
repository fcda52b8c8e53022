"""``tracking:`` (issue 32): each finished unit logged to MLflow and W&B (offline) by the driver,
one tracker run per unit, never twice, never failing a run, and never renaming one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multiticket.cli import main
from multiticket.config import load_task
from multiticket.launch.tracking import read_curve
from multiticket.paths import TASKS_DIR

mlflow = pytest.importorskip("mlflow")
TINY = ["train.steps=100", "toy.n_train=256", "toy.n_test=128", "toy.hidden=[16]", "controls=[random_mask]"]
UNITS = {"seed_0/ticket/level_0", "seed_0/ticket/level_1", "seed_0/random_mask/level_1"}


def run(out: Path, *sets: str, workers: int = 1, levels: int = 1) -> int:
    args = ["run", "toy-mlp", "--out", str(out), "--quiet", "--levels", str(levels), "--workers", str(workers)]
    return main([*args, *[x for s in [*TINY, *sets] for x in ("--set", s)]])


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


def mlflow_runs(store: Path, run_dir: Path):  # noqa: ANN201 - a pandas DataFrame
    uri = f"sqlite:///{(store / 'mlflow.db').as_posix()}"
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[run_dir.name]), mlflow.tracking.MlflowClient(uri)


def test_tracking_renames_no_run():
    plain = load_task(TASKS_DIR / "toy-mlp.yaml", TINY)
    tracked = load_task(TASKS_DIR / "toy-mlp.yaml", [*TINY, "tracking.mlflow=ml", "tracking.wandb.project=p"])
    assert tracked.run_name == plain.run_name
    assert tracked.resolved["tracking"] == {"mlflow": "ml", "wandb": {"project": "p"}}


@pytest.mark.parametrize("workers", [1, 2])
def test_mlflow_holds_one_run_per_unit_with_its_metrics_and_curve(tmp_path, workers):
    """In a pool the driver logs each unit as its result comes back; in process, as it is written."""
    store = tmp_path / "ml"
    assert run(tmp_path / "runs", f"tracking.mlflow={store}", workers=workers) == 0
    run_dir = only_run(tmp_path / "runs")
    df, client = mlflow_runs(store, run_dir)
    assert set(df["tags.multiticket.unit"]) == UNITS and len(df) == 3
    assert set(df["status"]) == {"FINISHED"}
    for _, row in df.iterrows():
        unit_dir = run_dir / row["tags.multiticket.unit"]
        record = json.loads((unit_dir / "metrics.json").read_text())
        assert row["metrics.accuracy"] == pytest.approx(record["metrics"]["accuracy"])
        assert row["metrics.sparsity"] == pytest.approx(record["sparsity"])
        assert row["params.seed"] == "0"
        assert row["params.control"] == record["control"] and row["params.level"] == str(record["level"])
        assert row["params.prune.criterion"] == "large_final" and row["params.train.steps"] == "100"
        assert row["tags.multiticket.unit_dir"] == str(unit_dir.resolve())
        assert row["tags.multiticket.file.final.safetensors"] == str((unit_dir / "final.safetensors").resolve())
        curve = [r for r in read_curve(unit_dir / "curve.csv") if r[1] == "train/loss"]
        history = client.get_metric_history(row["run_id"], "train/loss")
        assert curve and [(m.step, m.value) for m in history] == [(s, v) for s, _, v in curve]

    assert run(tmp_path / "runs", f"tracking.mlflow={store}") == 0  # finished: nothing logged again
    again, _ = mlflow_runs(store, run_dir)
    assert sorted(again["run_id"]) == sorted(df["run_id"])
    assert list(again.sort_values("run_id")["end_time"]) == list(df.sort_values("run_id")["end_time"])


def test_a_unit_finished_before_tracking_was_asked_for_is_logged_once(tmp_path):
    """A run extended with a tracker (or one whose logging was cut short) logs what it lacks."""
    store = tmp_path / "ml.db"
    assert run(tmp_path / "runs") == 0
    assert run(tmp_path / "runs", f"tracking.mlflow={store}", levels=2) == 0
    mlflow.set_tracking_uri(f"sqlite:///{store.as_posix()}")
    df = mlflow.search_runs(experiment_names=[only_run(tmp_path / "runs").name])
    assert set(df["tags.multiticket.unit"]) == UNITS | {"seed_0/ticket/level_2", "seed_0/random_mask/level_2"}


def test_wandb_offline_writes_one_run_per_unit_under_its_dir(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    wb = tmp_path / "wb"
    sets = ["tracking.wandb.project=tickets", "tracking.wandb.mode=offline", f"tracking.wandb.dir={wb}"]
    assert run(tmp_path / "runs", *sets) == 0
    folders = sorted((wb / "wandb").glob("offline-run-*"))
    assert len(folders) == 3 and len({f.name.rsplit("-", 1)[1] for f in folders}) == 3
    assert all(list(f.glob("run-*.wandb")) for f in folders)
    logged = {json.loads((f / "files" / "multiticket-logged.json").read_text())["unit"] for f in folders}
    assert logged == UNITS
    assert run(tmp_path / "runs", *sets) == 0
    assert sorted((wb / "wandb").glob("offline-run-*")) == folders  # nothing logged twice


def test_a_failing_tracker_is_one_warning_and_the_run_goes_on(tmp_path, capsys):
    assert run(tmp_path / "runs", "tracking.mlflow=nosuchscheme://nowhere") == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    warnings = [line for line in err if "tracking: mlflow" in line]
    assert len(warnings) == 1 and "nothing more is logged to mlflow" in warnings[0], err
    run_dir = only_run(tmp_path / "runs")
    assert all((run_dir / unit / "DONE").is_file() for unit in UNITS)


def test_a_tracker_that_is_not_installed_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert run(tmp_path / "runs", "tracking.wandb.project=p") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tracking.wandb: the wandb package is not installed" in err[0], err
    assert not (tmp_path / "runs").exists()


def test_a_misspelled_tracking_key_is_one_line_naming_it(tmp_path, capsys):
    assert run(tmp_path / "runs", "tracking.wandb.mdoe=offline") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tracking.wandb.mdoe: unknown key" in err[0], err
    assert not (tmp_path / "runs").exists()
