"""``prune.structure: heads`` in the core (torch only): a layout of unit families (two layers of
attention heads and feed-forward neurons, as the HF adapter describes a BERT encoder), the counting
rule per kind, heads scored by their mean score, the global ranking's last-head guard, random
controls drawing whole heads, and one-line refusals."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from multiticket.core import structure
from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, alive_after, planned_alive, prune, prune_at_init, unit_sizes
from multiticket.core.structure_units import Family, Layout, Member, layout
from multiticket.errors import UserError

HIDDEN, HEADS, SIZE, FFN = 8, 4, 2, 6


def _layer(i: int) -> tuple[dict[str, tuple[int, ...]], list[Family]]:
    p = f"l{i}."
    shapes = {f"{p}q.weight": (HIDDEN, HIDDEN), f"{p}q.bias": (HIDDEN,), f"{p}k.weight": (HIDDEN, HIDDEN),
              f"{p}v.weight": (HIDDEN, HIDDEN), f"{p}o.weight": (HIDDEN, HIDDEN), f"{p}o.bias": (HIDDEN,),
              f"{p}up.weight": (FFN, HIDDEN), f"{p}up.bias": (FFN,), f"{p}down.weight": (HIDDEN, FFN)}
    head = Family("head", HEADS, (Member(f"{p}q.weight", 0, SIZE), Member(f"{p}q.bias", 0, SIZE),
                                  Member(f"{p}k.weight", 0, SIZE), Member(f"{p}v.weight", 0, SIZE),
                                  Member(f"{p}o.weight", 1, SIZE)))
    ffn = Family("ffn", FFN, (Member(f"{p}up.weight", 0, 1), Member(f"{p}up.bias", 0, 1),
                              Member(f"{p}down.weight", 1, 1)))
    return shapes, [head, ffn]


SHAPES = {**_layer(0)[0], **_layer(1)[0], "cls.weight": (2, HIDDEN)}
FAMILIES = _layer(0)[1] + _layer(1)[1]


class FakeAdapter:
    domain = "nlp"

    def structure_units(self, name: str) -> list[Family]:
        return FAMILIES if name == "heads" else []


def _spec(names: list[str] | None = None, **kw: Any) -> PruneSpec:
    names = names or list(SHAPES)
    keep, units = structure.resolve("heads", FakeAdapter(), names, {n: SHAPES[n] for n in names})
    return PruneSpec(structure="heads", keep=keep, layout=units, **kw)


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}


def _dense(names: list[str] | None = None) -> Mask:
    return Mask({n: torch.ones(SHAPES[n], dtype=torch.bool) for n in names or SHAPES})


def _heads(mask: Mask, layer: int) -> list[bool]:
    """Which heads of a layer live, read from the query rows (the other members must agree)."""
    return mask[f"l{layer}.q.weight"].reshape(HEADS, -1).any(1).tolist()


def test_the_scope_resolves_to_families_and_the_rest_is_kept_whole():
    spec = _spec()
    assert spec.keep == ("l0.o.bias", "l1.o.bias", "cls.weight")
    assert unit_sizes(SHAPES, spec) == {"l0.q.weight": 4, "l1.q.weight": 4, "l0.up.weight": 6, "l1.up.weight": 6}
    assert [g for g, _ in spec.groups(list(unit_sizes(SHAPES, spec)))] == [["l0.q.weight", "l1.q.weight"],
                                                                          ["l0.up.weight", "l1.up.weight"]]
    layerwise = _spec(allocator="layerwise")
    assert len(layerwise.groups(list(unit_sizes(SHAPES, spec)))) == 4


@pytest.mark.parametrize("kw", [{}, {"strategy": "random"}, {"allocator": "layerwise"},
                                {"rate_of": "original", "rate": 0.3}, {"overrides": {"l0.q.weight": 0.5}},
                                {"criterion": "l1_norm"}])
def test_units_follow_the_counting_rule_per_kind_and_stay_whole(kw):
    spec = _spec(**kw)
    sizes = unit_sizes(SHAPES, spec)
    mask, w = _dense(), _weights()
    for level in range(1, 4):
        mask = prune(w, mask, spec, torch.Generator().manual_seed(level))
        assert sum(spec.layout.alive(mask).values()) == planned_alive(sizes, spec, level)
        assert spec.layout.partial(mask) is None
        assert bool(mask["cls.weight"].all()) and bool(mask["l0.o.bias"].all())
        for i in (0, 1):  # a head's rows, its bias and its output columns go together
            heads = torch.tensor(_heads(mask, i))
            assert torch.equal(mask[f"l{i}.o.weight"].reshape(HIDDEN, HEADS, SIZE).any(2).any(0), heads)
            assert torch.equal(mask[f"l{i}.q.bias"].reshape(HEADS, SIZE).all(1), heads)
            assert torch.equal(mask[f"l{i}.down.weight"].any(0), mask[f"l{i}.up.weight"].any(1))
    if not kw:  # global, rate 0.2 of the remaining, per kind: heads 8 -> 6 -> 5 -> 4, neurons 12 -> 10 -> 8 -> 6
        alive = spec.layout.alive(mask)
        assert alive["l0.q.weight"] + alive["l1.q.weight"] == alive_after(8, 0.2, "remaining", 3) == 4
        assert alive["l0.up.weight"] + alive["l1.up.weight"] == alive_after(12, 0.2, "remaining", 3) == 6


def test_a_head_scores_by_the_mean_over_its_live_entries_ties_by_position():
    w = {n: torch.ones(s) for n, s in SHAPES.items()}
    for name, dim in (("l0.q.weight", 0), ("l0.o.weight", 1)):
        w[name].movedim(dim, 0)[2 * SIZE:3 * SIZE] = 0.1  # head 2 of layer 0: small query rows and output columns
    mask = prune(w, _dense(), _spec(rate=0.125, allocator="layerwise"))
    assert _heads(mask, 0) == [True, True, False, True]
    assert _heads(mask, 1) == [False, True, True, True]  # all equal: the first goes


def test_a_global_ranking_keeps_each_layers_last_head_while_it_can():
    w = _weights()
    for n in ("l0.q.weight", "l0.k.weight", "l0.v.weight", "l0.o.weight"):
        w[n] = w[n] * 1e-3  # layer 0's heads all rank below layer 1's
    spec = _spec(rate=0.7)
    mask = prune(w, _dense(), spec)  # 6 of 8 heads go: layer 0 keeps its last, layer 1 loses 3
    assert sum(_heads(mask, 0)) == 1 and sum(_heads(mask, 1)) == 1


@pytest.mark.parametrize("per_layer", [True, False])
def test_random_controls_draw_whole_heads_at_the_tickets_counts(per_layer):
    spec = _spec()
    ticket = prune(_weights(), prune(_weights(), _dense(), spec), spec)
    drawn = Mask(spec.layout.random_like(ticket, torch.Generator().manual_seed(3), per_layer))
    assert spec.layout.partial(drawn) is None and drawn != ticket
    assert bool(drawn["cls.weight"].all()) and drawn.num_alive == ticket.num_alive
    a, b = spec.layout.alive(drawn), spec.layout.alive(ticket)
    if per_layer:
        assert a == b
    else:  # the count of each kind over its layers
        assert a["l0.q.weight"] + a["l1.q.weight"] == b["l0.q.weight"] + b["l1.q.weight"]
        assert a["l0.up.weight"] + a["l1.up.weight"] == b["l0.up.weight"] + b["l1.up.weight"]


def test_pruning_at_init_reaches_the_levels_unit_count():
    spec = _spec()
    mask = prune_at_init(_weights(), _dense(), spec, 3, torch.Generator().manual_seed(0))
    assert sum(spec.layout.alive(mask).values()) == planned_alive(unit_sizes(SHAPES, spec), spec, 3)
    assert spec.layout.partial(mask) is None


def test_a_family_out_of_the_scope_is_not_pruned_and_one_cut_in_two_is_refused():
    no_ffn = [n for n in SHAPES if ".up." not in n and ".down." not in n]
    spec = _spec(no_ffn)
    assert list(unit_sizes({n: SHAPES[n] for n in no_ffn}, spec)) == ["l0.q.weight", "l1.q.weight"]
    cut = [n for n in SHAPES if n != "l1.o.weight"]
    with pytest.raises(UserError, match=r"^prune.structure: heads prunes 'l1.q.weight' together with 'l1.o.weight'"):
        _spec(cut)
    with pytest.raises(UserError, match=r"^prune.structure: heads finds no unit in the scope"):
        _spec(["cls.weight"])


def test_a_model_without_heads_and_a_spec_without_layout_are_refused():
    class Plain:
        domain = "toy"

    with pytest.raises(UserError, match=r"^prune.structure: heads needs attention heads .* 'toy' finds none"):
        structure.resolve("heads", Plain(), ["a.weight"], {"a.weight": (2, 2)})
    with pytest.raises(UserError, match=r"^prune.structure: unknown 'rows'"):
        structure.resolve("rows", Plain(), [], {})
    with pytest.raises(ValueError, match="needs the adapter's unit layout"):
        PruneSpec(structure="heads")
    assert set(structure.STRUCTURES) == {"weights", "neurons", "heads", "units"}


def test_the_layout_refuses_a_family_too_small_for_its_units():
    bad = Family("head", 5, (Member("l0.q.weight", 0, SIZE),))
    with pytest.raises(ValueError, match="too small"):
        layout([bad], ["l0.q.weight"], SHAPES, "heads")
    assert isinstance(_spec().layout, Layout)


def test_a_head_pruned_by_its_units_changes_nothing_when_cut_out():
    """The exactness the compact export relies on: with a head's output columns pruned, attention
    with and without that head gives the same output, whatever its (unpruned) biases."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, HIDDEN, generator=g)
    w = {n: torch.randn(HIDDEN, HIDDEN, generator=g) for n in "qkvo"}
    mask = prune(_weights(), _dense(), _spec(rate=0.5, allocator="layerwise"))
    heads = torch.tensor(_heads(mask, 0))

    def attend(keep: torch.Tensor) -> torch.Tensor:
        rows = keep.repeat_interleave(SIZE)
        q, k, v = ((x @ w[n][rows].T + 0.3).reshape(3, 5, -1, SIZE).transpose(1, 2) for n in "qkv")
        ctx = torch.softmax(q @ k.transpose(2, 3) / SIZE ** 0.5, -1) @ v
        o = w["o"][:, rows] * mask["l0.o.weight"][:, rows]
        return ctx.transpose(1, 2).reshape(3, 5, -1) @ o.T

    assert torch.allclose(attend(torch.ones(HEADS, dtype=torch.bool)), attend(heads), atol=1e-6)
