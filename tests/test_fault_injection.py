"""Kill ``multiticket run`` with SIGKILL at random moments, rerun, and compare with a clean run."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runsnap import only_run, snapshot

CASES = {
    # name: (arguments, kills): the toy run kills between and inside units, the SB3 run mostly
    # inside units, where mid-level checkpoints (every 512 env steps) are what it resumes from
    "toy": (["toy-mlp", "--levels", "5", "--set", "train.steps=300", "--set", "toy.n_train=512",
             "--set", "toy.n_test=256", "--set", "toy.hidden=[32,16]",
             "--set", "controls=[random_reinit,one_shot,random_mask]"], 10),
    "sb3": (["cartpole-ppo", "--levels", "2", "--set", "train.steps=3072", "--set", "rewind.step=256",
             "--set", "controls=[random_mask]", "--set", "rl.n_eval_episodes=2", "--set", "rl.tensorboard=false",
             "--set", "checkpoint.every=512"], 8),
    # the plain-PyTorch example (domain: torch), killed inside units and resumed from checkpoints
    "torch": ([str(Path(__file__).resolve().parents[1] / "examples/digits_cnn/task.yaml"), "--levels", "2",
               "--set", "train.steps=160", "--set", "torch.args={channels: 4, hidden: 16, batch_size: 16}",
               "--set", "controls=[random_mask]", "--set", "checkpoint.every=20"], 4),
}  # fmt: skip


def _cmd(args: list[str], out: Path) -> list[str]:
    return [sys.executable, "-m", "multiticket", "run", *args, "--quiet", "--workers", "1", "--out", str(out)]


def _done_count(out: Path) -> int:
    """DONE files under ``out``; the run being watched deletes directories (old checkpoints,
    units it recomputes) while we walk, so retry a walk that lost a directory under it."""
    while True:
        try:
            return len(list(out.rglob("DONE"))) if out.exists() else 0
        except FileNotFoundError:
            continue


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}



@pytest.mark.expensive
@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_at_random_moments_never_corrupts_results(case, tmp_path):
    args, min_kills = CASES[case]
    clean = tmp_path / "clean"
    subprocess.run(_cmd(args, clean), check=True, env=_env(), capture_output=True)
    reference = snapshot(only_run(clean))

    rng = random.Random(1234)
    kills, attempts, progress = 0, 0, []
    finished: list[Path] = []
    out = tmp_path / "killed_0"
    while kills < min_kills + 2 and attempts < 80:
        attempts += 1
        before = _done_count(out)
        proc = subprocess.Popen(_cmd(args, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait until this process has finished a unit (start-up time varies with load), then kill
        # it a random moment later: inside a unit's training, its writes, or between units
        deadline = time.monotonic() + 60
        while proc.poll() is None and _done_count(out) <= before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
            proc.wait()
            progress.append(_done_count(out))
        else:  # the run completed between kills: check it later, go on in a fresh directory
            assert proc.returncode == 0
            finished.append(out)
            out = tmp_path / f"killed_{len(finished)}"
    assert kills >= min_kills
    # the kills landed at different stages of the run, not all during start-up
    assert len({p for p in progress if p > 0}) >= 3, progress
    done = subprocess.run(_cmd(args, out), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    finished.append(out)
    for run in finished:
        assert snapshot(only_run(run)) == reference, run
