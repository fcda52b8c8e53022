"""``prune.structure: units`` in the core (torch only): LSTM hidden units described as the HF
adapter describes the LSTM LM's (four gate rows of ``weight_ih``/``weight_hh`` and their biases in
blocks, the recurrent column, the next layer's or the decoder's column), the counting rule per unit,
random controls drawing whole units, exactness through training (the masked network equals a
narrower LSTM), the optional decoder with the biases in the scope, and one-line refusals."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from multiticket.core import structure
from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, alive_after, planned_alive, prune, unit_sizes
from multiticket.core.structure_units import Family, Member
from multiticket.errors import UserError

IN, H, OUT, LAYERS = 5, 6, 3, 2
P = "lstm."


class Net(nn.Module):
    """A two-layer LSTM and a decoder: the shape of the LSTM LM without its embedding."""

    def __init__(self, hidden: int = H) -> None:
        super().__init__()
        self.lstm = nn.LSTM(IN, hidden, num_layers=LAYERS, batch_first=True)
        self.dec = nn.Linear(hidden, OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.lstm(x)[0])


def families(decoder_optional: bool = True) -> list[Family]:
    out = []
    for layer in range(LAYERS):
        members = [Member(f"{P}weight_ih_l{layer}", 0, 1, blocks=4), Member(f"{P}weight_hh_l{layer}", 0, 1, blocks=4),
                   Member(f"{P}bias_ih_l{layer}", 0, 1, blocks=4), Member(f"{P}bias_hh_l{layer}", 0, 1, blocks=4),
                   Member(f"{P}weight_hh_l{layer}", 1, 1)]
        nxt = f"{P}weight_ih_l{layer + 1}" if layer + 1 < LAYERS else "dec.weight"
        members.append(Member(nxt, 1, 1, optional=nxt == "dec.weight" and decoder_optional))
        out.append(Family("lstm", H, tuple(members)))
    return out


class FakeAdapter:
    domain = "nlp"

    def structure_units(self, name: str) -> list[Family]:
        return families() if name == "units" else []


MODEL = Net()
SHAPES = {n: tuple(p.shape) for n, p in MODEL.named_parameters()}
WEIGHTS = [n for n in SHAPES if "weight" in n]
KEYS = [f"{P}weight_ih_l0", f"{P}weight_ih_l1"]


def _spec(names: list[str] | None = None, **kw: Any) -> PruneSpec:
    names = names or WEIGHTS
    keep, units = structure.resolve("units", FakeAdapter(), names, {n: SHAPES[n] for n in names})
    return PruneSpec(structure="units", keep=keep, layout=units, **kw)


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}


def _dense(names: list[str] | None = None) -> Mask:
    return Mask({n: torch.ones(SHAPES[n], dtype=torch.bool) for n in names or WEIGHTS})


def _units(mask: Mask, layer: int) -> torch.Tensor:
    """Which units of a layer live, read from the recurrent rows (gate i)."""
    return mask[f"{P}weight_hh_l{layer}"][:H].any(1)


def _check_whole(mask: Mask) -> None:
    for layer in range(LAYERS):
        live = _units(mask, layer)
        for kind in ("ih", "hh"):  # the four gate rows of a unit go together
            rows = mask[f"{P}weight_{kind}_l{layer}"].reshape(4, H, -1)
            assert all(torch.equal(rows[g].any(1), live) for g in range(4))
        assert torch.equal(mask[f"{P}weight_hh_l{layer}"].any(0), live)  # and its recurrent column
        consumer = f"{P}weight_ih_l{layer + 1}" if layer + 1 < LAYERS else "dec.weight"
        assert torch.equal(mask[consumer].any(0), live)  # and the consumer's column
    hh = mask[f"{P}weight_hh_l0"]  # an entry lives exactly when both its units do
    assert torch.equal(hh, (_units(mask, 0).repeat(4)[:, None] & _units(mask, 0)[None, :]))


def test_the_scope_resolves_to_one_family_per_layer_and_the_rest_is_kept_whole():
    spec = _spec()
    assert spec.keep == () and spec.layout is not None and spec.layout.unit == "LSTM units"
    assert unit_sizes(SHAPES, spec) == {KEYS[0]: H, KEYS[1]: H}
    assert [g for g, _ in spec.groups(KEYS)] == [KEYS]
    names = WEIGHTS + [n for n in SHAPES if "bias" in n]
    assert _spec(names).keep == ("dec.bias",)


@pytest.mark.parametrize("kw", [{}, {"strategy": "random"}, {"allocator": "layerwise"},
                                {"rate_of": "original", "rate": 0.3}, {"criterion": "l1_norm"}])
def test_units_follow_the_counting_rule_and_stay_whole(kw):
    spec = _spec(**kw)
    mask, w = _dense(), _weights()
    for level in range(1, 4):
        mask = prune(w, mask, spec, torch.Generator().manual_seed(level))
        assert sum(spec.layout.alive(mask).values()) == planned_alive(unit_sizes(SHAPES, spec), spec, level)
        assert spec.layout.partial(mask) is None
        _check_whole(mask)
    if not kw:  # global, rate 0.2 of the remaining: 12 -> 10 -> 8 -> 6 units
        assert sum(spec.layout.alive(mask).values()) == alive_after(12, 0.2, "remaining", 3) == 6


def test_a_partial_unit_is_found_also_in_a_weight_two_layers_share():
    spec = _spec()
    mask = prune(_weights(), _dense(), spec)
    assert spec.layout.partial(mask) is None
    broken = Mask({n: t.clone() for n, t in mask.items()})
    live = int(_units(mask, 1).nonzero()[0])
    broken[f"{P}weight_ih_l1"][2 * H + live, int(_units(mask, 0).nonzero()[0])] = False  # one live entry of gate g
    assert spec.layout.partial(broken) == KEYS[0]  # the first family holding it: layer 0 (its consumer columns)


@pytest.mark.parametrize("per_layer", [True, False])
def test_random_controls_draw_whole_units_at_the_tickets_counts(per_layer):
    spec = _spec(rate=0.4)
    ticket = prune(_weights(), prune(_weights(), _dense(), spec), spec)
    drawn = Mask(spec.layout.random_like(ticket, torch.Generator().manual_seed(3), per_layer))
    assert spec.layout.partial(drawn) is None and drawn != ticket
    _check_whole(drawn)
    a, b = spec.layout.alive(drawn), spec.layout.alive(ticket)
    assert a == b if per_layer else sum(a.values()) == sum(b.values())


def _cut(model: Net, mask: Mask, x: torch.Tensor) -> torch.Tensor:
    """``model``'s output computed by single-layer LSTMs holding only each layer's live units."""
    state, inputs = model.state_dict(), torch.arange(IN)
    for layer in range(LAYERS):
        idx = _units(mask, layer).nonzero().squeeze(1)
        rows = torch.cat([g * H + idx for g in range(4)])
        small = nn.LSTM(inputs.numel(), idx.numel(), batch_first=True)
        with torch.no_grad():
            small.weight_ih_l0.copy_(state[f"{P}weight_ih_l{layer}"][rows][:, inputs])
            small.weight_hh_l0.copy_(state[f"{P}weight_hh_l{layer}"][rows][:, idx])
            small.bias_ih_l0.copy_(state[f"{P}bias_ih_l{layer}"][rows])
            small.bias_hh_l0.copy_(state[f"{P}bias_hh_l{layer}"][rows])
        x, inputs = small(x)[0], idx
    return x @ state["dec.weight"][:, inputs].T + state["dec.bias"]


def test_removed_units_change_nothing_through_training():
    """The mask enforced after each SGD step (biases outside the scope, trained and nonzero): the
    masked network's outputs equal those of LSTMs that hold only the live units."""
    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "bias" in n:
                p.uniform_(-1, 1)
    spec = _spec(rate=0.5)
    mask = prune({n: p.detach() for n, p in model.named_parameters()}, _dense(), spec)
    mask.apply_(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x, y = torch.randn(4, 7, IN, generator=g), torch.randn(4, 7, OUT, generator=g)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        mask.apply_(model)
    assert [int(_units(mask, layer).sum()) for layer in range(LAYERS)] != [H, H]
    x = torch.randn(3, 9, IN, generator=g)
    with torch.no_grad():
        assert torch.allclose(model(x), _cut(model, mask, x), atol=1e-6, rtol=0)


def test_without_the_decoder_in_the_scope_the_biases_keep_a_removed_unit_at_exactly_zero():
    names = [n for n in SHAPES if n.startswith(P)]  # the LSTM's weights and biases, not the decoder
    spec = _spec(names, rate=0.5, allocator="layerwise")
    assert [m.name for m in spec.layout.families[1].members][-1] == f"{P}weight_hh_l1"
    model = Net()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "bias" in n:
                p.uniform_(-1, 1)
    mask = prune({n: p.detach() for n, p in model.named_parameters() if n in names}, _dense(names), spec)
    mask.apply_(model)
    out = model.lstm(torch.randn(2, 8, IN))[0]
    assert bool((out[..., ~_units(mask, 1)] == 0).all()) and bool((out[..., _units(mask, 1)] != 0).any())


def test_refusals_name_the_field_in_one_line():
    no_biases = [n for n in WEIGHTS if n != "dec.weight"]
    with pytest.raises(UserError, match=r"^prune.structure: units: the units of 'lstm.weight_ih_l1' feed "
                                        r"'dec.weight', which is not in the scope: include it, or set prune.biases"):
        _spec(no_biases)
    with pytest.raises(UserError, match=r"^prune.structure: units prunes 'lstm.weight_ih_l0' together with "
                                        r"'lstm.weight_hh_l0'"):
        _spec([n for n in WEIGHTS if n != f"{P}weight_hh_l0"])

    class Plain:
        domain = "toy"

    with pytest.raises(UserError, match=r"^prune.structure: units needs LSTM layers .* 'toy' finds none"):
        structure.resolve("units", Plain(), WEIGHTS, SHAPES)
    with pytest.raises(UserError, match=r"recurrent weight: prune LSTM hidden units with prune.structure: units"):
        structure.kept_whole(WEIGHTS, SHAPES, ["dec"], "neurons")
