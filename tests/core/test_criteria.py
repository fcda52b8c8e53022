"""Mask criteria (Zhou et al. 2019, ``prune.criterion``): hand-computed masks on small tensors,
the exact counting rule for every criterion, the refusals, and a tiny end-to-end run of each."""

from __future__ import annotations

import re

import pytest
import torch

from multiticket.cli import main
from multiticket.config import load_task
from multiticket.core.criteria.base import ranks
from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, planned_alive, prune
from multiticket.core.registry import criteria
from multiticket.core.tensorfile import load_tensors
from multiticket.errors import UserError
from multiticket.paths import TASKS_DIR

NEW = ["small_final", "large_init", "large_init_large_final", "magnitude_increase", "movement"]
ALL = ["large_final", *NEW]

# flat order a00 a01 a10 a11 b0 b1 b2
FINAL = {"a": torch.tensor([[0.5, -0.1], [0.3, 0.8]]), "b": torch.tensor([-0.2, 0.9, 0.05])}
INIT = {"a": torch.tensor([[0.1, 0.4], [-0.6, 0.2]]), "b": torch.tensor([0.7, -0.3, 0.5])}
NAMES = ["a00", "a01", "a10", "a11", "b0", "b1", "b2"]


def _dense(weights):
    return Mask({n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()})


def _pruned(mask: Mask) -> list[str]:
    flat = torch.cat([mask["a"].reshape(-1), mask["b"]])
    return [n for n, alive in zip(NAMES, flat.tolist()) if not alive]


# global, rate 0.3 of 7 -> floor(2.1 + 0.5) = 2 pruned; the two lowest scores, by hand:
GLOBAL = {
    "large_final": ["a01", "b2"],  # |w_f| .1 and .05
    "small_final": ["a11", "b1"],  # the two largest |w_f|: .8 and .9
    "large_init": ["a00", "a11"],  # |w_i| .1 and .2
    "magnitude_increase": ["b0", "b2"],  # |w_f| - |w_i|: -.5 and -.45
    "movement": ["a00", "b2"],  # |w_f - w_i|: .4 and .45
    # ranks by |w_i|: 0 3 5 1 6 2 4; by |w_f|: 4 1 3 5 2 6 0; lower: 0 1 3 1 2 2 0
    "large_init_large_final": ["a00", "b2"],
}
# layerwise, rate 0.5: a loses floor(2.5) = 2 of 4, b loses floor(2.0) = 2 of 3
LAYERWISE = {
    "large_final": ["a01", "a10", "b0", "b2"],
    "small_final": ["a00", "a11", "b0", "b1"],
    "large_init": ["a00", "a11", "b1", "b2"],
    "magnitude_increase": ["a01", "a10", "b0", "b2"],  # a: .4 -.3 -.3 .6; b: -.5 .6 -.45
    "movement": ["a00", "a01", "b0", "b2"],  # a: .4 .5 .9 .6; b: .9 1.2 .45
    # a: ranks |w_i| 0 2 3 1, |w_f| 2 0 1 3 -> 0 0 1 1; b: |w_i| 2 0 1, |w_f| 1 2 0 -> 1 0 0
    "large_init_large_final": ["a00", "a01", "b1", "b2"],
}


@pytest.mark.parametrize("name", ALL)
def test_global_masks_match_hand_computed(name):
    mask = prune(FINAL, _dense(FINAL), PruneSpec("global_magnitude", 0.3, criterion=name), init=INIT)
    assert _pruned(mask) == GLOBAL[name]


@pytest.mark.parametrize("name", ALL)
def test_layerwise_masks_match_hand_computed(name):
    mask = prune(FINAL, _dense(FINAL), PruneSpec("layerwise_magnitude", 0.5, criterion=name), init=INIT)
    assert _pruned(mask) == LAYERWISE[name]


def test_ranks_break_ties_by_position():
    assert ranks(torch.tensor([0.3, 0.1, 0.3, 0.2])).tolist() == [2, 0, 3, 1]


def test_large_init_large_final_keeps_an_intersection_of_top_sets():
    """The kept entries are exactly {rank_i > t} & {rank_f > t} for some t (the paper's intersection)."""
    gen = torch.Generator().manual_seed(0)
    final, init = {"w": torch.randn(200, generator=gen)}, {"w": torch.randn(200, generator=gen)}
    mask = prune(final, _dense(final), PruneSpec("global_magnitude", 0.4, criterion="large_init_large_final"),
                 init=init)
    r_i, r_f = ranks(init["w"].abs()), ranks(final["w"].abs())
    kept = mask["w"]
    t = int(torch.minimum(r_i, r_f)[kept].min())  # the lowest kept min-rank
    both_above = (r_i > t) & (r_f > t)
    assert bool((both_above <= kept).all())  # everything strictly above the threshold is kept
    assert int(kept.sum()) - int(both_above.sum()) <= int((torch.minimum(r_i, r_f) == t).sum())


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("strategy", ["global_magnitude", "layerwise_magnitude"])
def test_counting_rule_holds_for_every_criterion(name, strategy):
    gen = torch.Generator().manual_seed(1)
    shapes = {"x": (7, 5), "y": (13,), "z": (3, 3, 2)}
    init = {n: torch.randn(s, generator=gen) for n, s in shapes.items()}
    spec = PruneSpec(strategy, 0.3, "remaining", {"z": 0.5}, criterion=name)
    sizes = {n: init[n].numel() for n in shapes}
    mask = _dense(init)
    for level in range(1, 6):
        final = {n: torch.randn(s, generator=gen) * mask[n] for n, s in shapes.items()}
        new = prune(final, mask, spec, init=init)
        assert new.num_alive == planned_alive(sizes, spec, level)
        assert all(bool((new[n] <= mask[n]).all()) for n in shapes)  # only live entries are pruned
        mask = new


def test_an_init_criterion_without_init_weights_is_refused_in_one_line():
    with pytest.raises(UserError, match=r"^prune.criterion: 'movement' needs the rewind-point weights"):
        prune(FINAL, _dense(FINAL), PruneSpec("global_magnitude", 0.3, criterion="movement"))
    prune(FINAL, _dense(FINAL), PruneSpec("global_magnitude", 0.3))  # large_final needs none


def test_registry_holds_the_builtin_criteria():
    assert set(ALL) <= set(criteria)
    assert [n for n in ALL if criteria[n].needs_init] == ["large_init", "large_init_large_final",
                                                         "magnitude_increase", "movement"]


TOY = TASKS_DIR / "toy-mlp.yaml"


def test_the_default_criterion_keeps_run_names_and_others_change_them():
    base = load_task(TOY).run_name
    assert load_task(TOY, ["prune.criterion=large_final"]).run_name == base
    assert "criterion" not in load_task(TOY).resolved["prune"]
    assert load_task(TOY, ["prune.criterion=movement"]).run_name != base


@pytest.mark.parametrize(("sets", "message"), [
    (["prune.criterion=movment"], "prune.criterion: unknown criterion 'movment' (did you mean 'movement'?"),
    (["prune.strategy=random", "prune.criterion=movement"], "prune.criterion: the random strategy ranks at random"),
    (["prune.criterion=large_init", "controls=[early_bird]", "rewind.step=10"],
     "prune.criterion: 'large_init' reads the rewind-point weights, which the early-bird search"),
    (["prune.criterion=movement", "controls=[prune_dense_td]", "targeted_dropout={gamma: 0.5}"],
     "prune.criterion: 'movement' reads the rewind-point weights, which the dense_td unit"),
])
def test_criteria_that_cannot_apply_are_refused(sets, message):
    """Each error names the --set that gave prune.criterion (multiticket.config.collect)."""
    criterion = next(s for s in sets if s.startswith("prune.criterion="))
    with pytest.raises(UserError, match="^" + re.escape(f"--set {criterion}: {message}")):
        load_task(TOY, sets)


def test_early_bird_with_an_init_criterion_is_accepted_when_k_is_zero():
    """At k = 0 the early-bird search has its rewind point (step 0) before any mask check."""
    task = load_task(TOY, ["prune.criterion=large_init", "controls=[early_bird]", "rewind.step=0"])
    assert task.resolved["prune"]["criterion"] == "large_init"
    assert task.resolved["controls"] == ["early_bird"]
    assert task.resolved["rewind"]["step"] == 0


@pytest.mark.parametrize("name", NEW)
def test_each_criterion_runs_end_to_end(tmp_path, name):
    args = ["run", "toy-mlp", "--out", str(tmp_path), "--quiet", "--levels", "3", "--set", f"prune.criterion={name}",
            "--set", "train.steps=40", "--set", "toy.n_train=128", "--set", "toy.n_test=64",
            "--set", "toy.hidden=[16,8]", "--set", "controls=[one_shot,random_reinit]"]
    assert main(args) == 0
    (run,) = list(tmp_path.iterdir())
    assert (run / "seed_0" / "ticket" / "level_3" / "DONE").is_file()
    assert (run / "seed_0" / "one_shot" / "level_3" / "DONE").is_file()


def _movement_keeps_the_largest(mask: dict, final: dict, reference: dict) -> bool:
    """True when every kept weight moved at least as far from ``reference`` as every pruned one
    (global ranking of |w_final - w_ref| over all masked tensors: the movement criterion's rule)."""
    kept = torch.cat([(final[n] - reference[n]).abs()[mask[n].bool()] for n in mask])
    pruned = torch.cat([(final[n] - reference[n]).abs()[~mask[n].bool()] for n in mask])
    return bool(pruned.numel() > 0 and kept.min() >= pruned.max())


def test_init_criteria_rank_each_chain_against_its_own_rewind_point(tmp_path):
    """With k = 10, rewind_init ranks |w_f - w_0| (its rewind point is step 0) while the ticket,
    one_shot and prune_dense rank |w_f - w_10|; recomputed here from the saved weights."""
    args = ["run", "toy-mlp", "--out", str(tmp_path), "--quiet", "--levels", "1", "--set", "prune.criterion=movement",
            "--set", "rewind.step=10", "--set", "train.steps=60", "--set", "toy.n_train=128", "--set", "toy.n_test=64",
            "--set", "toy.hidden=[16,8]", "--set", "controls=[rewind_init,one_shot,prune_dense]", "--workers", "1"]
    assert main(args) == 0
    (run,) = list(tmp_path.iterdir())
    seed = run / "seed_0"
    dense = load_tensors(seed / "ticket" / "level_0" / "final.safetensors")
    step = {k: load_tensors(seed / "rewind" / f"step_{k}" / "weights.safetensors") for k in (0, 10)}
    for control, k in (("rewind_init", 0), ("ticket", 10), ("one_shot", 10), ("prune_dense", 10)):
        mask = load_tensors(seed / control / "level_1" / "mask.safetensors")
        assert _movement_keeps_the_largest(mask, dense, step[k]), control
        assert not _movement_keeps_the_largest(mask, dense, step[10 - k]), control


def test_an_init_criterion_runs_in_the_early_bird_chain_when_k_is_zero(tmp_path):
    args = ["run", "toy-mlp", "--out", str(tmp_path), "--quiet", "--levels", "2", "--set", "prune.criterion=movement",
            "--set", "rewind.step=0", "--set", "train.steps=60", "--set", "toy.n_train=128", "--set", "toy.n_test=64",
            "--set", "toy.hidden=[16,8]", "--set", "early_bird.interval=5", "--set", "controls=[early_bird]",
            "--workers", "1"]
    assert main(args) == 0
    (run,) = list(tmp_path.iterdir())
    assert (run / "seed_0" / "early_bird" / "level_2" / "DONE").is_file()
