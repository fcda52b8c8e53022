"""Structures whose units the adapter names (``prune.structure: heads``): blocks of several weights.

A :class:`Family` is ``count`` units of one ``kind`` in one layer; unit ``i`` is the ``i``-th block
of ``width`` entries along ``dim`` of each of its members. A BERT attention layer's heads are one
family (rows of query, key and value and their biases, ``width`` = the head size; the input columns
of ``attention.output.dense``: ``dim`` 1), its feed-forward neurons another (a row of
``intermediate.dense`` and its bias, a column of ``output.dense``). Because the consumer's columns
go with the unit, a removed unit contributes exactly nothing (not a constant act(b)), so the
element mask equals the network with the unit cut out, biases in the scope or not.

The adapter describes the families of the whole model (:class:`UnitSource`); :func:`layout` keeps
those the scope covers (every weight of a family in the scope, its biases when they are) and
refuses a family the scope cuts in two. The mask stays an element mask, each unit all True or all
False. The counting rule, the scores, the global ranking's last-unit guard and the random draws are
those of :mod:`multiticket.core.structure`'s neurons, per family (a layer's heads) instead of per
weight, and budget groups never mix kinds: heads are ranked with heads, FFN neurons with FFN
neurons (the allocator's ``global``: one ranking per kind; ``layerwise``: each family alone).

A member may hold its units in ``blocks`` equal chunks along ``dim`` (an LSTM's four gates: unit
``j`` is rows ``j``, ``H+j``, ``2H+j``, ``3H+j`` of ``weight_ih``), and one parameter may be a
member twice, along different dims (``weight_hh``: a unit's gate rows and its recurrent column;
``weight_ih_l1``: layer 1's rows and layer 0's columns). An entry is then alive exactly when every
unit holding it is, which the checks, the pruning and the random draws all read. A member marked
``optional`` (the decoder an LSTM's last layer feeds) may lie outside the scope when every bias of
the family is in it: the adapter vouches that a unit whose weights and biases are all zero outputs
exactly 0 (an LSTM unit: c = σ(0)·tanh(0) = 0 at every step, h = σ(0)·tanh(c) = 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from multiticket.core.criteria.base import Criterion, ScoreContext
from multiticket.core.scope import is_bias
from multiticket.errors import UserError

Tensors = Mapping[str, torch.Tensor]
Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class Member:
    """One parameter of a family: unit ``i`` is its entries ``i*width .. (i+1)*width - 1`` along ``dim``
    (0: rows, a producer and its bias; 1: input columns, the consumer), in each of ``blocks``
    consecutive chunks of ``count*width`` (an LSTM's gates); ``optional``: see the module doc."""

    name: str
    dim: int
    width: int
    blocks: int = 1
    optional: bool = False

    def span(self, count: int) -> int:
        """How many positions along ``dim`` the family's units cover."""
        return self.blocks * count * self.width


@dataclass(frozen=True)
class Family:
    """``count`` units of one ``kind`` (``head``, ``ffn``) in one layer; counted under its first
    member's name (the layer's query / intermediate weight, which a ``prune.rates`` pattern matches)."""

    kind: str
    count: int
    members: tuple[Member, ...]

    @property
    def key(self) -> str:
        return self.members[0].name


@runtime_checkable
class UnitSource(Protocol):
    """An adapter that finds a structure's units in its model (the HF adapter: attention heads)."""

    def structure_units(self, structure: str) -> Sequence[Family]: ...


def layout(families: Sequence[Family], names: Sequence[str], shapes: Shapes, structure: str,
           unit: str = "heads and FFN neurons") -> Layout:
    """The families the scope ``names`` covers, with only their in-scope members (biases follow
    when in the scope); a one-line UserError for a family the scope cuts or a model with none."""
    scope, kept, seen = set(names), [], set()
    for fam in families:
        members = _in_scope(fam, scope, structure)
        if not members:
            continue
        for m in members:
            if (m.name, m.dim) in seen or shapes[m.name][m.dim] < m.span(fam.count):
                raise ValueError(f"structure units: '{m.name}' is in two families or too small for {fam.count} units")
            seen.add((m.name, m.dim))
        kept.append(Family(fam.kind, fam.count, members))
    if not kept:
        raise UserError(f"prune.structure: {structure} finds no unit in the scope ({unit} need their weights in "
                        "prune.include)")
    return Layout(tuple(kept), unit)


def _in_scope(fam: Family, scope: set[str], structure: str) -> tuple[Member, ...]:
    """The members of ``fam`` in the scope (none when none of its required weights is); refuses a
    family the scope cuts in two, or whose optional consumer is out while a bias is out too."""
    weights = [m for m in fam.members if not is_bias(m.name)]
    inside = [m.name for m in weights if m.name in scope and not m.optional]
    if not inside:
        return ()
    missing = [m for m in weights if m.name not in scope]
    required = [m.name for m in missing if not m.optional]
    if required:
        raise UserError(f"prune.structure: {structure} prunes '{inside[0]}' together with '{required[0]}', which is "
                        "not in the scope: include both or exclude both")
    if missing and any(is_bias(m.name) and m.name not in scope for m in fam.members):
        raise UserError(f"prune.structure: {structure}: the units of '{inside[0]}' feed '{missing[0].name}', which is "
                        "not in the scope: include it, or set prune.biases: true so a removed unit outputs exactly 0")
    return tuple(m for m in fam.members if m.name in scope)


def _blocks(t: torch.Tensor, m: Member, count: int) -> torch.Tensor:
    """A view of ``t``'s unit entries for member ``m``: (count, blocks, width, the other dims)."""
    span = t.movedim(m.dim, 0)[:m.span(count)]
    return span.unflatten(0, (m.blocks, count, m.width)).transpose(0, 1)


def _reduce(mask: torch.Tensor, m: Member, count: int, how: str) -> torch.Tensor:
    """Per unit: any (``how`` 'any') or all ('all') of the member's entries of that unit."""
    blocks = _blocks(mask.detach().cpu(), m, count).reshape(count, -1)
    return blocks.any(1) if how == "any" else blocks.all(1)


def _write(t: torch.Tensor, m: Member, count: int, units: torch.Tensor, keep_live: bool) -> torch.Tensor:
    """``t`` with each unit's entries set to ``units`` (``keep_live``: and-ed with what they were)."""
    out = t.clone()
    view = _blocks(out, m, count)  # a view: writing it writes ``out``
    along = units.to(t.device).reshape((count,) + (1,) * (view.dim() - 1))
    view.copy_((view & along) if keep_live else along.expand(view.shape))
    return out


def _ids(shape: tuple[int, ...], m: Member, count: int, offset: int) -> torch.Tensor:
    """For each entry of a member, ``offset`` + the unit it belongs to (-1: in none), flattened."""
    along = torch.full((shape[m.dim],), -1, dtype=torch.long)
    along[:m.span(count)] = (offset + torch.arange(count).repeat_interleave(m.width)).repeat(m.blocks)
    view = [1] * len(shape)
    view[m.dim] = shape[m.dim]
    return along.reshape(view).expand(shape).reshape(-1)


def pick(ranked: torch.Tensor, owner: Sequence[int], n: int) -> torch.Tensor:
    """The ``n`` units to prune, lowest-ranked first, skipping a layer's last live unit while another
    candidate is left (so no layer of a global group empties before the others must)."""
    left: dict[int, int] = {}
    for r in ranked.tolist():
        left[owner[r]] = left.get(owner[r], 0) + 1
    chosen: list[int] = []
    spare: list[int] = []
    for r in ranked.tolist():
        if len(chosen) == n:
            break
        if left[owner[r]] > 1:
            chosen.append(r)
            left[owner[r]] -= 1
        else:
            spare.append(r)
    return torch.tensor(chosen + spare[:n - len(chosen)], dtype=torch.long)


@dataclass(frozen=True)
class Layout:
    """The unit families of a scope: the engine of an adapter-described structure (see module doc)."""

    families: tuple[Family, ...]
    unit: str = "heads and FFN neurons"

    def by_key(self) -> dict[str, Family]:
        return {f.key: f for f in self.families}

    def sizes(self, shapes: Shapes) -> dict[str, int]:
        """Units per family: what the counting rule plans with."""
        return {f.key: f.count for f in self.families}

    def live_units(self, mask: Tensors, fam: Family) -> torch.Tensor:
        """Which units of a family hold a live entry."""
        out = torch.zeros(fam.count, dtype=torch.bool)
        for m in fam.members:
            out |= _reduce(mask[m.name], m, fam.count, "any")
        return out

    def alive(self, mask: Tensors) -> dict[str, int]:
        """Live units per family."""
        return {f.key: int(self.live_units(mask, f).sum()) for f in self.families}

    def kinds(self, keys: Sequence[str]) -> list[list[str]]:
        """``keys`` split by kind (first-seen order): budget groups never mix heads and neurons."""
        kind = {f.key: f.kind for f in self.families}
        out: dict[str, list[str]] = {}
        for k in keys:
            out.setdefault(kind.get(k, k), []).append(k)
        return list(out.values())

    def expected(self, mask: Tensors) -> dict[str, torch.Tensor]:
        """Each member's mask as whole units would make it: an entry alive exactly when every unit
        holding it lives (entries in no unit: as they are)."""
        live = {f.key: self.live_units(mask, f) for f in self.families}
        return self.with_units({m.name: mask[m.name] for f in self.families for m in f.members}, live)

    def with_units(self, masks: dict[str, torch.Tensor], live: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``masks`` with every family's units set to ``live`` (family key -> one bool per unit):
        each unit entry made alive first, then the dead units cleared, so a parameter in two
        families (an LSTM's ``weight_hh``: rows and columns) ends alive only where both live."""
        out = dict(masks)
        for f in self.families:
            for m in f.members:
                out[m.name] = _write(out[m.name], m, f.count, torch.ones(f.count, dtype=torch.bool), keep_live=False)
        for f in self.families:
            for m in f.members:
                out[m.name] = _write(out[m.name], m, f.count, live[f.key], keep_live=True)
        return out

    def partial(self, mask: Tensors) -> str | None:
        """The first family (its key) with a unit neither all alive nor all pruned (None: all whole)."""
        expected = self.expected(mask)
        for f in self.families:
            for m in f.members:
                if bool(_reduce(mask[m.name] != expected[m.name], m, f.count, "any").any()):
                    return f.key
        return None

    def scores(self, ctx: ScoreContext, ranking: Criterion | None, fams: Sequence[Family],
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(live units of the group, the score of each live unit in order): the mean of the
        criterion's scores over the unit's live entries, or one uniform draw per unit (random)."""
        live = torch.cat([self.live_units(ctx.mask, f) for f in fams])
        if ranking is None:
            if generator is None:
                raise ValueError("the random strategy needs a torch.Generator")
            return live, torch.rand(live.numel(), generator=generator)[live]
        names, ids, offset = [], [], 0
        for f in fams:
            for m in f.members:
                names.append(m.name)
                ids.append(_ids(tuple(ctx.mask[m.name].shape), m, f.count, offset))
            offset += f.count
        alive = torch.cat([ctx.mask[n].reshape(-1).cpu() for n in names])
        unit_of = torch.cat(ids)
        live_idx = (alive & (unit_of >= 0)).nonzero().squeeze(1)
        entry = ranking.group_scores(ctx, names, live_idx).to(torch.float64)
        owner = unit_of[live_idx]
        sums = torch.zeros(offset, dtype=torch.float64).index_add_(0, owner, entry)
        counts = torch.zeros(offset, dtype=torch.float64).index_add_(0, owner, torch.ones_like(entry))
        return live, sums[live] / counts[live]

    def _clear(self, new: dict[str, torch.Tensor], fams: Sequence[Family], gone: torch.Tensor) -> None:
        """Prune the units ``gone`` (indices into the group's concatenated units) of ``new``."""
        offset = 0
        for f in fams:
            local = gone[(gone >= offset) & (gone < offset + f.count)] - offset
            if local.numel():
                keep = torch.ones(f.count, dtype=torch.bool)
                keep[local] = False
                for m in f.members:
                    new[m.name] = _write(new[m.name], m, f.count, keep, keep_live=True)
            offset += f.count

    def drop(self, ctx: ScoreContext, ranking: Criterion | None, plan: Sequence[tuple[list[str], int]],
             generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """The mask after each group of ``plan`` (family keys, units to remove) lost its lowest-scored
        live units, ties by position (earlier layer, lower unit first)."""
        new = {n: ctx.mask[n].clone() for n in ctx.mask}
        fam = self.by_key()
        for keys, n_prune in plan:
            fams = [fam[k] for k in keys]
            live, scores = self.scores(ctx, ranking, fams, generator)  # draws even when none is pruned
            if n_prune == 0:
                continue
            ranked = live.nonzero().squeeze(1)[torch.sort(scores, stable=True).indices]
            owner = [i for i, f in enumerate(fams) for _ in range(f.count)]
            self._clear(new, fams, pick(ranked, owner, n_prune))
        return new

    def random_like(self, reference: Tensors, generator: torch.Generator, per_layer: bool) -> dict[str, torch.Tensor]:
        """Random units at the reference's live unit counts: per family (``per_layer``) or per kind
        over all its families; parameters in no family are copied."""
        groups = [[f] for f in self.families] if per_layer else \
            [[self.by_key()[k] for k in keys] for keys in self.kinds([f.key for f in self.families])]
        chosen: dict[str, torch.Tensor] = {}
        for fams in groups:
            total = sum(f.count for f in fams)
            alive = sum(int(self.live_units(reference, f).sum()) for f in fams)
            drawn = torch.zeros(total, dtype=torch.bool)
            drawn[torch.randperm(total, generator=generator)[:alive]] = True
            for f, part in zip(fams, drawn.split([f.count for f in fams])):
                chosen[f.key] = part
        return self.with_units({n: t.clone() for n, t in reference.items()}, chosen)
