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
    (0: rows, a producer and its bias; 1: input columns, the consumer)."""

    name: str
    dim: int
    width: int


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


def layout(families: Sequence[Family], names: Sequence[str], shapes: Shapes, structure: str) -> Layout:
    """The families the scope ``names`` covers, with only their in-scope members (biases follow
    when in the scope); a one-line UserError for a family the scope cuts or a model with none."""
    scope, kept, seen = set(names), [], set()
    for fam in families:
        weights = [m.name for m in fam.members if not is_bias(m.name)]
        inside = [w for w in weights if w in scope]
        if not inside:
            continue
        if len(inside) != len(weights):
            missing = next(w for w in weights if w not in scope)
            raise UserError(f"prune.structure: {structure} prunes '{inside[0]}' together with '{missing}', which is "
                            "not in the scope: include both or exclude both")
        members = tuple(m for m in fam.members if m.name in scope)
        for m in members:
            if m.name in seen or shapes[m.name][m.dim] < fam.count * m.width:
                raise ValueError(f"structure units: '{m.name}' is in two families or too small for {fam.count} units")
            seen.add(m.name)
        kept.append(Family(fam.kind, fam.count, members))
    if not kept:
        raise UserError(f"prune.structure: {structure} finds no unit in the scope (attention heads and feed-forward "
                        "neurons need their weights in prune.include)")
    return Layout(tuple(kept))


def _reduce(mask: torch.Tensor, m: Member, count: int, how: str) -> torch.Tensor:
    """Per unit: any (``how`` 'any') or all ('all') of the member's entries of that unit."""
    flat = mask.detach().cpu().movedim(m.dim, 0).reshape(mask.shape[m.dim], -1)[:count * m.width]
    blocks = flat.reshape(count, -1)
    return blocks.any(1) if how == "any" else blocks.all(1)


def _write(t: torch.Tensor, m: Member, count: int, units: torch.Tensor, keep_live: bool) -> torch.Tensor:
    """``t`` with each unit's entries set to ``units`` (``keep_live``: and-ed with what they were)."""
    out = t.clone()
    moved = out.movedim(m.dim, 0)  # a view: writing it writes ``out``
    along = units.to(t.device).repeat_interleave(m.width).reshape((-1,) + (1,) * (t.dim() - 1))
    span = moved[:count * m.width]
    span.copy_((span & along) if keep_live else along.expand(span.shape))
    return out


def _ids(shape: tuple[int, ...], m: Member, count: int, offset: int) -> torch.Tensor:
    """For each entry of a member, ``offset`` + the unit it belongs to (-1: in none), flattened."""
    along = torch.full((shape[m.dim],), -1, dtype=torch.long)
    along[:count * m.width] = offset + torch.arange(count).repeat_interleave(m.width)
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

    def partial(self, mask: Tensors) -> str | None:
        """The first family (its key) with a unit neither all alive nor all pruned (None: all whole)."""
        for f in self.families:
            every = torch.ones(f.count, dtype=torch.bool)
            for m in f.members:
                every &= _reduce(mask[m.name], m, f.count, "all")
            if bool((self.live_units(mask, f) & ~every).any()):
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
        new = {n: t.clone() for n, t in reference.items()}
        groups = [[f] for f in self.families] if per_layer else \
            [[self.by_key()[k] for k in keys] for keys in self.kinds([f.key for f in self.families])]
        for fams in groups:
            total = sum(f.count for f in fams)
            alive = sum(int(self.live_units(reference, f).sum()) for f in fams)
            chosen = torch.zeros(total, dtype=torch.bool)
            chosen[torch.randperm(total, generator=generator)[:alive]] = True
            offset = 0
            for f in fams:
                for m in f.members:
                    new[m.name] = _write(new[m.name], m, f.count, chosen[offset:offset + f.count], keep_live=False)
                offset += f.count
        return new
