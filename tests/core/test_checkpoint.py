"""Mid-level checkpoints: a run that crashes inside a unit resumes from the unit's latest
checkpoint and ends bit-identical to an uninterrupted run, in every domain (CPU)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from multiticket.cli import main
from multiticket.core.checkpoint import Checkpoint, CheckpointStore
from multiticket.core.hooks import LevelHooks
from multiticket.core.rewind import RewindPoint
from multiticket.core.store import RunStore
from tests.runsnap import only_run, snapshot


class Crash(BaseException):
    """Stands in for a kill: nothing in multiticket catches it."""



def _crash_after_checkpoints(monkeypatch: pytest.MonkeyPatch, numbers: set[int]) -> list[int]:
    """Crash at the first step after the n-th checkpoint written (n in ``numbers``); returns the
    start step of every training call, so a test can see that units resumed mid-level."""
    saved = {"n": 0, "armed": False}
    starts: list[int] = []
    save, on_step, init = CheckpointStore.save, LevelHooks.on_step, LevelHooks.__init__

    def counting_save(self: CheckpointStore, ckpt: Checkpoint) -> Path:
        path = save(self, ckpt)
        saved["n"] += 1
        saved["armed"] = saved["n"] in numbers
        return path

    def crashing_step(self: LevelHooks, step: int, logs: Any = None) -> None:
        on_step(self, step, logs)
        if saved["armed"]:
            saved["armed"] = False
            raise Crash

    def recording_init(self: LevelHooks, adapter: Any, enforcer: Any, start: int, *a: Any, **kw: Any) -> None:
        starts.append(start)
        init(self, adapter, enforcer, start, *a, **kw)

    monkeypatch.setattr(CheckpointStore, "save", counting_save)
    monkeypatch.setattr(LevelHooks, "on_step", crashing_step)
    monkeypatch.setattr(LevelHooks, "__init__", recording_init)
    return starts


def _hf_task(tmp_path: Path) -> Path:
    pytest.importorskip("transformers")
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "adapters" / "hf"))
    from hf_testlib import COMMON, TINY

    task = {
        "name": "tiny-bert", "domain": "nlp", "train": {"steps": 16}, "prune": {"rate": 0.5},
        "rewind": {"step": 2}, "controls": ["random_mask"], "nlp": {**TINY["bert"], **COMMON, "logging_steps": 3, "eval_every": 5},
    }  # fmt: skip
    path = tmp_path / "bert.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


CASES = {
    # name: (task, overrides, checkpoint every)
    "toy": ("toy-mlp", ["train.steps=200", "toy.n_train=512", "toy.n_test=256", "toy.hidden=[32,16]",
                        "toy.optimizer=adam", "controls=[random_mask]", "toy.eval_every=30"], 40),
    "toy-td": ("toy-mlp", ["train.steps=200", "toy.n_train=512", "toy.n_test=256", "toy.hidden=[32,16]",
                           "controls=[random_mask]", "targeted_dropout.gamma=0.5", "targeted_dropout.alpha=0.5",
                           "targeted_dropout.apply_to=all"], 40),
    "ppo": ("cartpole-ppo", ["train.steps=2048", "rewind.step=256", "controls=[random_mask]",
                             "rl.n_eval_episodes=2", "rl.tensorboard=false", "rl.eval_every=700"], 512),
    "dqn": ("cartpole-dqn", ["train.steps=1600", "rewind.step=200", "controls=[random_mask]", "rl.n_eval_episodes=2",
                             "rl.tensorboard=false", "rl.overrides={learning_starts: 100, target_update_interval: 150}",
                             "rl.eval_every=500"], 300),
    "bert": ("HF", [], 4),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_crash_mid_level_resumes_bit_identical(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task, sets, every = CASES[case]
    if task == "HF":
        task = str(_hf_task(tmp_path))
    args = ["run", task, "--quiet", "--levels", "1", *[x for s in sets for x in ("--set", s)]]
    assert main([*args, "--out", str(tmp_path / "clean")]) == 0
    reference = snapshot(only_run(tmp_path / "clean"))

    out = tmp_path / "crashed"
    ckpt_args = [*args, "--out", str(out), "--set", f"checkpoint.every={every}"]
    starts = _crash_after_checkpoints(monkeypatch, {1, 4})
    for _ in range(2):
        with pytest.raises(Crash):
            main(ckpt_args)
    assert list(out.rglob("checkpoint/step_*/DONE")), "a checkpoint survives the crash"
    assert main(ckpt_args) == 0
    k = json.loads(next(out.rglob("ticket/level_1/metrics.json")).read_text())["start_step"]
    assert set(starts) - {0, k}, f"no unit resumed mid-level: {starts}"
    assert snapshot(only_run(out)) == reference  # curve.csv included: the learning curves resume too
    curves = [p.read_text() for p in out.rglob("curve.csv")]
    assert len(curves) == 3 and all("train/" in c and "eval/" in c for c in curves), curves
    assert not list(out.rglob("checkpoint")), "checkpoints are removed once their unit is finished"


def test_corrupt_checkpoint_is_reported_and_skipped(tmp_path: Path) -> None:
    import torch

    store = RunStore(tmp_path)
    unit_dir = tmp_path / "seed_0" / "ticket" / "level_1"
    warnings: list[str] = []
    ckpts = CheckpointStore(store, unit_dir, warnings.append)
    module = torch.nn.Linear(3, 2)
    ckpts.save(Checkpoint(RewindPoint.capture(module, 10), {}, 1.5))
    first = unit_dir / "checkpoint" / "step_10"
    keep = first.with_name("keep")
    import shutil

    shutil.copytree(first, keep)
    ckpts.save(Checkpoint(RewindPoint.capture(module, 20), {0: RewindPoint.capture(module, 0)}, 3.0))
    assert not first.exists(), "older checkpoints are removed once a newer one is in place"
    keep.rename(first)
    latest = ckpts.latest()
    assert latest is not None and latest.step == 20 and list(latest.captured) == [0]
    weights = unit_dir / "checkpoint" / "step_20" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    latest = ckpts.latest()
    assert latest is not None and latest.step == 10 and latest.train_seconds == 1.5
    assert len(warnings) == 1 and "step_20" in warnings[0] and "corrupt" in warnings[0]


def test_env_that_cannot_be_checkpointed_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """LunarLander's Box2D world is lost when pickled: say so up front, exit 2, write nothing."""
    pytest.importorskip("Box2D")
    args = ["run", "lunarlander-ppo", "--quiet", "--out", str(tmp_path / "runs"), "--set", "checkpoint.every=1000"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint: the environments of 'LunarLander-v3' cannot be copied" in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
