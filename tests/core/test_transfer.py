"""Ticket transfer: the shape rule, exact starts (source θ_k ⊙ mask, edge layers fresh), errors."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from multiticket.cli import main
from multiticket.core.mask import Mask
from multiticket.core.transfer import merge_weights, reinit_layers, transfer_mask
from multiticket.errors import UserError

SMALL = ["--set", "train.steps=120", "--set", "toy.n_train=512", "--set", "toy.n_test=256",
         "--set", "toy.hidden=[32,16]", "--set", "rewind.step=6"]


@pytest.fixture
def source(tmp_path) -> Path:
    assert main(["run", "toy-mlp", "--out", str(tmp_path / "src"), "--quiet", "--levels", "2", *SMALL]) == 0
    (run,) = (tmp_path / "src").iterdir()
    return run


def _fresh_toy(overrides: list[str]) -> dict[str, torch.Tensor]:
    from multiticket.adapters.toy import ToyAdapter
    from multiticket.config import load_task
    from multiticket.paths import resolve_task_path

    task = load_task(resolve_task_path("toy-mlp"), [t for t in overrides if t != "--set"])
    adapter = ToyAdapter(task.config, task.section, Path("/nonexistent"))
    adapter.build(0)
    return {k: v.clone() for k, v in adapter.module.state_dict().items()}


def test_edge_layers_reinitialised_and_the_rest_is_source_rewind_times_mask(source, tmp_path, monkeypatch):
    from multiticket.adapters.toy import ToyAdapter

    starts = []
    original = ToyAdapter.train

    def spy(self, start, stop, hooks):
        starts.append((start, {k: v.clone() for k, v in self.module.state_dict().items()}))
        return original(self, start, stop, hooks)

    monkeypatch.setattr(ToyAdapter, "train", spy)
    # other input size (32 -> 24), other number of classes (4 -> 3), other optimizer (SGD -> Adam)
    target = [*SMALL, "--set", "toy.n_features=24", "--set", "toy.n_classes=3", "--set", "toy.optimizer=adam",
              "--set", "toy.lr=0.003"]
    out = tmp_path / "tr"
    assert main(["transfer", str(source), "--to", "toy-mlp", "--out", str(out), "--quiet",
                 "--controls", "transfer_mask", *target]) == 0
    (run,) = out.iterdir()
    assert run.name.startswith(f"toy-mlp-from-{source.name}-")
    config = (run / "config.yaml").read_text()
    assert f"source: {source.name}" in config
    # plan order: dense L0, ticket L1, transfer_mask L1, ticket L2, transfer_mask L2
    assert [s for s, _ in starts] == [0, 0, 0, 0, 0]
    rewind = load_file(str(source / "seed_0" / "rewind" / "step_6" / "weights.safetensors"))
    fresh = _fresh_toy(target)
    for level, (_, weights) in zip((1, 2), (starts[1], starts[3])):
        src_mask = Mask.load(source / "seed_0" / "ticket" / f"level_{level}" / "mask.safetensors")
        mask = Mask.load(run / "seed_0" / "ticket" / f"level_{level}" / "mask.safetensors")
        for name, value in weights.items():
            layer = name.split(".")[0]
            base = fresh[name] if layer in ("0", "4") else rewind[name]
            expected = base * mask[name] if name in mask else base
            assert torch.equal(value, expected), (level, name)
        assert torch.equal(mask["2.weight"], src_mask["2.weight"])  # middle layer: the source's mask
        for name in ("0.weight", "4.weight"):  # edge layers: random at the source layer's density
            assert mask[name].shape == fresh[name].shape
            want = int(src_mask[name].float().mean() * mask[name].numel() + 0.5)
            assert int(mask[name].sum()) == want
        # mask transfer: the same mask, the target's fresh init everywhere (not the source's)
        tm = Mask.load(run / "seed_0" / "transfer_mask" / f"level_{level}" / "mask.safetensors")
        assert tm == mask
        metrics = json.loads((run / "seed_0" / "transfer_mask" / f"level_{level}" / "metrics.json").read_text())
        assert metrics["alive"] == mask.num_alive
    tm_start = starts[2][1]
    assert not torch.equal(tm_start["2.weight"], rewind["2.weight"] * mask["2.weight"])
    # the report reads a transfer run unchanged, and names the source
    assert main(["report", str(run)]) == 0
    assert source.name in (run / "report.html").read_text()


def test_non_edge_mismatch_is_one_line_exit_2_and_writes_nothing(source, tmp_path, capsys):
    out = tmp_path / "tr"
    code = main(["transfer", str(source), "--to", "toy-mlp", "--out", str(out), "--quiet",
                 *SMALL, "--set", "toy.hidden=[32,8]"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "'2.weight'" in err and "(16, 32)" in err and "(8, 32)" in err
    assert not out.exists()


def test_shape_rule_units():
    src = {"a.weight": torch.zeros(4, 3), "a.bias": torch.zeros(4), "b.weight": torch.ones(2, 4)}
    tgt = {"a.weight": torch.zeros(4, 5), "a.bias": torch.zeros(4), "b.weight": torch.full((2, 4), 7.0)}
    assert reinit_layers(src, tgt, ["a", "b"]) == ["a"]
    merged = merge_weights(src, tgt, ["a"])
    assert torch.equal(merged["a.weight"], tgt["a.weight"]) and torch.equal(merged["b.weight"], src["b.weight"])
    with pytest.raises(UserError, match=r"'a.weight' has shape \(4, 3\) in the source and \(4, 5\)"):
        reinit_layers(src, tgt, ["b"])
    with pytest.raises(UserError, match="exists only in the target"):
        reinit_layers(src, {**tgt, "c.weight": torch.zeros(1)}, ["a", "b"])
    # prefixes match whole module names only: "a" does not cover "ab.weight"
    with pytest.raises(UserError, match="'ab.weight'"):
        reinit_layers({"ab.weight": torch.zeros(2)}, {"ab.weight": torch.zeros(3)}, ["a"])
    mask = Mask({"a.weight": torch.tensor([[1, 0, 0]] * 4).bool()})
    moved = transfer_mask(mask, {"a.weight": (4, 5)}, ["a"], (0, "t", 1))
    assert int(moved["a.weight"].sum()) == 7  # floor(1/3 * 20 + 0.5)
    assert moved == transfer_mask(mask, {"a.weight": (4, 5)}, ["a"], (0, "t", 1))  # seeded


def test_sb3_ppo_cartpole_to_a2c_acrobot(tmp_path, monkeypatch):
    """PPO -> A2C and CartPole (obs 4, 2 actions) -> Acrobot (obs 6, 3 actions): exactly the input
    layers of both heads and the action head are re-initialised; the rest is the source's θ_k."""
    pytest.importorskip("stable_baselines3")
    from multiticket.adapters.sb3 import SB3Adapter

    rl = ["--set", "train.steps=512", "--set", "rewind.step=256", "--set", "rl.n_eval_episodes=1",
          "--set", "rl.tensorboard=false"]
    assert main(["run", "cartpole-ppo", "--out", str(tmp_path / "src"), "--quiet", "--levels", "1", *rl]) == 0
    (source,) = (tmp_path / "src").iterdir()
    starts = []
    original = SB3Adapter.train

    def spy(self, start, stop, hooks):
        starts.append({k: v.detach().clone() for k, v in self.module.state_dict().items()})
        return original(self, start, stop, hooks)

    monkeypatch.setattr(SB3Adapter, "train", spy)
    target = [*rl, "--set", "rl.env=Acrobot-v1", "--set", "rl.algo=a2c", "--set", "rl.hyperparams=CartPole-v1",
              "--set", "train.steps=160", "--set", "rewind.step=40"]
    assert main(["transfer", str(source), "--to", "cartpole-ppo", "--out", str(tmp_path / "tr"), "--quiet",
                 "--controls", "transfer_mask", *target]) == 0
    (run,) = (tmp_path / "tr").iterdir()
    rewind = load_file(str(source / "seed_0" / "rewind" / "step_256" / "weights.safetensors"))
    mask = Mask.load(run / "seed_0" / "ticket" / "level_1" / "mask.safetensors")
    ticket_start = starts[1]
    reinit = ("mlp_extractor.policy_net.0.", "mlp_extractor.value_net.0.", "action_net.")
    fresh = starts[0]  # the target's dense level 0 starts from its own fresh init (seed 0)
    for name, value in ticket_start.items():
        base = fresh[name] if name.startswith(reinit) else rewind[name]
        expected = base * mask[name] if name in mask else base
        assert torch.equal(value, expected), name
    assert sum(n.startswith(reinit) for n in ticket_start) == 6
    assert ticket_start["action_net.weight"].shape == (3, 64)
    assert ticket_start["mlp_extractor.policy_net.0.weight"].shape == (64, 6)
