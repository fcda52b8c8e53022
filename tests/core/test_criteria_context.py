"""Context criteria (SNIP, GraSP, SynFlow, LAMP) and budget allocators (global, layerwise, ERK):
scores of a hand-computed two-layer linear network, checked against the papers' definitions;
ERK and LAMP budgets against hand-computed layer counts; the element-wise form kept for plugins."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from torch import nn

from multiticket.core.adapter import DomainAdapter
from multiticket.core.criteria.allocators import Allocator, Budget, erk_keep
from multiticket.core.criteria.base import Criterion, ScoreContext
from multiticket.core.criteria.lamp import lamp_scores
from multiticket.core.criteria.probe import ModelProbe, check_scoring
from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, planned_alive, prune, prune_at_init, schedule
from multiticket.core.registry import allocators, criteria
from multiticket.errors import UserError

# f(x) = W2 W1 x, L = ½‖f(x) − y‖², one sample x = (1, 1), y = (0, 0)
W1 = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
W2 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
X, Y = torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 0.0]])
NAMES = ["0.weight", "1.weight"]
# h = W1 x = (3, −1), f = W2 h = (3, 2) = r (the residual), L = 6.5
# g_W2 = r hᵀ, g_W1 = (W2ᵀ r) xᵀ with W2ᵀ r = (5, 2)
G = {"0.weight": [[5.0, 5.0], [2.0, 2.0]], "1.weight": [[9.0, -3.0], [6.0, -2.0]]}
# Hg = d/dt ∇L(θ + t g) at 0: h' = G1 x = (10, 4); r' = W2 h' + G2 h = (10, 14) + (30, 20) = (40, 34)
# d g_W2 = r' hᵀ + r h'ᵀ = [[120, −40], [102, −34]] + [[30, 12], [20, 8]]
# d g_W1 = (G2ᵀ r + W2ᵀ r') xᵀ = ((39, −13) + (74, 34)) xᵀ
HG = {"0.weight": [[113.0, 113.0], [21.0, 21.0]], "1.weight": [[150.0, -28.0], [122.0, -26.0]]}
# SynFlow, R = 1ᵀ|W2||W1|1 = 7: dR/d|W2|_ij = (|W1|1)_j = (3, 1); dR/d|W1|_jk = (1ᵀ|W2|)_j = (2, 1)
SYNFLOW = {"0.weight": [[2.0, 4.0], [0.0, 1.0]], "1.weight": [[3.0, 0.0], [3.0, 1.0]]}


def _net() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(W1)
        net[1].weight.copy_(W2)
    return net


def _probe(net: nn.Module) -> ModelProbe:
    return ModelProbe(net, lambda b: 0.5 * ((net(b[0]) - b[1]) ** 2).sum(), lambda: [(X, Y)],
                      lambda: net(torch.ones(1, 2)))


def _weights(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _dense() -> Mask:
    return Mask({n: torch.ones(2, 2, dtype=torch.bool) for n in NAMES})


def _scores(name: str, mask: Mask | None = None, net: nn.Module | None = None) -> dict[str, torch.Tensor]:
    net = net or _net()
    ctx = ScoreContext(_weights(net), mask or _dense(), _weights(net), _probe(net), name)
    fn = criteria[name].tensor_score
    assert fn is not None
    return fn(ctx, NAMES)


def _as_list(scores: dict[str, torch.Tensor]) -> dict[str, list]:
    return {n: scores[n].tolist() for n in NAMES}


def test_the_probe_gradients_match_the_hand_computed_ones():
    net = _net()
    probe = _probe(net)
    g = probe.loss_gradient(_weights(net), _dense(), probe.batches())
    assert _as_list(g) == G
    assert _as_list(probe.hessian_gradient(_weights(net), _dense(), probe.batches(), g)) == HG


def test_snip_scores_are_the_connection_sensitivity():
    """Lee et al. 2019: |dL/dc| at c = 1 for gates c on the connections, i.e. |g ⊙ w|."""
    assert _as_list(_scores("snip")) == {"0.weight": [[5.0, 10.0], [0.0, 2.0]], "1.weight": [[9.0, 0.0], [6.0, 2.0]]}
    gates = [torch.ones(2, 2, requires_grad=True) for _ in NAMES]  # the paper's definition, by autograd
    loss = 0.5 * ((((W2 * gates[1]) @ (W1 * gates[0]) @ X.T).T - Y) ** 2).sum()
    by_gates = torch.autograd.grad(loss, gates)
    for n, c in zip(NAMES, by_gates):
        assert torch.equal(_scores("snip")[n].float(), c.abs())


def test_grasp_scores_and_the_paper_sign_convention():
    """Wang et al. 2020: S = −θ ⊙ Hg, the highest S removed first; multiticket scores −S and
    removes the lowest, i.e. the same weights."""
    hand = {n: (torch.tensor(HG[n]) * w).tolist() for n, w in zip(NAMES, (W1, W2))}
    assert _as_list(_scores("grasp")) == hand  # θ ⊙ Hg = −S
    params = (W1.clone().requires_grad_(), W2.clone().requires_grad_())  # Hg by torch's own hvp

    def loss(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        return 0.5 * (((w2 @ w1 @ X.T).T - Y) ** 2).sum()

    grads = torch.autograd.grad(loss(*params), params)
    _, hvp = torch.autograd.functional.hvp(loss, params, grads)
    assert [h.tolist() for h in hvp] == [HG[n] for n in NAMES]
    s_paper = torch.cat([(-w * h).reshape(-1) for w, h in zip((W1, W2), hvp)])
    mask = prune(_weights(_net()), _dense(), PruneSpec(rate=0.25, criterion="grasp"), probe=_probe(_net()))
    removed = torch.cat([~mask[n].reshape(-1) for n in NAMES])
    assert removed.tolist() == (s_paper >= torch.topk(s_paper, 2).values.min()).tolist()  # the 2 highest S
    assert removed.nonzero().squeeze(1).tolist() == [3, 7]  # W1[1,1] (S = 21), W2[1,1] (S = 26)


def test_synflow_scores_are_the_synaptic_flow_and_conserve_it_per_layer():
    """Tanaka et al. 2020: |dR/dw ⊙ w| with R = 1ᵀ(Π|W|)1; each layer's scores sum to R."""
    scores = _scores("synflow")
    assert _as_list(scores) == SYNFLOW
    r = float((W2.abs() @ W1.abs()).sum())
    assert r == 7.0 and all(float(scores[n].sum()) == r for n in NAMES)


def test_synflow_scores_at_a_mask_and_the_module_is_left_as_it_was():
    net = _net()
    net.train()
    mask = Mask({"0.weight": torch.tensor([[True, False], [True, True]]), "1.weight": torch.ones(2, 2, dtype=bool)})
    scores = _scores("synflow", mask, net)
    # |W1| ⊙ m = [[1, 0], [0, 1]]: |W1|m 1 = (1, 1), 1ᵀ|W2| = (2, 1)
    assert scores["1.weight"].tolist() == [[1.0, 0.0], [1.0, 1.0]]
    assert scores["0.weight"][0, 0] == 2.0 and scores["0.weight"][1, 1] == 1.0
    assert torch.equal(net[0].weight, W1) and torch.equal(net[1].weight, W2) and net.training


def test_lamp_scores_by_hand():
    """Lee et al. 2021: w_u² / Σ_{v ≥ u} w_v² within the layer, sorted by magnitude."""
    w = torch.tensor([0.5, -0.1, 0.3, 0.8], dtype=torch.float64)  # squares .25 .01 .09 .64, ascending .01 .09 .25 .64
    expected = [0.25 / 0.89, 0.01 / 0.99, 0.09 / 0.98, 1.0]
    assert lamp_scores(w, torch.ones(4, dtype=torch.bool)).tolist() == pytest.approx(expected, rel=1e-12)
    # a pruned entry is not in the sums (and scores 0)
    alive = torch.tensor([True, False, True, True])
    assert lamp_scores(w, alive).tolist() == pytest.approx([0.25 / 0.89, 0.0, 0.09 / 0.98, 1.0], rel=1e-12)


def test_lamp_budget_by_hand_differs_from_global_magnitude():
    """LAMP ranks globally: a (small weights) keeps 2, b (large weights) keeps 1; global magnitude
    would take three of a's four weights."""
    final = {"a": torch.tensor([0.5, -0.1, 0.3, 0.8]), "b": torch.tensor([2.0, 9.0, 0.6])}
    dense = Mask({n: torch.ones_like(w, dtype=torch.bool) for n, w in final.items()})
    # LAMP: a .2809 .0101 .0918 1; b (squares 4 81 .36): 4/85 = .0471, 1, .36/85.36 = .0042
    # 7 weights at rate 0.5: 4 pruned, the lowest LAMP: b2, a1, b0, a2
    lamp = prune(final, dense, PruneSpec(rate=0.5, criterion="lamp"))
    assert lamp["a"].tolist() == [True, False, False, True] and lamp["b"].tolist() == [False, True, False]
    magnitude = prune(final, dense, PruneSpec(rate=0.5))
    assert magnitude.alive_counts() != lamp.alive_counts()
    assert {n: int(m.sum()) for n, m in magnitude.items()} == {"a": 1, "b": 2}


def test_erk_counts_by_hand_with_dense_layers():
    """keep 65 of 130: ε = 65/43 gives c (1x10) 16.6 > 10 -> dense; ε = 55/32 gives b (10x2)
    20.6 > 20 -> dense; ε = 35/20 = 1.75 gives a (10x10) 35."""
    shapes = {"a": (10, 10), "b": (10, 2), "c": (1, 10)}
    alive = {"a": 100, "b": 20, "c": 10}
    assert erk_keep(shapes, alive, 65) == {"a": 35, "b": 20, "c": 10}
    final = {n: torch.randn(s, generator=torch.Generator().manual_seed(0)) for n, s in shapes.items()}
    dense = Mask({n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()})
    mask = prune(final, dense, PruneSpec(rate=0.5, allocator="erk"))
    assert {n: int(m.sum()) for n, m in mask.items()} == {"a": 35, "b": 20, "c": 10}
    kept, pruned = final["a"].abs()[mask["a"]], final["a"].abs()[~mask["a"]]
    assert kept.min() >= pruned.max()  # within a layer, the criterion ranks (large_final)


def test_erk_rounds_by_largest_remainder_and_caps_at_the_live_count():
    # (4,3): Σdims 7, (3,2): Σdims 5; keep 9: ε = 9/12 -> 5.25, 3.75 -> floors 5, 3, the one left to b
    assert erk_keep({"a": (4, 3), "b": (3, 2)}, {"a": 12, "b": 6}, 9) == {"a": 5, "b": 4}
    # the next level from that mask: keep 4, ε = 1/3 -> 2.33, 1.67 -> 2, 1, then b
    assert erk_keep({"a": (4, 3), "b": (3, 2)}, {"a": 5, "b": 4}, 4) == {"a": 2, "b": 2}
    # a layer with fewer live weights than its share keeps them all; the others take the rest
    assert erk_keep({"a": (4, 3), "b": (3, 2)}, {"a": 12, "b": 1}, 9) == {"a": 8, "b": 1}


def _rigl_densities(shapes: dict[str, tuple[int, ...]], density: float) -> dict[str, float]:
    """RigL's sparse_utils ERK (float, from dense): the reference the integer split follows."""
    dense: set[str] = set()
    while True:
        rhs = divisor = 0.0
        raw = {}
        for n, s in shapes.items():
            size = math.prod(s)
            if n in dense:
                rhs -= size * (1 - density)
            else:
                rhs += size * density
                raw[n] = sum(s) / size
                divisor += raw[n] * size
        eps = rhs / divisor
        top = max(raw.values())
        if top * eps <= 1:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense |= {n for n, p in raw.items() if p == top}


@pytest.mark.parametrize("density", [0.8, 0.5, 0.2, 0.05])
def test_erk_from_dense_matches_rigl_densities_within_one_weight(density):
    shapes = {"conv": (16, 3, 3, 3), "fc1": (64, 144), "fc2": (10, 64), "bias_like": (8,)}
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    keep = round(density * sum(sizes.values()))
    kept = erk_keep(shapes, sizes, keep)
    assert sum(kept.values()) == keep
    reference = _rigl_densities(shapes, keep / sum(sizes.values()))
    for n in shapes:
        assert abs(kept[n] - reference[n] * sizes[n]) < 1, n


@pytest.mark.parametrize("allocator", ["global", "layerwise", "erk"])
@pytest.mark.parametrize("criterion", ["large_final", "movement", "lamp", "snip", "grasp", "synflow"])
def test_counting_rule_holds_for_every_allocator_and_criterion(allocator, criterion):
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    names = ["0.weight", "2.weight", "4.weight"]
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    probe = ModelProbe(net, lambda b: net(b).pow(2).mean(), lambda: [x], lambda: net(torch.ones(1, 6)))
    spec = PruneSpec(rate=0.3, overrides={"4.weight": 0.5}, criterion=criterion, allocator=allocator)
    sizes = {n: dict(net.named_parameters())[n].numel() for n in names}
    mask = Mask({n: torch.ones_like(dict(net.named_parameters())[n], dtype=torch.bool) for n in names})
    init = _weights(net)
    for level in range(1, 5):
        new = prune(_weights(net), mask, spec, init=init, probe=probe)
        assert new.num_alive == planned_alive(sizes, spec, level)
        assert all(bool((new[n] <= mask[n]).all()) for n in names)
        mask = new
    at_init = prune_at_init(init, Mask({n: torch.ones_like(m) for n, m in mask.items()}), spec, 4, probe=probe,
                            rounds=5)
    assert at_init.num_alive == planned_alive(sizes, spec, 4)
    assert at_init.alive_counts()["4.weight"] == mask.alive_counts()["4.weight"]  # its own group, as the ticket's


def test_the_exponential_schedule_ends_exactly_at_the_target():
    rounds = [schedule(100, 100, 10, 100, r) for r in range(1, 101)]
    assert rounds[-1] == 10 and rounds == sorted(rounds, reverse=True)
    assert rounds[49] == 32  # floor(100 · 0.1^0.5 + 0.5)
    assert schedule(100, 100, 10, 1, 1) == 10  # one round: straight to the target


def test_synflow_at_init_rescoring_every_round():
    calls = []
    net = _net()
    probe = _probe(net)
    original = probe.ones_gradient

    def counting(weights, mask):
        calls.append(int(sum(m.sum() for m in mask.values())))
        return original(weights, mask)

    probe.ones_gradient = counting
    spec = PruneSpec(rate=0.5, criterion="synflow")
    mask = prune_at_init(_weights(net), _dense(), spec, 1, probe=probe)
    assert mask.num_alive == 4 and len(calls) == criteria["synflow"].init_rounds == 100
    assert calls[0] == 8 and calls[-1] < 8  # rescored at each round's mask


def test_the_element_wise_form_still_constructs_and_scores_as_before():
    legacy = Criterion("first", lambda init, final: torch.arange(final.numel(), dtype=torch.float32), False, "doc")
    assert legacy.needs_init is False and legacy(None, torch.zeros(3)).tolist() == [0.0, 1.0, 2.0]
    ctx = ScoreContext({"a": torch.zeros(2, 2)}, {"a": torch.ones(2, 2, dtype=torch.bool)})
    assert legacy.group_scores(ctx, ["a"], torch.tensor([1, 3])).tolist() == [0.0, 1.0]  # live entries only
    with pytest.raises(ValueError, match="give score"):
        Criterion("both", legacy.score, tensor_score=lambda ctx, names: {})
    assert criteria["snip"].needs_batches and criteria["grasp"].needs_gradients and criteria["synflow"].needs_ones
    assert not any(criteria[n].needs_model for n in ("lamp", "large_final", "movement"))


def test_a_model_criterion_without_a_model_is_refused_in_one_line():
    with pytest.raises(UserError, match=r"^prune.criterion: 'snip' needs the model's scoring batches"):
        prune(_weights(_net()), _dense(), PruneSpec(criterion="snip"))


class _Bare(DomainAdapter):
    """A domain that implements no scoring method (as SB3/HF do today)."""

    domain = "bare"


class _Scoring(_Bare):
    def scoring_batches(self, seed, n):
        return []

    def scoring_loss(self, batch):
        return torch.zeros(())


_Bare.__abstractmethods__ = frozenset()  # instances only to be looked at, never built
_Scoring.__abstractmethods__ = frozenset()


def test_a_domain_without_scoring_batches_is_refused_in_one_line():
    bare = object.__new__(_Bare)
    with pytest.raises(UserError, match=r"^domain 'bare' gives no scoring batches: criterion 'snip' needs them"):
        check_scoring(bare, criteria["snip"])
    with pytest.raises(UserError, match=r"^domain 'bare' gives no all-ones forward: criterion 'synflow' needs it"):
        check_scoring(bare, criteria["synflow"])
    check_scoring(object.__new__(_Scoring), criteria["grasp"])  # batches and loss: enough for GraSP
    check_scoring(bare, criteria["lamp"])  # weights only


def test_a_registered_allocator_splits_the_budget(monkeypatch):
    """A plugin allocator (entry point group multiticket.allocators): the whole budget from the first layer."""
    first = Allocator("first_layer", "all from the first", split=lambda b: {b.names[0]: b.n_prune})
    monkeypatch.setitem(allocators._entries, "first_layer", first)
    final = {"a": torch.arange(1.0, 9.0), "b": torch.arange(1.0, 5.0)}
    dense = Mask({n: torch.ones_like(w, dtype=torch.bool) for n, w in final.items()})
    mask = prune(final, dense, PruneSpec(rate=0.25, allocator="first_layer"))
    assert mask["a"].tolist() == [False] * 3 + [True] * 5 and bool(mask["b"].all())
    bad = Allocator("bad", "breaks the count", split=lambda b: {b.names[0]: b.n_prune + 1})
    monkeypatch.setitem(allocators._entries, "bad", bad)
    with pytest.raises(ValueError, match="breaks the count"):
        prune(final, dense, PruneSpec(rate=0.25, allocator="bad"))
    assert Budget(["a"], {"a": (8,)}, {"a": 8}, 2).n_prune == 2


def test_erk_split_is_exact_in_fractions():
    """The shares are exact rationals: no float rounding decides a layer's count."""
    shapes = {"a": (3, 7), "b": (7, 5), "c": (5, 2)}
    alive = {n: math.prod(s) for n, s in shapes.items()}
    kept = erk_keep(shapes, alive, 33)
    eps = Fraction(33, 10 + 12 + 7)
    assert [float(eps * s) for s in (10, 12, 7)] == pytest.approx([11.379, 13.655, 7.966], abs=1e-3)
    assert kept == {"a": 11, "b": 14, "c": 8}  # floors 11, 13, 7; the two left by remainder: c (.97), b (.66)
