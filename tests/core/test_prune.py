import pytest
import torch

from multiticket.core.mask import Mask
from multiticket.core.prune import (
    PruneSpec,
    planned_alive,
    planned_sparsity,
    prune,
    prune_count,
    random_mask_like,
)


def _dense(weights):
    return Mask({n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()})


def test_count_rule_rounds_half_up_and_prunes_at_least_one():
    assert prune_count(10, 10, 0.25) == 3  # 2.5 -> 3 (half up, not banker's)
    assert prune_count(10, 10, 0.24) == 2
    assert prune_count(2, 10, 0.2) == 1  # 0.4 rounds to 0, but at least one while any alive
    assert prune_count(0, 10, 0.2) == 0
    assert prune_count(3, 10, 0.5, "original") == 3  # capped at alive


def test_global_magnitude_picks_smallest_across_layers():
    w = {"a": torch.tensor([0.1, -5.0, 0.3, 4.0]), "b": torch.tensor([-0.2, 6.0, 0.05, 7.0])}
    new = prune(w, _dense(w), PruneSpec("global_magnitude", 0.5))
    # 8 weights, prune 4 smallest |w|: 0.05 (b2), 0.1 (a0), 0.2 (b0), 0.3 (a2)
    assert new["a"].tolist() == [False, True, False, True]
    assert new["b"].tolist() == [False, True, False, True]


def test_layerwise_magnitude_prunes_each_layer_at_its_rate():
    w = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([10.0, 20.0, 30.0, 40.0])}
    new = prune(w, _dense(w), PruneSpec("layerwise_magnitude", 0.5))
    assert new["a"].tolist() == [False, False, True, True]
    assert new["b"].tolist() == [False, False, True, True]
    glob = prune(w, _dense(w), PruneSpec("global_magnitude", 0.5))
    assert glob["a"].sum() == 0 and glob["b"].all()


def test_ties_broken_by_position_deterministically():
    w = {"a": torch.ones(3), "b": torch.ones(3)}
    new = prune(w, _dense(w), PruneSpec("global_magnitude", 0.5))
    assert new["a"].tolist() == [False, False, False] and new["b"].tolist() == [True, True, True]
    again = prune(w, _dense(w), PruneSpec("global_magnitude", 0.5))
    assert again == new
    neg = {"a": torch.tensor([-1.0, 1.0]), "b": torch.tensor([1.0, -1.0])}
    assert prune(neg, _dense(neg), PruneSpec("global_magnitude", 0.25))["a"].tolist() == [False, True]


def test_only_alive_entries_are_ranked():
    w = {"a": torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0])}
    mask = Mask({"a": torch.tensor([False, False, True, True, True])})
    new = prune(w, mask, PruneSpec("global_magnitude", 0.34))
    assert new["a"].tolist() == [False, False, False, True, True]


def test_rate_overrides_prune_matched_layers_at_their_own_rate():
    w = {"hidden": torch.arange(1.0, 11.0), "out": torch.arange(1.0, 11.0) / 100}
    spec = PruneSpec("global_magnitude", 0.4, overrides={"out": 0.2})
    new = prune(w, _dense(w), spec)
    assert int(new["hidden"].sum()) == 6 and int(new["out"].sum()) == 8


def test_planned_matches_achieved_over_many_levels():
    torch.manual_seed(0)
    w = {"a": torch.randn(37, 11), "b": torch.randn(13), "c": torch.randn(5, 3)}
    for spec in (PruneSpec("global_magnitude", 0.2), PruneSpec("layerwise_magnitude", 0.2),
                 PruneSpec("global_magnitude", 0.3, rate_of="original"),
                 PruneSpec("global_magnitude", 0.2, overrides={"c": 0.1})):
        mask = _dense(w)
        sizes = {n: t.numel() for n, t in w.items()}
        for level in range(1, 12):
            mask = prune(w, mask, spec)
            assert mask.num_alive == planned_alive(sizes, spec, level), (spec, level)


def test_planned_sparsity_is_lth_formula_up_to_rounding():
    sizes = {"a": 100_000}
    spec = PruneSpec("global_magnitude", 0.2)
    for level in (1, 5, 10, 20):
        assert planned_sparsity(sizes, spec, level) == pytest.approx(1 - 0.8**level, abs=1e-4)
    assert planned_sparsity(sizes, spec, 10) == pytest.approx(0.893, abs=1e-3)


def test_random_strategy_needs_generator_and_keeps_counts():
    w = {"a": torch.randn(100)}
    with pytest.raises(ValueError):
        prune(w, _dense(w), PruneSpec("random", 0.2))
    new = prune(w, _dense(w), PruneSpec("random", 0.2), torch.Generator().manual_seed(1))
    assert new.num_alive == 80


def test_random_mask_like_matches_counts():
    ref = Mask({"a": torch.rand(50, 4) > 0.7, "b": torch.rand(30) > 0.2})
    g = torch.Generator().manual_seed(0)
    per_layer = random_mask_like(ref, g, per_layer=True)
    assert per_layer.alive_counts() == ref.alive_counts()
    assert per_layer != ref
    glob = random_mask_like(ref, g, per_layer=False)
    assert glob.num_alive == ref.num_alive


def test_spec_validation():
    with pytest.raises(ValueError):
        PruneSpec("magic")
    with pytest.raises(ValueError):
        PruneSpec(rate=1.0)
