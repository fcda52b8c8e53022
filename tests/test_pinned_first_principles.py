"""The independent check beside the pinned toy run (tests/pinned/toy_controls.json): what the pin
holds is recomputed here from the run's own files by first principles, not by multiticket's code:
pruned weights are zero, each control's mask is what its definition says (magnitude ranking, the
ticket's mask, the ticket's per-layer or total count), and every recorded accuracy is what the
saved weights score on the toy test set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from multiticket.adapters.toy import ToySection, make_dataset, make_mlp
from multiticket.core.tensorfile import load_tensors
from tests.test_pinned_runs import toy_runs  # noqa: F401 - the shared module-scoped run

SAME_MASK_AS_TICKET = ("random_reinit", "permuted_init")
PER_LAYER_COUNTS = ("random_mask", "permuted_mask")
FROM_DENSE = ("one_shot", "prune_dense")


def _units(run: Path, control: str) -> list[Path]:
    return sorted((run / "seed_0" / control).glob("level_*"), key=lambda p: int(p.name.split("_")[1]))


def _masks(unit: Path) -> dict[str, torch.Tensor]:
    return {k: v.bool() for k, v in load_tensors(unit / "mask.safetensors").items()}


def _largest_kept(mask: dict[str, torch.Tensor], weights: dict[str, torch.Tensor],
                  alive: dict[str, torch.Tensor] | None = None) -> bool:
    """Every kept weight is at least as large in magnitude as every weight pruned among ``alive``."""
    alive = alive or {n: torch.ones_like(m) for n, m in mask.items()}
    kept = torch.cat([weights[n].abs()[mask[n]] for n in mask])
    cut = torch.cat([weights[n].abs()[alive[n] & ~mask[n]] for n in mask])
    return cut.numel() > 0 and bool(kept.min() >= cut.max())


@pytest.mark.parametrize("tag", ["controls", "td", "transfer"])
def test_pruned_weights_are_zero_and_accuracy_is_what_the_weights_score(toy_runs, tag):  # noqa: F811
    run = toy_runs[tag]
    section = ToySection(**yaml.safe_load((run / "config.yaml").read_text())["toy"])
    _, _, x_test, y_test = make_dataset(section)
    checked = 0
    for metrics in sorted(run.glob("seed_*/*/level_*/metrics.json")):
        unit = metrics.parent
        final = load_tensors(unit / "final.safetensors")
        if (unit / "mask.safetensors").exists():
            for name, keep in _masks(unit).items():
                assert torch.all(final[name][~keep] == 0), f"{unit}: {name}"
        model = make_mlp(section.n_features, section.hidden, section.n_classes)
        model.load_state_dict(final)
        with torch.no_grad():
            accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
        recorded = yaml.safe_load(metrics.read_text())["metrics"]["accuracy"]
        assert accuracy == pytest.approx(recorded, abs=1e-6), str(unit)
        checked += 1
    assert checked >= 3


def test_each_control_mask_follows_its_definition(toy_runs):  # noqa: F811
    run = toy_runs["controls"]
    dense = load_tensors(_units(run, "ticket")[0] / "final.safetensors")
    previous: dict[str, torch.Tensor] | None = None
    for unit in _units(run, "ticket")[1:]:
        level = unit.name
        mask = _masks(unit)
        before = load_tensors(unit.parent / f"level_{int(level.split('_')[1]) - 1}" / "final.safetensors")
        assert _largest_kept(mask, before, previous), f"ticket {level}: not the largest of the previous level"
        counts = {n: int(m.sum()) for n, m in mask.items()}
        for control in SAME_MASK_AS_TICKET:
            other = _masks(run / "seed_0" / control / level)
            assert all(torch.equal(other[n], mask[n]) for n in mask), f"{control} {level}"
        for control in PER_LAYER_COUNTS:
            other = _masks(run / "seed_0" / control / level)
            assert {n: int(m.sum()) for n, m in other.items()} == counts, f"{control} {level}"
            assert any(not torch.equal(other[n], mask[n]) for n in mask), f"{control} {level} is the ticket's"
        glob_mask = _masks(run / "seed_0" / "random_mask_global" / level)
        assert sum(int(m.sum()) for m in glob_mask.values()) == sum(counts.values())
        for control in FROM_DENSE:
            other = _masks(run / "seed_0" / control / level)
            assert sum(int(m.sum()) for m in other.values()) == sum(counts.values()), f"{control} {level}"
            assert _largest_kept(other, dense), f"{control} {level}: not the largest dense weights"
        previous = mask
