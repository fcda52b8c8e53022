"""Structured pruning (``prune.structure``): a level removes whole neurons, not single weights.

A *neuron* is one dim-0 slice of a weight of two or more dimensions: an output row of a Linear
weight (out × in), an output channel of a Conv weight (out × in × k...). The mask stays an
element mask, with each structured row all True or all False, so IMP with late rewinding, the
mask enforcer, the store and every control work on it unchanged; only the pruning step, the
random draws and the counts read rows.

- **What a structure carries.** The row of the producing layer, and the bias entry of that row
  when the bias is in the scope (``prune.biases: true``; else the bias stays, and a removed
  neuron's output is the constant act(b), which a compact export folds into the consumers'
  biases). The consuming layer's input columns stay in the mask as they are: the mask is exact
  without them (a removed neuron outputs a constant), and the export removes them
  (:mod:`multiticket.adapters.sb3_export`).
- **Kept whole.** The output layers (the adapter's ``io_layers()`` outputs: SB3's action, value
  and Q heads and ``log_std``, a classifier) keep every row: a policy must keep every action.
  They stay in the mask, all True, and are never pruned under a structure. So do parameters of
  fewer than two dimensions that are no structured weight's bias.
- **Counting rule per structure.** A budget group with ``a`` live neurons loses
  ``floor(a × rate + 0.5)`` of them (at least one while any is alive; ``rate_of: original``:
  of all its neurons): the unstructured rule, counted in neurons. The groups are the
  allocator's (``global``: one ranking of every structured row; ``layerwise``: each layer
  alone); allocators that split a weight budget by shape (``erk``) are refused. In a global
  ranking a layer's last live neuron is passed over while other candidates are left (a layer
  emptied whole would cut the network), which changes which neurons go, never how many.
- **Score of a neuron.** The mean of the criterion's scores over the row's live entries, ties
  by position (earlier layer, lower row first). So ``large_final`` ranks rows by mean |w| (the
  L1 norm per weight: within a layer exactly the L1 ranking, across layers fair to fan-in), and
  the row criteria ``l1_norm`` / ``l2_norm`` (:mod:`multiticket.core.criteria.structured`) by the
  raw row norm (Li et al. 2017; He et al. 2018). The ``random`` strategy draws one number per row.
- **Random controls** draw random *neurons*: ``random_layer`` masks keep each layer's live row
  count of the ticket at random rows, ``random_global`` masks the ticket's total row count at
  random rows over the structured scope (so their weight count may differ from the ticket's;
  the check compares neurons). Kept-whole parameters are copied.

``heads`` (attention heads and feed-forward neurons of BERT-like encoders) and ``units`` (LSTM
hidden units: a unit's four gate rows of ``weight_ih`` and ``weight_hh`` and their biases, its
recurrent column of ``weight_hh`` and its column of the next layer or the decoder) are units the
adapter names (:mod:`multiticket.core.structure_units`), counted per unit like neurons: a family
(one layer's heads, FFN neurons or LSTM units) with ``a`` live units loses ``floor(a × rate +
0.5)``. :data:`STRUCTURES` is the table ``prune.structure`` is looked up in: a structure says how
a scope becomes the parameters it keeps whole and, for an adapter-described one, the unit layout
its :class:`Engine` prunes with. Recurrent weights are refused under ``neurons`` (a row of
``weight_ih`` is one gate of a unit, not a unit): ``units`` prunes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from multiticket.core.criteria.base import Criterion, ScoreContext
from multiticket.core.scope import is_bias
from multiticket.core.structure_units import Layout, UnitSource, layout, pick
from multiticket.errors import UserError

Tensors = Mapping[str, torch.Tensor]


def is_recurrent(name: str) -> bool:
    """torch RNN matrices (``weight_ih_l0``, ``weight_hh_l0``): a row is one gate of a unit."""
    return name.rsplit(".", 1)[-1].startswith(("weight_ih", "weight_hh"))


def kept_whole(names: Sequence[str], shapes: Mapping[str, tuple[int, ...]], outputs: Sequence[str],
               structure: str) -> tuple[str, ...]:
    """The scope's parameters a structure never prunes: those of the output layers ``outputs``
    (module or parameter names). A one-line UserError for what the structure cannot cover."""
    if structure == "weights":
        return ()
    for n in names:
        if is_recurrent(n):
            raise UserError(f"prune.structure: {structure} covers Linear and Conv weights; '{n}' is a recurrent "
                            "weight: prune LSTM hidden units with prune.structure: units, or exclude it with prune.exclude")
    keep = tuple(n for n in names if any(n == o or n.startswith(f"{o}.") for o in outputs))
    if not rows_of({n: shapes[n] for n in names}, keep):
        raise UserError(f"prune.structure: {structure} leaves nothing to prune: every prunable weight is in an "
                        f"output layer ({', '.join(outputs[:3])}), whose outputs are kept")
    return keep


def rows_of(shapes: Mapping[str, tuple[int, ...]], keep: Sequence[str]) -> list[str]:
    """The structured weights (pruned a row at a time), in scope order."""
    return [n for n, s in shapes.items() if n not in keep and len(s) >= 2 and not is_recurrent(n)]


def followers(shapes: Mapping[str, tuple[int, ...]], keep: Sequence[str]) -> dict[str, str]:
    """Bias -> its structured weight: the bias entry of a row goes with the row."""
    rows = set(rows_of(shapes, keep))
    out = {}
    for n, s in shapes.items():
        owner = f"{n.rsplit('.', 1)[0]}.weight" if "." in n else "weight"
        if is_bias(n) and len(s) == 1 and owner in rows and shapes[owner][0] == s[0]:
            out[n] = owner
    return out


def row_alive(mask: torch.Tensor) -> torch.Tensor:
    """Which rows of a structured mask hold a live entry."""
    return mask.reshape(mask.shape[0], -1).any(1).cpu()


def row_sizes(shapes: Mapping[str, tuple[int, ...]], keep: Sequence[str]) -> dict[str, int]:
    """Neurons per structured weight: the sizes the counting rule plans with."""
    return {n: shapes[n][0] for n in rows_of(shapes, keep)}


def alive_rows(mask: Tensors, keep: Sequence[str]) -> dict[str, int]:
    """Live neurons per structured weight."""
    return {n: int(row_alive(mask[n]).sum()) for n in rows_of(_shapes(mask), keep)}


def _shapes(mask: Tensors) -> dict[str, tuple[int, ...]]:
    return {n: tuple(t.shape) for n, t in mask.items()}


def partial_rows(mask: Tensors, keep: Sequence[str]) -> str | None:
    """The first structured weight with a row neither all alive nor all pruned (None: all whole)."""
    for n in rows_of(_shapes(mask), keep):
        flat = mask[n].reshape(mask[n].shape[0], -1)
        if bool((flat.any(1) & ~flat.all(1)).any()):
            return n
    return None


def _row_index(shapes: Sequence[tuple[int, ...]]) -> torch.Tensor:
    """For each entry of the concatenated weights, the index of its row in the concatenated rows."""
    parts, offset = [], 0
    for s in shapes:
        per_row = int(torch.Size(s[1:]).numel())
        parts.append(offset + torch.arange(s[0]).repeat_interleave(per_row))
        offset += s[0]
    return torch.cat(parts)


def row_scores(ctx: ScoreContext, ranking: Criterion | None, names: Sequence[str],
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(live rows of the group, the score of each live row in order): the mean of the criterion's
    scores over the row's live entries, or one uniform draw per row (``ranking`` None: random)."""
    shapes = [tuple(ctx.mask[n].shape) for n in names]
    rows = sum(s[0] for s in shapes)
    alive = torch.cat([ctx.mask[n].reshape(-1).cpu() for n in names])
    live_idx = alive.nonzero().squeeze(1)
    row_of = _row_index(shapes)[live_idx]
    live = torch.zeros(rows, dtype=torch.bool)
    live[row_of] = True
    if ranking is None:
        if generator is None:
            raise ValueError("the random strategy needs a torch.Generator")
        return live, torch.rand(rows, generator=generator)[live]
    entry = ranking.group_scores(ctx, names, live_idx).to(torch.float64)
    sums = torch.zeros(rows, dtype=torch.float64).index_add_(0, row_of, entry)
    counts = torch.zeros(rows, dtype=torch.float64).index_add_(0, row_of, torch.ones_like(entry))
    return live, sums[live] / counts[live]


def _clear_rows(new: dict[str, torch.Tensor], names: Sequence[str], gone: torch.Tensor) -> None:
    """Prune the rows ``gone`` (indices into the group's concatenated rows) of ``new``."""
    offset = 0
    for n in names:
        rows = new[n].shape[0]
        local = gone[(gone >= offset) & (gone < offset + rows)] - offset
        if local.numel():
            new[n] = new[n].clone()
            new[n][local] = False
        offset += rows


def drop(ctx: ScoreContext, ranking: Criterion | None, plan: Sequence[tuple[list[str], int]],
         keep: Sequence[str], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """The mask after each group of ``plan`` (structured weights, neurons to remove) lost its
    lowest-scored live rows, ties by position; the rows' biases go with them."""
    new = {n: ctx.mask[n].clone() for n in ctx.mask}
    for names, n_prune in plan:
        live, scores = row_scores(ctx, ranking, names, generator)  # draws even when none is pruned
        if n_prune == 0:
            continue
        order = torch.sort(scores, stable=True).indices
        ranked = live.nonzero().squeeze(1)[order]
        _clear_rows(new, names, pick(ranked, _owners(ctx.mask, names), n_prune))
    return _with_biases(new, ctx.mask, keep)


def _owners(mask: Tensors, names: Sequence[str]) -> list[int]:
    """The index (in ``names``) of the weight each row of the group's concatenated rows belongs to."""
    return [i for i, n in enumerate(names) for _ in range(mask[n].shape[0])]


def _with_biases(new: dict[str, torch.Tensor], old: Tensors, keep: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each structured weight's bias entries pruned where its rows are (kept where they live)."""
    for bias, weight in followers(_shapes(new), keep).items():
        new[bias] = old[bias].clone() & row_alive(new[weight]).to(old[bias].device)
    return new


def random_like(reference: Tensors, generator: torch.Generator, per_layer: bool,
                keep: Sequence[str]) -> dict[str, torch.Tensor]:
    """Random neurons at the reference's live row counts: per structured weight (``per_layer``),
    or its total over the structured scope; kept-whole parameters are copied."""
    names = rows_of(_shapes(reference), keep)
    new = {n: t.clone() for n, t in reference.items()}
    counts = alive_rows(reference, keep)
    groups = [[n] for n in names] if per_layer else [names]
    for group in groups:
        rows = sum(reference[n].shape[0] for n in group)
        chosen = torch.zeros(rows, dtype=torch.bool)
        chosen[torch.randperm(rows, generator=generator)[:sum(counts[n] for n in group)]] = True
        offset = 0
        for n in group:
            size = reference[n].shape[0]
            row_mask = chosen[offset:offset + size].reshape((size,) + (1,) * (reference[n].dim() - 1))
            new[n] = row_mask.expand(reference[n].shape).clone()
            offset += size
    biases = {b: torch.ones_like(reference[b]) for b in followers(_shapes(reference), keep)}
    return _with_biases(new, {**reference, **biases}, keep)


class Engine(Protocol):
    """What a structure's pruning step, controls and checks read: units per counted name (a
    structured weight, a family of heads), live units, budget kinds, pruning, random draws."""

    @property
    def unit(self) -> str:
        """What it counts, for messages (``neurons``)."""

    def sizes(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]: ...
    def alive(self, mask: Tensors) -> dict[str, int]: ...
    def kinds(self, keys: Sequence[str]) -> list[list[str]]: ...
    def partial(self, mask: Tensors) -> str | None: ...
    def drop(self, ctx: ScoreContext, ranking: Criterion | None, plan: Sequence[tuple[list[str], int]],
             generator: torch.Generator | None) -> dict[str, torch.Tensor]: ...
    def random_like(self, reference: Tensors, generator: torch.Generator,
                    per_layer: bool) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class Neurons:
    """The ``neurons`` engine: rows of the structured weights, ``keep`` the kept-whole parameters."""

    keep: tuple[str, ...]
    unit: str = "neurons"

    def sizes(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
        return row_sizes(shapes, self.keep)

    def alive(self, mask: Tensors) -> dict[str, int]:
        return alive_rows(mask, self.keep)

    def kinds(self, keys: Sequence[str]) -> list[list[str]]:
        return [list(keys)] if keys else []

    def partial(self, mask: Tensors) -> str | None:
        return partial_rows(mask, self.keep)

    def drop(self, ctx: ScoreContext, ranking: Criterion | None, plan: Sequence[tuple[list[str], int]],
             generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        return drop(ctx, ranking, plan, self.keep, generator)

    def random_like(self, reference: Tensors, generator: torch.Generator,
                    per_layer: bool) -> dict[str, torch.Tensor]:
        return random_like(reference, generator, per_layer, self.keep)


#: ``(adapter, scope names, their shapes) -> (kept-whole parameters, unit layout or None)``
Resolve = Callable[[Any, Sequence[str], Mapping[str, tuple[int, ...]]], tuple[tuple[str, ...], Layout | None]]


@dataclass(frozen=True)
class Structure:
    """A ``prune.structure`` value: what one pruned unit is, and how a scope resolves to it."""

    name: str
    doc: str
    resolve: Resolve
    #: its units come from the adapter: a spec under it carries their :class:`Layout`
    units: bool = False


def _neurons(adapter: Any, names: Sequence[str], shapes: Mapping[str, tuple[int, ...]]) -> tuple[tuple[str, ...], None]:
    return kept_whole(names, shapes, adapter.io_layers()[1], "neurons"), None


def from_adapter(name: str, needs: str, unit: str) -> Resolve:
    """A structure whose units the adapter finds (:class:`UnitSource`); the scope's other
    parameters (embeddings, pooler, classifier, output biases) are kept whole. ``needs`` says
    which models have them, ``unit`` what is counted (both for messages)."""
    def _resolve(adapter: Any, names: Sequence[str],
                 shapes: Mapping[str, tuple[int, ...]]) -> tuple[tuple[str, ...], Layout | None]:
        families = adapter.structure_units(name) if isinstance(adapter, UnitSource) else ()
        if not families:
            raise UserError(f"prune.structure: {name} needs {needs}; '{getattr(adapter, 'domain', '?')}' finds none")
        units = layout(families, names, shapes, name, unit)
        members = {m.name for f in units.families for m in f.members}
        return tuple(n for n in names if n not in members), units
    return _resolve


#: ``prune.structure`` values, by name: ``weights`` (unstructured, the default), ``neurons``, ``heads``, ``units``
STRUCTURES: dict[str, Structure] = {
    "weights": Structure("weights", "single weights", lambda adapter, names, shapes: ((), None)),
    "neurons": Structure("neurons", "Linear rows and Conv output channels, output layers kept whole", _neurons),
    "heads": Structure("heads", "attention heads and feed-forward neurons of a BERT-like encoder",
                       from_adapter("heads", "attention heads the domain's adapter can find (BERT-like encoders of "
                                    "the nlp domain)", "heads and FFN neurons"), units=True),
    "units": Structure("units", "LSTM hidden units: four gate rows, the recurrent and the consumer's columns",
                       from_adapter("units", "LSTM layers the domain's adapter can find (the nlp domain's lstm "
                                    "model)", "LSTM units"), units=True),
}


def resolve(structure: str, adapter: Any, names: Sequence[str],
            shapes: Mapping[str, tuple[int, ...]]) -> tuple[tuple[str, ...], Layout | None]:
    """The kept-whole parameters and the unit layout of ``structure`` over the scope ``names``."""
    if structure not in STRUCTURES:
        raise UserError(f"prune.structure: unknown '{structure}' (known: {', '.join(STRUCTURES)})")
    return STRUCTURES[structure].resolve(adapter, names, shapes)


def engine(structure: str, keep: tuple[str, ...], units: Layout | None) -> Engine | None:
    """What prunes under ``structure``: None (single weights), the unit layout, or rows."""
    if structure == "weights":
        return None
    return units if units is not None else Neurons(keep)
