"""Structured pruning (``prune.structure: neurons``): neuron counts exact, rows all-or-nothing,
output layers kept whole, random controls drawing neurons, and a toy run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from multiticket.cli import main as cli_main
from multiticket.core import structure
from multiticket.core.criteria.structured import row_norms
from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, alive_after, planned_alive, prune, prune_at_init, unit_sizes
from multiticket.errors import UserError

SHAPES = {"a.weight": (12, 5), "a.bias": (12,), "b.weight": (9, 12), "c.weight": (4, 3, 2, 2), "out.weight": (3, 9)}


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}


def _dense() -> Mask:
    return Mask({n: torch.ones(s, dtype=torch.bool) for n, s in SHAPES.items()})


def _spec(**kw) -> PruneSpec:
    keep = structure.kept_whole(list(SHAPES), SHAPES, ["out"], "neurons")
    return PruneSpec(structure="neurons", keep=keep, **kw)


def _rows(mask: Mask) -> dict[str, int]:
    return structure.alive_rows(mask, ("out.weight",))


@pytest.mark.parametrize("kw", [{}, {"criterion": "l1_norm"}, {"criterion": "l2_norm"}, {"strategy": "random"},
                                {"strategy": "layerwise_magnitude"}, {"rate_of": "original", "rate": 0.15},
                                {"overrides": {"a.weight": 0.5}}])
def test_neuron_counts_follow_the_counting_rule_and_rows_are_whole(kw):
    spec = _spec(**kw)
    sizes = unit_sizes(SHAPES, spec)
    assert sizes == {"a.weight": 12, "b.weight": 9, "c.weight": 4}
    mask, w = _dense(), _weights()
    for level in range(1, 6):
        mask = prune(w, mask, spec, torch.Generator().manual_seed(level))
        assert sum(_rows(mask).values()) == planned_alive(sizes, spec, level)
        assert structure.partial_rows(mask, spec.keep) is None
        assert bool(mask["out.weight"].all())  # the output layer keeps every output
        assert torch.equal(mask["a.bias"], mask["a.weight"].any(1))  # the bias entry goes with its row
    if spec.groups(list(sizes)) and spec.allocator_name == "layerwise" and not spec.overrides:
        for n, size in sizes.items():  # each layer by the rule alone
            assert _rows(mask)[n] == alive_after(size, spec.rate, spec.rate_of, 5)


def test_a_level_removes_the_rounded_count_of_neurons_and_at_least_one():
    spec = _spec(rate=0.2)
    mask = prune(_weights(), _dense(), spec)
    assert sum(_rows(mask).values()) == 25 - 5  # floor(25 * 0.2 + 0.5) = 5
    tiny = {"h.weight": (2, 3), "o.weight": (1, 2)}
    spec = PruneSpec(rate=0.01, structure="neurons", keep=("o.weight",))
    one = prune({n: torch.ones(s) for n, s in tiny.items()}, Mask({n: torch.ones(s, dtype=torch.bool)
                                                                  for n, s in tiny.items()}), spec)
    assert structure.alive_rows(one, spec.keep) == {"h.weight": 1}


def test_neurons_rank_by_row_score_ties_by_position():
    w = {"h.weight": torch.tensor([[1.0, 1.0], [3.0, 0.0], [0.5, 0.5], [0.0, 2.0]]), "o.weight": torch.ones(1, 4)}
    mask = Mask({n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()})
    keep = ("o.weight",)
    l1 = prune(w, mask, PruneSpec(rate=0.5, structure="neurons", keep=keep, criterion="l1_norm"))
    assert l1["h.weight"].any(1).tolist() == [False, True, False, True]  # norms 2, 3, 1, 2: the first 2 goes
    l2 = prune(w, mask, PruneSpec(rate=0.5, structure="neurons", keep=keep, criterion="l2_norm"))
    assert l2["h.weight"].any(1).tolist() == [False, True, False, True]  # 1.41, 3, 0.71, 2
    mean = prune(w, mask, PruneSpec(rate=0.25, structure="neurons", keep=keep))  # large_final: mean |w|
    assert mean["h.weight"].any(1).tolist() == [True, True, False, True]
    assert torch.equal(row_norms(w["h.weight"], 1)[:, 0], torch.tensor([2.0, 3.0, 1.0, 2.0], dtype=torch.float64))


def test_a_global_ranking_keeps_the_last_neuron_of_each_layer_while_it_can():
    w = {"a.weight": torch.full((4, 2), 0.01), "b.weight": torch.ones(4, 4), "o.weight": torch.ones(1, 4)}
    mask = Mask({n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()})
    spec = PruneSpec(rate=0.5, structure="neurons", keep=("o.weight",))
    out = prune(w, mask, spec)
    assert structure.alive_rows(out, spec.keep) == {"a.weight": 1, "b.weight": 3}
    out = prune(w, out, spec)
    assert structure.alive_rows(out, spec.keep) == {"a.weight": 1, "b.weight": 1}


@pytest.mark.parametrize("per_layer", [True, False])
def test_random_controls_draw_neurons_at_the_tickets_counts(per_layer):
    spec = _spec()
    ticket = prune(_weights(), _dense(), spec)
    ticket = prune(_weights(1), ticket, spec)
    drawn = Mask(structure.random_like(ticket, torch.Generator().manual_seed(3), per_layer, spec.keep))
    assert structure.partial_rows(drawn, spec.keep) is None
    assert torch.equal(drawn["out.weight"], ticket["out.weight"])
    assert torch.equal(drawn["a.bias"], drawn["a.weight"].any(1))
    if per_layer:
        assert _rows(drawn) == _rows(ticket)
    assert sum(_rows(drawn).values()) == sum(_rows(ticket).values())
    assert drawn != ticket
    again = Mask(structure.random_like(ticket, torch.Generator().manual_seed(3), per_layer, spec.keep))
    assert again == drawn


def test_pruning_at_init_reaches_the_levels_neuron_count():
    spec = _spec(criterion="l1_norm")
    mask = prune_at_init(_weights(), _dense(), spec, 3, rounds=4)
    assert sum(_rows(mask).values()) == planned_alive(unit_sizes(SHAPES, spec), spec, 3)
    assert structure.partial_rows(mask, spec.keep) is None


def test_what_a_structure_cannot_cover_is_refused_in_one_line():
    with pytest.raises(UserError, match=r"^prune.structure: neurons covers Linear and Conv weights; 'lstm.weight_hh_l0'"):
        structure.kept_whole(["lstm.weight_hh_l0"], {"lstm.weight_hh_l0": (8, 2)}, [], "neurons")
    with pytest.raises(UserError, match=r"^prune.structure: neurons leaves nothing to prune"):
        structure.kept_whole(["out.weight"], {"out.weight": (2, 3)}, ["out"], "neurons")
    with pytest.raises(ValueError, match="splits a budget of weights"):
        PruneSpec(structure="neurons", allocator="erk")
    assert structure.kept_whole(["x.weight"], {"x.weight": (2, 3)}, ["x"], "weights") == ()


def test_the_structure_key_is_validated_and_erk_refused(tiny_toy_args, tmp_path, capsys):
    assert cli_main([*tiny_toy_args, "--set", "prune.structure=rows"]) == 2
    assert "prune.structure" in capsys.readouterr().err
    assert cli_main([*tiny_toy_args, "--set", "prune.structure=neurons", "--set", "prune.allocator=erk"]) == 2
    err = capsys.readouterr().err
    assert "prune.allocator: 'erk' splits a budget of weights by layer shape" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_toy_run_prunes_neurons_with_every_control(tiny_toy_args, tmp_path, capsys):
    controls = "[random_reinit,random_mask,random_mask_global,random_prune,permuted_mask,one_shot,early_bird]"
    args = [*tiny_toy_args, "--levels", "2", "--set", "prune.structure=neurons", "--set", f"controls={controls}"]
    assert cli_main(args) == 0
    (run_dir,) = (tmp_path / "runs").glob("toy-mlp-*")
    planned = {1: 32 + 16 - 10, 2: 38 - 8}  # neurons of the hidden layers 0 (32) and 2 (16); 4 is the output
    for unit_dir in sorted(run_dir.glob("seed_0/*/level_[12]")):
        level = int(unit_dir.name.split("_")[1])
        mask = Mask.load(unit_dir / "mask.safetensors")
        assert structure.partial_rows(mask, ("4.weight",)) is None
        assert sum(structure.alive_rows(mask, ("4.weight",)).values()) == planned[level], unit_dir
        assert bool(mask["4.weight"].all())
        record = json.loads((unit_dir / "metrics.json").read_text())
        assert record["planned_sparsity"] == pytest.approx(record["sparsity"])
    ticket = Mask.load(run_dir / "seed_0/ticket/level_2/mask.safetensors")
    drawn = Mask.load(run_dir / "seed_0/random_mask/level_2/mask.safetensors")
    assert structure.alive_rows(drawn, ("4.weight",)) == structure.alive_rows(ticket, ("4.weight",)) and drawn != ticket
    weights = json.loads((run_dir / "seed_0/ticket/level_2/metrics.json").read_text())
    assert 0 < weights["sparsity"] < 1
    assert "structure" in (run_dir / "config.yaml").read_text()
    assert cli_main(["export", str(run_dir), "--seed", "0", "--level", "2", "--out", str(tmp_path / "x")]) == 2
    assert "export: the 'toy' domain's adapter has no export_model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_default_structure_renames_no_run(tiny_toy_args, tmp_path):
    from multiticket.api import resolve_task

    plain = resolve_task("toy-mlp")
    named = resolve_task("toy-mlp", ["prune.structure=weights"])
    neurons = resolve_task("toy-mlp", ["prune.structure=neurons"])
    assert plain.run_name == named.run_name != neurons.run_name
    assert Path(plain.run_name).name.startswith("toy-mlp-")
