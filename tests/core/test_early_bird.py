"""Early-bird detection: the window rule, stopping exactly when the next mask stops changing (and
not before), the early_bird chain end to end with its compute accounting, and its report section."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from multiticket.cli import main
from multiticket.core.early_bird import EarlyBirdMonitor, EarlyBirdSettings, window_distance
from multiticket.core.hooks import LevelHooks
from multiticket.core.mask import Mask
from multiticket.core.monitors import EarlyBirdWatch, MonitorList
from multiticket.core.prune import PruneSpec, prune
from multiticket.errors import UserError

SPEC = PruneSpec("global_magnitude", 0.2)


def _mask(bits: list[int]) -> Mask:
    return Mask({"w": torch.tensor(bits, dtype=torch.bool)})


def test_window_distance_is_newest_vs_each_earlier_over_alive_entries():
    a, b, c = _mask([1, 1, 0, 0]), _mask([1, 0, 1, 0]), _mask([1, 1, 0, 0])
    assert window_distance([a], alive=4) == 0.0
    assert window_distance([a, c], alive=4) == 0.0
    assert window_distance([a, b], alive=4) == pytest.approx(2 / 4)
    # newest (c) vs a: 0, vs b: 2 differing entries; normalised by the alive count given
    assert window_distance([a, b, c], alive=2) == pytest.approx(1.0)
    # the oldest pair is not compared with each other, only with the newest
    assert window_distance([b, a, c], alive=4) == pytest.approx(window_distance([a, b, c], alive=4))


def test_settings_are_validated():
    with pytest.raises(ValueError, match="interval"):
        EarlyBirdSettings(interval=0)
    with pytest.raises(ValueError, match="window"):
        EarlyBirdSettings(interval=1, window=1)
    with pytest.raises(ValueError, match="threshold"):
        EarlyBirdSettings(interval=1, threshold=0)


class OneTensor(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n))


@pytest.mark.parametrize("window", [2, 5])
def test_fires_once_masks_stop_changing_and_not_before(window):
    """Weights are redrawn at random until step s (so the next mask keeps changing by far more than
    the threshold), then frozen: the monitor must fire at the check that completes a window of
    masks all taken at or after s, and at no earlier check."""
    interval, s, start = 10, 120, 20
    module = OneTensor(2000)
    mask = Mask({"w": torch.ones(2000, dtype=torch.bool)})
    monitor = EarlyBirdMonitor(mask, SPEC, EarlyBirdSettings(interval, window, 0.1), start=start)
    gen = torch.Generator().manual_seed(0)
    frozen = torch.randn(2000, generator=gen)
    fired = []
    for step in range(start + 1, 400):
        module.w.data.copy_(torch.randn(2000, generator=gen) if step < s else frozen)
        if monitor.observe(step, module):
            fired.append(step)
    first_stable_check = next(c for c in range(start + interval, 400, interval) if c >= s)
    expected = first_stable_check + (window - 1) * interval
    assert fired == [expected]
    assert monitor.fired_at == expected
    assert monitor.next_mask == prune({"w": frozen}, mask, SPEC)
    assert torch.equal(monitor.snapshot["w"], frozen)
    # every full window before the freeze was far from stable
    before = [d for step, d in monitor.trace if d is not None and step < s]
    assert before and min(before) > 0.3
    checks = [step for step, _ in monitor.trace]
    assert checks == list(range(start + interval, expected + 1, interval))


def test_min_stop_and_step_jumps():
    """Steps may jump (SB3 counts n_envs per call): checks land on the first step past each due
    point; the monitor never fires before ``min_stop``, even with stable masks."""
    module = OneTensor(100)
    module.w.data.copy_(torch.arange(100.0))
    mask = Mask({"w": torch.ones(100, dtype=torch.bool)})
    monitor = EarlyBirdMonitor(mask, SPEC, EarlyBirdSettings(10, 3, 0.1), start=0, min_stop=95)
    fired = [step for step in range(0, 200, 8) if monitor.observe(step, module)]
    assert [s for s, _ in monitor.trace][:4] == [16, 24, 32, 40]
    assert fired == [96]


def test_sparse_level_distance_is_relative_to_alive_weights():
    """At a sparse level the already-pruned entries agree in every mask; they must not dilute the
    distance (else the threshold would loosen level by level)."""
    n = 1000
    alive = torch.zeros(n, dtype=torch.bool)
    alive[:100] = True  # 90 % already pruned
    mask = Mask({"w": alive})
    module = OneTensor(n)
    monitor = EarlyBirdMonitor(mask, SPEC, EarlyBirdSettings(1, 2, 0.1), start=0)
    gen = torch.Generator().manual_seed(1)
    for step in (1, 2):
        module.w.data.copy_(torch.randn(n, generator=gen))
        monitor.observe(step, module)
    # two random 20 % prunings of 100 live weights differ in ~32 of them: ~0.32 of the live
    # weights, but only ~0.03 of all 1000 entries
    assert monitor.distance is not None and monitor.distance > 0.1
    assert not monitor.fired


class _StepAdapter:
    """Just enough of an adapter for LevelHooks."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def state(self) -> dict:
        return {}

    def optimizers(self) -> list:
        return []


def test_hooks_set_should_stop_and_refuse_to_go_on():
    from multiticket.core.hooks import StopTraining

    module = OneTensor(50)
    module.w.data.copy_(torch.arange(50.0))
    hooks = LevelHooks(_StepAdapter(module), None, 0)
    hooks.monitors = MonitorList([EarlyBirdWatch(EarlyBirdMonitor(Mask({"w": torch.ones(50, dtype=torch.bool)}), SPEC,
                                                                  EarlyBirdSettings(2, 2, 0.1), start=0))])
    for step in range(1, 4):
        hooks.on_step(step)
    assert not hooks.should_stop  # one check (step 2): the window of two is not full yet
    hooks.on_step(4)
    assert hooks.should_stop and hooks.stopped_at == 4
    with pytest.raises(StopTraining):
        hooks.on_step(5)  # an adapter that does not poll is stopped here


def test_toy_training_stops_when_its_next_mask_freezes(monkeypatch, tmp_path):
    """Real training (toy adapter): the LR drops to zero after step s, so the weights and the next
    mask freeze there. With a threshold that only identical masks meet, the early stop must come at
    the check completing the first window after s -- and training must really end there."""
    from multiticket.adapters import toy
    from multiticket.config import load_task

    s, interval, window = 60, 10, 3
    monkeypatch.setattr(toy, "lr_factor", lambda schedule, step, total: 1.0 if step < s else 0.0)
    task = load_task(toy_task_path(), ["train.steps=300", "toy.n_train=512", "toy.hidden=[32,16]",
                                       "toy.lr=0.2", "toy.momentum=0.0"])
    adapter = toy.ToyAdapter(task.config, task.section, tmp_path)
    adapter.build(0)
    names = adapter.default_prunable()
    mask = Mask.ones(adapter.module, names)
    hooks = LevelHooks(adapter, None, 0)
    monitor = EarlyBirdMonitor(mask, SPEC, EarlyBirdSettings(interval, window, 1e-9), start=0)
    hooks.monitors = MonitorList([EarlyBirdWatch(monitor)])
    steps = []
    original = hooks.on_step

    def counting(step, logs=None):
        steps.append(step)
        original(step, logs)

    hooks.on_step = counting  # type: ignore[method-assign]
    adapter.train(0, 300, hooks)
    expected = s + (window - 1) * interval  # checks at 60, 70, 80 are the first three after s
    assert hooks.stopped_at == expected
    assert steps[-1] == expected  # no step after the stop
    assert all(d is None or d > 0 for step, d in monitor.trace if step < expected)


def toy_task_path() -> Path:
    from multiticket.paths import TASKS_DIR

    return TASKS_DIR / "toy-mlp.yaml"


def _run_dir(out: Path) -> Path:
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return d


def test_early_bird_chain_end_to_end(tiny_toy_args, tmp_path):
    args = [*tiny_toy_args, "--set", "train.steps=300", "--levels", "3", "--set", "controls=[early_bird]",
            "--set", "early_bird.interval=10", "--set", "early_bird.window=3", "--set", "rewind.step=10"]
    assert main(args) == 0
    run = _run_dir(tmp_path / "runs")
    T, k = 300, 10
    infos = {}
    for level in (1, 2, 3):
        d = run / "seed_0" / "early_bird" / f"level_{level}"
        record = json.loads((d / "metrics.json").read_text())
        info = infos[level] = record["early_bird"]
        ticket = json.loads((run / "seed_0" / "ticket" / f"level_{level}" / "metrics.json").read_text())
        assert record["alive"] == ticket["alive"]  # same counting rule, same sparsity
        assert record["start_step"] == k and record["stop_step"] == T  # each level trained to T
        assert info["imp_search_steps"] == T + (level - 1) * (T - k)
        assert info["compute_fraction"] == pytest.approx(info["search_steps"] / info["imp_search_steps"], abs=1e-6)
        assert info["steps_saved"] == info["imp_search_steps"] - info["search_steps"]
        if level > 1:  # this level's mask is pruned from the weights the previous search stopped at
            prev = run / "seed_0" / "early_bird" / f"level_{level - 1}"
            expected = prune(load_file(str(prev / "early_bird.safetensors")), Mask.load(prev / "mask.safetensors"),
                             SPEC)
            assert Mask.load(d / "mask.safetensors") == expected
            stop = infos[level - 1]["stopped_at"] or T
            assert info["search_steps"] == infos[level - 1]["search_steps"] + stop - k
    first = infos[1]
    assert first["dense_stopped_at"] is not None and k <= first["dense_stopped_at"] < T
    assert first["search_steps"] == first["dense_stopped_at"]
    assert infos[3]["compute_fraction"] < 1.0
    # rerunning does nothing; the report has the comparison with its compute fraction
    assert main(args) == 0
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "Early-bird tickets vs full IMP" in html
    shown = re.search(r'data-level="3" data-kind="compute_fraction" data-value="([^"]+)"', html)
    assert shown and float(shown.group(1)) == pytest.approx(infos[3]["compute_fraction"], abs=1e-5)


def test_bad_early_bird_config_is_one_line():
    from multiticket.config import load_task

    with pytest.raises(UserError, match="early_bird: needs a magnitude strategy"):
        load_task(toy_task_path(), ["controls=[early_bird]", "prune.strategy=random"])
    with pytest.raises(UserError, match=r"early_bird.interval: must be 1 to"):
        load_task(toy_task_path(), ["early_bird.interval=0.01%"])
    with pytest.raises(UserError, match="early_bird.threshold"):
        load_task(toy_task_path(), ["early_bird.threshold=2"])
    base = load_task(toy_task_path())
    assert load_task(toy_task_path(), ["controls=[early_bird]"]).hash == base.hash
    assert load_task(toy_task_path(), ["early_bird.window=4"]).hash != base.hash
