"""Faults a long ticket search meets: a unit that goes NaN, corrupt artifacts, a full or read-only
disk. Each is reported in one line, loses no finished work, and never leaves a wrong result."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from multiticket.adapters.toy import ToyAdapter
from multiticket.cli import main
from multiticket.core import store as store_mod
from multiticket.launch.status import counts, run_status
from tests.runsnap import only_run, snapshot

TOY = ["run", "toy-mlp", "--quiet", "--levels", "2", "--set", "train.steps=150", "--set", "toy.n_train=512",
       "--set", "toy.n_test=256", "--set", "toy.hidden=[32,16]", "--set", "controls=[random_mask,one_shot]"]  # fmt: skip



@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-seed toy run, copied by the tests that damage it."""
    out = tmp_path_factory.mktemp("reference")
    assert main([*TOY, "--seeds", "0,1", "--out", str(out)]) == 0
    return only_run(out)


def _copy(reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "runs"
    shutil.copytree(reference, out / reference.name)
    return out


# -- numerical faults ---------------------------------------------------------------------------


def _poison_seed(monkeypatch: pytest.MonkeyPatch, seed: int, at_step: int) -> None:
    """NaN weights in ``seed``'s dense training from ``at_step`` on (as a diverging loss would)."""
    train = ToyAdapter.train

    def poisoned(self: ToyAdapter, start: int, stop: int, hooks: Any) -> None:
        if self.seed != seed or start != 0:
            return train(self, start, stop, hooks)
        adapter = self

        class Poisoning:
            def __getattr__(self, name: str) -> Any:
                return getattr(hooks, name)

            def on_step(self, step: int, logs: dict[str, float] | None = None) -> None:
                if step >= at_step:
                    with torch.no_grad():
                        adapter.module[0].weight.fill_(float("nan"))
                hooks.on_step(step, logs)

        return train(self, start, stop, Poisoning())

    monkeypatch.setattr(ToyAdapter, "train", poisoned)


def test_nan_unit_is_recorded_keeps_last_good_checkpoint_and_other_seeds_finish(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    args = [*TOY, "--seeds", "0,1", "--out", str(out), "--set", "checkpoint.every=40"]
    _poison_seed(monkeypatch, seed=1, at_step=100)
    assert main(args) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("multiticket: error")]
    assert len(lines) == 1 and "seed_1/ticket/level_0" in lines[0] and "non-finite" in lines[0], err
    run = only_run(out)
    failed = json.loads((run / "seed_1/ticket/level_0/FAILED").read_text())
    assert "non-finite values in '0.weight' at step 100" in failed["error"]
    # the last good state is kept: the checkpoint before the NaN, never one after it
    ckpts = sorted(p.name for p in (run / "seed_1/ticket/level_0/checkpoint").glob("step_*"))
    assert ckpts == ["step_80"] and (run / "seed_1/ticket/level_0/checkpoint/step_80/DONE").is_file()
    # seed 0 went on and finished; seed 1's other units were skipped, not half-done
    states = run_status(run)
    assert all(state == "done" for unit, state in states.items() if unit.seed == 0)
    assert counts(states)["total"] == {"done": 7, "running": 0, "failed": 1, "corrupt": 0, "missing": 6}
    for unit in ("ticket/level_0", "ticket/level_1", "random_mask/level_1"):
        assert not (run / "seed_1" / unit / "DONE").exists()
    # once the cause is gone, a rerun finishes the failed seed and clears its FAILED record
    monkeypatch.undo()
    assert main(args) == 0
    assert not (run / "seed_1/ticket/level_0/FAILED").exists()
    assert snapshot(run) == snapshot(reference)


# -- corrupt artifacts --------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))


ARTIFACTS = {
    # kind: (path in the run directory, words the warning must contain; None = rewritten silently)
    "mask": ("seed_0/ticket/level_1/mask.safetensors", "mask.safetensors"),
    "final weights": ("seed_0/ticket/level_1/final.safetensors", "final.safetensors"),
    "metrics": ("seed_0/random_mask/level_2/metrics.json", "metrics.json"),
    "DONE record": ("seed_1/one_shot/level_1/DONE", "level_1"),
    "rewind weights": ("seed_0/rewind/step_0/weights.safetensors", "weights.safetensors"),
    "rewind state": ("seed_1/rewind/step_3/state.safetensors", "state.safetensors"),
    "rewind skeleton": ("seed_1/rewind/step_3/state.json", "state.json"),
    "summary": ("summary.csv", None),
}


@pytest.mark.parametrize("damage", [_truncate, _flip], ids=["truncated", "flipped"])
@pytest.mark.parametrize("kind", list(ARTIFACTS))
def test_corrupt_artifact_is_detected_reported_and_recomputed(
    kind: str, damage: Callable[[Path], None], reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(reference, tmp_path)
    run = only_run(out)
    rel, words = ARTIFACTS[kind]
    damage(run / rel)
    assert main([*TOY, "--seeds", "0,1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    if words is not None:
        warnings = [line for line in err.splitlines() if "warning" in line and words in line]
        assert warnings and "recomputing" in warnings[0], err
    assert snapshot(run) == snapshot(reference)


def test_corrupt_exports_are_recomputed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The domain-native exports (SB3 ``ticket.zip``, a transformers folder) are checksummed too."""
    pytest.importorskip("stable_baselines3")
    args = ["run", "cartpole-ppo", "--quiet", "--levels", "1", "--out", str(tmp_path), "--set", "train.steps=512",
            "--set", "rewind.step=128", "--set", "controls=[]", "--set", "rl.n_eval_episodes=2",
            "--set", "rl.tensorboard=false"]  # fmt: skip
    assert main(args) == 0
    run = only_run(tmp_path)
    before = snapshot(run)
    _truncate(run / "seed_0/ticket/level_1/ticket.zip")
    assert main(args) == 0
    assert "ticket.zip: corrupt" in capsys.readouterr().err
    assert snapshot(run) == before

    pytest.importorskip("transformers")
    sys.path.insert(0, str(Path(__file__).parent / "adapters" / "hf"))
    from hf_testlib import COMMON, TINY

    task = {"name": "tiny-bert", "domain": "nlp", "train": {"steps": 6}, "prune": {"levels": 1}, "controls": [],
            "nlp": {**TINY["bert"], **COMMON}}  # fmt: skip
    (tmp_path / "bert.yaml").write_text(yaml.safe_dump(task))
    hf_out = tmp_path / "hf"
    hf_args = ["run", str(tmp_path / "bert.yaml"), "--quiet", "--out", str(hf_out)]
    assert main(hf_args) == 0
    run = next(p for p in hf_out.iterdir() if p.name.startswith("tiny-bert"))
    before = snapshot(run)
    _flip(run / "seed_0/ticket/level_1/hf_model/model.safetensors")
    assert main(hf_args) == 0
    assert "model.safetensors: corrupt" in capsys.readouterr().err
    assert snapshot(run) == before


# -- full or read-only disk -----------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
@pytest.mark.parametrize("nth_write", [1, 9])
def test_disk_full_or_read_only_is_one_line_exit_2_and_nothing_half_written(
    code: int,
    nth_write: int,
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The n-th file write fails with the OS error (1: ``config.yaml``, 9: inside the first units);
    the run stops with one line naming the file, leaves no temporary behind and no unit marked
    finished that is not, and a rerun once the disk is fixed ends identical to a clean run."""
    real = store_mod.atomic_write
    calls = {"n": 0}

    def failing(path: Path, write: Callable[[Path], None]) -> None:
        calls["n"] += 1
        if calls["n"] != nth_write:
            return real(path, write)

        def partial(tmp: Path) -> None:
            tmp.write_bytes(b"half")
            raise OSError(code, os.strerror(code), str(tmp))

        return real(path, partial)

    monkeypatch.setattr(store_mod, "atomic_write", failing)
    out = tmp_path / "runs"
    args = [*TOY, "--seeds", "0,1", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0] and os.strerror(code).lower() in err[0].lower(), err
    run = only_run(out)
    assert not [p for p in run.rglob("*.tmp")], "a temporary file was left behind"
    for done in run.rglob("DONE"):
        assert store_mod.RunStore(run).is_done(done.parent), done
    monkeypatch.undo()
    assert main(args) == 0
    assert snapshot(run) == snapshot(reference)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main([*TOY, "--out", str(out)]) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0]
    assert list(out.iterdir()) == []
