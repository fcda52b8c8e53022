"""End-to-end IMP on the toy adapter: layout, exact sparsities, controls, resume."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from multiticket.cli import main
from multiticket.core.controls import CONTROLS
from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, planned_alive, planned_sparsity
from multiticket.core.rewind import RewindPoint


def _run_dir(out: Path) -> Path:
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return d


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_planned_sparsity_equals_achieved(tiny_toy_args, tmp_path):
    assert main([*tiny_toy_args, "--levels", "5", "--seeds", "0,1"]) == 0
    run = _run_dir(tmp_path / "runs")
    assert (run / "config.yaml").is_file() and (run / "summary.csv").is_file()
    for seed in (0, 1):
        for level in range(6):
            d = run / f"seed_{seed}" / "ticket" / f"level_{level}"
            for f in ("mask.safetensors", "final.safetensors", "metrics.json", "DONE"):
                assert (d / f).is_file(), d / f
            mask = Mask.load(d / "mask.safetensors")
            final = load_file(str(d / "final.safetensors"))
            zeros = sum(int((final[n] == 0).sum()) for n in mask)
            numel = sum(final[n].numel() for n in mask)
            metrics = json.loads((d / "metrics.json").read_text())
            sizes = {n: final[n].numel() for n in mask}
            spec = PruneSpec("global_magnitude", 0.2)
            assert zeros == numel - planned_alive(sizes, spec, level)  # exact, by the rounding rule
            assert metrics["alive"] == planned_alive(sizes, spec, level)
            assert metrics["sparsity"] == pytest.approx(planned_sparsity(sizes, spec, level), abs=1e-12)
            assert abs(metrics["sparsity"] - (1 - 0.8**level)) < 1e-3
            assert {"level", "control", "seed", "sparsity", "metrics"} <= set(metrics)
        for control in ("random_reinit", "random_mask"):
            for level in range(1, 6):
                assert (run / f"seed_{seed}" / control / f"level_{level}" / "DONE").is_file()
    # rerunning does no training and changes no file
    before = _files(run)
    assert main([*tiny_toy_args, "--levels", "5", "--seeds", "0,1"]) == 0
    assert _files(run) == before


def test_level_starts_from_rewind_point_times_mask(tiny_toy_args, tmp_path, monkeypatch):
    from multiticket.adapters.toy import ToyAdapter

    starts = []
    original = ToyAdapter.train

    def spy(self, start, stop, hooks):
        starts.append((start, {k: v.clone() for k, v in self.module.state_dict().items()}))
        return original(self, start, stop, hooks)

    monkeypatch.setattr(ToyAdapter, "train", spy)
    assert main([*tiny_toy_args, "--levels", "2", "--set", "rewind.step=10", "--set", "controls=[]"]) == 0
    run = _run_dir(tmp_path / "runs")
    rewind = RewindPoint.load(run / "seed_0" / "rewind" / "step_10")
    assert rewind.step == 10
    for level, (start, weights) in zip((1, 2), starts[1:]):
        assert start == 10
        mask = Mask.load(run / "seed_0" / "ticket" / f"level_{level}" / "mask.safetensors")
        for name, value in weights.items():
            expected = rewind.weights[name] * mask[name] if name in mask else rewind.weights[name]
            assert torch.equal(value, expected), (level, name)


def test_all_controls_run_at_documented_sparsities(tiny_toy_args, tmp_path):
    controls = [c for c in CONTROLS if c not in ("ticket", "transfer_mask")]  # transfer_mask: tests/core/test_transfer.py
    args = [*tiny_toy_args, "--levels", "2", "--set", f"controls=[{','.join(controls)}]", "--set", "rewind.step=5",
            "--set", "targeted_dropout.alpha=0.5"]  # prune_dense_td trains a dense run with targeted dropout
    assert main(args) == 0
    run = _run_dir(tmp_path / "runs")
    for level in (1, 2):
        ticket = Mask.load(run / "seed_0" / "ticket" / f"level_{level}" / "mask.safetensors")
        for control in controls:
            d = run / "seed_0" / control / f"level_{level}"
            mask = Mask.load(d / "mask.safetensors")
            assert mask.num_alive == ticket.num_alive, control
            if control in ("random_mask", "permuted_mask"):
                assert mask.alive_counts() == ticket.alive_counts() and mask != ticket
            if control in ("random_reinit", "permuted_init"):
                assert mask == ticket
            metrics = json.loads((d / "metrics.json").read_text())
            expected_start = 0 if control in ("random_reinit", "random_mask", "random_mask_global", "rewind_init") else 5
            if control in ("prune_dense", "prune_dense_td"):  # not retrained: evaluated at the end of training
                expected_start = 150
            assert metrics["start_step"] == expected_start, control


def test_killed_run_resumes_from_first_unfinished_unit(tiny_toy_args, tmp_path, monkeypatch):
    from multiticket.adapters.toy import ToyAdapter

    args = [*tiny_toy_args, "--levels", "3", "--set", "controls=[random_reinit]"]
    ref_out = tmp_path / "ref"
    assert main([*args, "--out", str(ref_out)]) == 0
    reference = _files(_run_dir(ref_out))

    calls = {"n": 0}
    original = ToyAdapter.train

    def dies_on_fourth(self, start, stop, hooks):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # stands in for a kill in the middle of a unit
        return original(self, start, stop, hooks)

    monkeypatch.setattr(ToyAdapter, "train", dies_on_fourth)
    assert main(args) == 130
    run = _run_dir(tmp_path / "runs")
    assert (run / "seed_0" / "random_reinit" / "level_1" / "DONE").is_file()
    assert not (run / "seed_0" / "ticket" / "level_2" / "DONE").exists()

    trained = []
    monkeypatch.setattr(ToyAdapter, "train", lambda self, s, e, h: (trained.append(1), original(self, s, e, h)))
    assert main(args) == 0
    assert len(trained) == 7 - 3  # dense, ticket 1, reinit 1 were not trained again
    resumed = _files(run)
    for name, content in reference.items():
        if name.endswith("metrics.json"):
            a, b = json.loads(resumed[name]), json.loads(content)
            a.pop("train_seconds"), b.pop("train_seconds")
            assert a == b, name
        elif name == "provenance.json":  # the command lines that made each run: their --out differs
            assert json.loads(resumed[name]).keys() == json.loads(content).keys()
        elif not name.endswith(("DONE", "summary.csv")):  # DONE checksums and summary hold timings
            assert resumed[name] == content, name
