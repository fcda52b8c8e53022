"""Retraining modes (Renda et al. 2020): weight rewinding (default, unchanged), learning-rate
rewinding (previous final weights, schedule replayed from k) and fine-tuning (previous final
weights, constant small LR) -- in the toy, SB3 and HF training loops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from multiticket.adapters.toy import ToyAdapter, lr_factor
from multiticket.cli import main
from multiticket.config import load_task
from multiticket.core.mask import Mask
from multiticket.errors import UserError
from multiticket.paths import TASKS_DIR

TOY = TASKS_DIR / "toy-mlp.yaml"
T, K, LR = 150, 10, 0.05


def _run_dir(out: Path) -> Path:
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return d


def _spy_starts(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record, for every ToyAdapter.train call: start step, the weights at entry, and the LR the
    optimizer used for the first and every update."""
    calls: list[dict] = []
    original = ToyAdapter.train

    def spy(self, start, stop, hooks):
        call = {"start": start, "weights": {k: v.clone() for k, v in self.module.state_dict().items()}, "lrs": []}
        calls.append(call)
        on_step = hooks.on_step

        def recording(step, logs=None):
            call["lrs"].append(self.optimizers()[0].param_groups[0]["lr"])
            on_step(step, logs)

        hooks.on_step = recording
        return original(self, start, stop, hooks)

    monkeypatch.setattr(ToyAdapter, "train", spy)
    return calls


@pytest.mark.parametrize("mode", ["lr", "finetune"])
def test_level_starts_from_previous_final_weights_times_mask(mode, tiny_toy_args, tmp_path, monkeypatch):
    calls = _spy_starts(monkeypatch)
    extra = ["--set", "rewind.finetune_lr=0.003"] if mode == "finetune" else []
    args = [*tiny_toy_args, "--levels", "2", "--set", f"rewind.step={K}", "--set", "controls=[]",
            "--set", "toy.schedule=cosine", "--set", f"rewind.mode={mode}", *extra]
    assert main(args) == 0
    run = _run_dir(tmp_path / "runs")
    assert len(calls) == 3  # dense, level 1, level 2
    for level in (1, 2):
        call = calls[level]
        assert call["start"] == K  # counters / schedule position of the rewind point
        prev = run / "seed_0" / "ticket" / f"level_{level - 1}"
        from safetensors.torch import load_file

        final = load_file(str(prev / "final.safetensors"))
        mask = Mask.load(run / "seed_0" / "ticket" / f"level_{level}" / "mask.safetensors")
        for name, value in call["weights"].items():
            expected = final[name] * mask[name] if name in mask else final[name]
            assert torch.equal(value, expected), (mode, level, name)
        record = json.loads((run / "seed_0" / "ticket" / f"level_{level}" / "metrics.json").read_text())
        assert record["retrain_mode"] == mode and record["start_step"] == K
        lrs = call["lrs"]
        assert len(lrs) == T - K  # same compute as weight rewinding
        if mode == "lr":  # the dense run's cosine schedule, replayed from k
            assert lrs[0] == pytest.approx(LR * lr_factor("cosine", K, T))
            assert lrs[-1] == pytest.approx(LR * lr_factor("cosine", T - 1, T))
        else:
            assert set(lrs) == {0.003}
    # the dense run is untouched by the mode
    assert calls[0]["lrs"][0] == pytest.approx(LR)


def test_weight_rewinding_is_the_default_and_keeps_the_hash(tiny_toy_args, tmp_path, monkeypatch):
    base = load_task(TOY)
    assert load_task(TOY, ["rewind.mode=weights"]).hash == base.hash
    assert "mode" not in base.resolved["rewind"]
    assert load_task(TOY, ["rewind.mode=lr"]).hash != base.hash
    assert load_task(TOY, ["rewind.mode=finetune", "rewind.finetune_lr=0.001"]).hash != base.hash
    calls = _spy_starts(monkeypatch)
    assert main([*tiny_toy_args, "--levels", "1", "--set", f"rewind.step={K}", "--set", "controls=[one_shot]"]) == 0
    run = _run_dir(tmp_path / "runs")
    from multiticket.core.rewind import RewindPoint

    rewind = RewindPoint.load(run / "seed_0" / "rewind" / f"step_{K}")
    for call, unit in ((calls[1], "ticket"), (calls[2], "one_shot")):
        mask = Mask.load(run / "seed_0" / unit / "level_1" / "mask.safetensors")
        for name, value in call["weights"].items():
            expected = rewind.weights[name] * mask[name] if name in mask else rewind.weights[name]
            assert torch.equal(value, expected), (unit, name)
        record = json.loads((run / "seed_0" / unit / "level_1" / "metrics.json").read_text())
        assert record["retrain_mode"] == "weights"


def test_one_shot_under_lr_rewinding_starts_from_dense_final(tiny_toy_args, tmp_path, monkeypatch):
    calls = _spy_starts(monkeypatch)
    args = [*tiny_toy_args, "--levels", "1", "--set", f"rewind.step={K}", "--set", "controls=[one_shot]",
            "--set", "rewind.mode=lr"]
    assert main(args) == 0
    run = _run_dir(tmp_path / "runs")
    from safetensors.torch import load_file

    dense = load_file(str(run / "seed_0" / "ticket" / "level_0" / "final.safetensors"))
    mask = Mask.load(run / "seed_0" / "one_shot" / "level_1" / "mask.safetensors")
    for name, value in calls[2]["weights"].items():
        assert torch.equal(value, dense[name] * mask[name] if name in mask else dense[name]), name


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["rewind.mode=finetune"], "rewind.finetune_lr: required when rewind.mode is finetune"),
        (["rewind.finetune_lr=0.01"], "rewind.finetune_lr: only used with rewind.mode finetune"),
        (["rewind.mode=finetune", "rewind.finetune_lr=-1"], "rewind.finetune_lr"),
        (["rewind.mode=late"], "rewind.mode"),
    ],
)
def test_bad_mode_config(overrides, fragment):
    with pytest.raises(UserError, match=fragment.replace(".", r"\.")):
        load_task(TOY, overrides)


def test_finetune_refused_for_an_adapter_without_constant_lr(tmp_path):
    from multiticket.core.adapter import DomainAdapter
    from multiticket.core.imp import IMPRunner
    from multiticket.core.store import RunStore

    class NoConstantLR(ToyAdapter):
        set_constant_lr = DomainAdapter.set_constant_lr

    task = load_task(TOY, ["rewind.mode=finetune", "rewind.finetune_lr=0.01"])
    runner = IMPRunner(task, NoConstantLR(task.config, task.section, tmp_path), RunStore(tmp_path / "run"))
    with pytest.raises(UserError, match="rewind.mode: finetune"):
        runner.prepare()


# -- constant LR inside SB3's and HF's own loops ------------------------------------------------


class _LRHooks:
    """Records the optimizer LR at every step; ``stop_at``: ask for an early stop there."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lrs: list[float] = []
        self.steps: list[int] = []
        self.should_stop = False
        self.stop_at = stop_at

    def on_optimizers(self, optimizers):
        self.optimizers = list(optimizers)

    def on_step(self, step, logs=None):
        self.steps.append(step)
        self.lrs.append(self.optimizers[0].param_groups[0]["lr"])
        if self.stop_at is not None and step >= self.stop_at:
            self.should_stop = True

    def on_resumable(self, step):
        pass


def test_sb3_constant_lr_and_early_stop(tmp_path):
    pytest.importorskip("stable_baselines3")
    from tests.adapters.test_sb3 import make_adapter

    adapter = make_adapter("ppo", tmp_path)  # 2 envs x 32 steps per rollout: one update per 64 steps
    adapter.build(0)
    adapter.set_constant_lr(1.25e-5)
    hooks = _LRHooks(stop_at=200)
    adapter.train(0, 400, hooks)
    updated = hooks.lrs[64 // 2:]  # after the first update SB3 has applied the schedule
    assert updated and set(updated) == {1.25e-5}
    # the stop request ended learn() cleanly at that step
    assert hooks.steps[-1] == 200 and adapter.model.num_timesteps == 200
    adapter.build(0)  # a fresh build follows the configured schedule again
    adapter.set_constant_lr(None)
    hooks = _LRHooks()
    adapter.train(0, 200, hooks)
    assert 1.25e-5 not in hooks.lrs[64 // 2:]


def test_hf_constant_lr_and_early_stop(tmp_path):
    pytest.importorskip("transformers")
    from tests.adapters.hf.hf_testlib import make_adapter

    adapter = make_adapter(tmp_path / "work", "bert")
    adapter.build(0)
    adapter.set_constant_lr(2.5e-5)
    hooks = _LRHooks(stop_at=6)
    adapter.train(3, 20, hooks)  # a level starting at k=3; logging every 4 steps
    assert set(hooks.lrs) == {2.5e-5}
    assert hooks.steps[-1] == 6  # Trainer left its loop right after the stop request
    adapter.set_constant_lr(None)
    adapter.build(0)
    hooks = _LRHooks()
    adapter.train(3, 8, hooks)
    assert 2.5e-5 not in hooks.lrs
