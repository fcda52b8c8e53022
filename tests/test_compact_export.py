"""Compact export (issue #34): a neuron-structured CartPole PPO ticket, more than half of its hidden
neurons removed, exported to a zip that plain ``stable_baselines3.PPO.load`` reads in a process
that cannot import multiticket, with fewer parameters and exactly the masked model's actions (and
its values to 1e-5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("torch_pruning")

from multiticket.cli import main as cli_main  # noqa: E402
from multiticket.core import structure  # noqa: E402
from multiticket.core.mask import Mask  # noqa: E402
from tests.runsnap import refusing  # noqa: E402

HIDDEN = ["mlp_extractor.policy_net.0.weight", "mlp_extractor.policy_net.2.weight",
          "mlp_extractor.value_net.0.weight", "mlp_extractor.value_net.2.weight"]
HEADS = ("action_net.weight", "value_net.weight")

#: runs with SB3 alone: any import of multiticket fails, and none may have happened at the end
CHECK = refusing("multiticket") + r"""
import numpy as np, torch
from stable_baselines3 import PPO
masked, compact = (PPO.load(p, device="cpu") for p in sys.argv[1:3])
rng = np.random.default_rng(0)
obs = rng.normal(size=(256, 4)).astype(np.float32) * np.array([1.0, 1.0, 0.1, 1.0], dtype=np.float32)
out = {}
for name, model in (("masked", masked), ("compact", compact)):
    actions, _ = model.predict(obs, deterministic=True)
    with torch.no_grad():
        values = model.policy.predict_values(model.policy.obs_to_tensor(obs)[0]).squeeze(1)
    out[name] = {"actions": actions.tolist(), "values": values.tolist(),
                 "parameters": sum(p.numel() for p in model.policy.parameters()),
                 "net_arch": model.policy_kwargs.get("net_arch")}
assert not any(m == "multiticket" or m.startswith("multiticket.") for m in sys.modules)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def structured_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cartpole-ppo at 2 levels of prune.structure: neurons at rate 0.35: 256 hidden neurons ->
    166 -> 108 (57.8 % removed), with a random control drawing neurons."""
    out = tmp_path_factory.mktemp("runs")
    code = cli_main(["run", "cartpole-ppo", "--out", str(out), "--quiet", "--workers", "1", "--levels", "2",
                     "--set", "prune.structure=neurons", "--set", "prune.rate=0.35", "--set", "train.steps=512",
                     "--set", "rewind.step=128", "--set", "controls=[random_mask]", "--set", "rl.n_eval_episodes=2",
                     "--set", "rl.tensorboard=false"])
    assert code == 0
    (run_dir,) = out.glob("cartpole-ppo-*")
    return run_dir


def _hidden_alive(mask: Mask) -> int:
    return sum(structure.alive_rows(mask, HEADS)[n] for n in HIDDEN)


def test_a_structured_ppo_run_prunes_whole_neurons_and_keeps_every_output(structured_run: Path) -> None:
    for control, level, alive in (("ticket", 1, 166), ("ticket", 2, 108), ("random_mask", 2, 108)):
        mask = Mask.load(structured_run / f"seed_0/{control}/level_{level}/mask.safetensors")
        assert _hidden_alive(mask) == alive
        assert structure.partial_rows(mask, HEADS) is None
        assert all(bool(mask[h].all()) for h in HEADS)
    ticket = Mask.load(structured_run / "seed_0/ticket/level_2/mask.safetensors")
    drawn = Mask.load(structured_run / "seed_0/random_mask/level_2/mask.safetensors")
    assert structure.alive_rows(drawn, HEADS) == structure.alive_rows(ticket, HEADS) and drawn != ticket
    record = json.loads((structured_run / "seed_0/ticket/level_2/metrics.json").read_text())
    assert record["planned_sparsity"] == pytest.approx(record["sparsity"]) and record["sparsity"] > 0.3


def test_the_compact_export_loads_in_plain_sb3_and_acts_as_the_masked_ticket(structured_run: Path,
                                                                            tmp_path: Path) -> None:
    out = tmp_path / "compact.zip"
    assert cli_main(["export", str(structured_run), "--seed", "0", "--level", "2", "--compact", "--out", str(out)]) == 0
    assert out.is_file()
    masked = structured_run / "seed_0/ticket/level_2/ticket.zip"  # what training itself saved
    done = subprocess.run([sys.executable, "-I", "-c", CHECK, str(masked), str(out)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    dense, small = result["masked"], result["compact"]
    assert small["parameters"] < dense["parameters"]
    assert small["actions"] == dense["actions"]
    assert torch.allclose(torch.tensor(small["values"]), torch.tensor(dense["values"]), atol=1e-5, rtol=0)
    widths = small["net_arch"]["pi"] + small["net_arch"]["vf"]
    assert sum(widths) == 108 and len(widths) == 4  # the 148 removed neurons are gone from the network


def test_the_export_without_compact_and_from_the_python_api(structured_run: Path, tmp_path: Path) -> None:
    import multiticket

    run = multiticket.load_run(structured_run)
    plain = run.export(0, 2, compact=False, path=tmp_path / "plain.zip")
    small = run.export(0, 1, control="ticket", path=tmp_path / "small")
    assert plain == tmp_path / "plain.zip" and small == tmp_path / "small.zip"
    assert small.stat().st_size < plain.stat().st_size


@pytest.mark.parametrize(("args", "fragment"), [
    (["--seed", "7", "--level", "2"], "seed_7/ticket/level_2 is not a finished unit"),
    (["--seed", "0", "--level", "2", "--control", "Bad!"], "--control: 'Bad!' is no control name"),
    (["--seed", "0", "--level", "2", "--out", "/nonexistent-dir/x.zip"], "--out: /nonexistent-dir is no directory"),
])
def test_bad_export_input_is_one_line_and_writes_nothing(structured_run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str], args: list[str],
                                                         fragment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["export", str(structured_run), "--compact", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())
