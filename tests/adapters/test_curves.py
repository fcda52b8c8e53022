"""Learning curves of SB3 (on- and off-policy) and HF units: written in every unit directory, with
the evaluations of ``eval_every``, and bit-identical weights with and without those evaluations."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from multiticket.cli import main
from tests.runsnap import only_run


def _rows(path: Path) -> list[tuple[int, str, float]]:
    return [(int(s), n, float(v)) for s, n, v in (ln.split(",") for ln in path.read_text().splitlines()[1:])]


def _on_off(tmp_path: Path, args: list[str], key: str) -> tuple[Path, Path]:
    assert main([*args, "--out", str(tmp_path / "off")]) == 0
    assert main([*args, "--set", key, "--out", str(tmp_path / "on")]) == 0
    off, on = only_run(tmp_path / "off"), only_run(tmp_path / "on")
    for final in sorted(off.rglob("final.safetensors")):
        assert final.read_bytes() == (on / final.relative_to(off)).read_bytes(), f"{final} changed by {key}"
    return off, on


@pytest.mark.parametrize("task, steps, every", [("cartpole-ppo", 1024, 300), ("cartpole-dqn", 800, 300)])
def test_sb3_units_record_episodes_and_evaluations(tmp_path: Path, task: str, steps: int, every: int) -> None:
    pytest.importorskip("stable_baselines3")
    args = ["run", task, "--quiet", "--levels", "0", "--set", f"train.steps={steps}", "--set", "rewind.step=128", "--set", "rl.n_eval_episodes=2",
            "--set", "rl.tensorboard=true"]
    if task == "cartpole-dqn":
        args += ["--set", "rl.overrides={learning_starts: 100}"]
    off, on = _on_off(tmp_path, args, f"rl.eval_every={every}")
    rows = _rows(on / "seed_0" / "ticket" / "level_0" / "curve.csv")
    returns = [r for r in rows if r[1] == "train/episode_return"]
    lengths = [r for r in rows if r[1] == "train/episode_length"]
    assert returns and len(returns) == len(lengths)
    assert [r[2] for r in returns] == [r[2] for r in lengths], "CartPole: return = length (reward 1 per step)"
    assert sorted(r[0] for r in returns) == [r[0] for r in returns] and all(0 < r[0] <= steps for r in returns)
    evals = [r[0] for r in rows if r[1] == "eval/eval_return"]
    assert evals[:-1] and all(s >= every for s in evals[:-1]) and evals[-1] == steps
    plain = _rows(off / "seed_0" / "ticket" / "level_0" / "curve.csv")
    assert [r for r in plain if r[1].startswith("train/")] == [r for r in rows if r[1].startswith("train/")]
    tb = on / "cache" / "tensorboard" / "seed_0" / "ticket" / "level_0"
    pytest.importorskip("tensorboard")
    assert list(tb.glob("events.out.tfevents.*")), "TensorBoard run named seed_<s>/<control>/level_<L>"


def test_hf_units_record_loss_and_validation_metric(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "hf"))
    from hf_testlib import COMMON, TINY

    task = {"name": "tiny-bert", "domain": "nlp", "train": {"steps": 9}, "prune": {"rate": 0.5},
            "rewind": {"step": 2}, "controls": ["random_mask"],
            "nlp": {**TINY["bert"], **COMMON, "logging_steps": 2, "dropout": 0.1}}
    path = tmp_path / "bert.yaml"
    path.write_text(yaml.safe_dump(task))
    args = ["run", str(path), "--quiet", "--levels", "1"]
    _, on = _on_off(tmp_path, args, "nlp.eval_every=3")
    rows = _rows(on / "seed_0" / "ticket" / "level_0" / "curve.csv")
    assert [r[0] for r in rows if r[1] == "train/loss"] == [2, 4, 6, 8]
    assert [r[0] for r in rows if r[1] == "eval/accuracy"] == [3, 6, 9]
    assert not [r for r in rows if r[1].startswith("eval/test_") and r[0] < 9], "no test data during training"
    level1 = _rows(on / "seed_0" / "ticket" / "level_1" / "curve.csv")
    assert [r[0] for r in level1 if r[1] == "train/loss"] == [4, 6, 8], "logged from the rewind step k = 2 on"
