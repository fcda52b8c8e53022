"""Where a ticket keeps its weights: per-layer and per-role remaining fractions, mask stability
across seeds, and which input (observation) dimensions the first layer has cut off.

A layer's role is the one its domain knows by name, where it knows one (embeddings, attention
query/key/value/output, ... for transformers: the adapter's layer-role function, whose results
the run recorded, :meth:`multiticket.analysis.rundata.RunData.layer_roles`), else input / hidden /
output by position (:func:`position_roles`). A role this module does not list (a third-party
domain's own) is shown after those it lists.

All functions take masks (``Mask``: parameter name -> bool tensor) in the order the prunable
module lists its parameters, which is the order the core saves them in.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping

import torch

from multiticket.core.mask import Mask

#: display order of the roles this module knows (rows of heatmaps, bars of the comparison). A role
#: with a dot is one part of a family (:func:`role_group`): attention projections, the two
#: feed-forward matrices, the LSTM's input-to-hidden (``weight_ih``) and hidden-to-hidden
#: (``weight_hh``) matrices; the bare family name is for a parameter of that family whose part the
#: name does not tell.
ROLE_ORDER = (
    "input", "embeddings",
    "lstm.ih", "lstm.hh", "lstm",
    "attention.query", "attention.key", "attention.value", "attention.qkv", "attention.output", "attention",
    "ffn.intermediate", "ffn.output", "ffn",
    "hidden", "pooler", "head", "output",
)  # fmt: skip


def role_group(role: str) -> str:
    """The family of a role: 'attention.query' -> 'attention', 'lstm.hh' -> 'lstm', 'input' -> 'input'."""
    return role.split(".", 1)[0]


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders 'layer.2' before 'layer.10'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def position_roles(shapes: dict[str, tuple[int, ...]]) -> dict[str, str]:
    """input / hidden / output for every parameter, from how the weight shapes chain.

    A weight of shape (out, in, ...) is an *input* layer when no other weight produces its ``in``
    width (it reads the observation or the features), an *output* layer when no other weight
    consumes its ``out`` width. With convolutions present, only the convolutions can read the
    input and only linear layers can be outputs (a flatten breaks the width chain). Biases and
    other 1-D parameters take the role of their module's weight. If no weight qualifies as input (every width is shared), the
    first and last names in natural order are input and output. Actor-critic nets have two input
    layers (actor and critic trunk) and two outputs (action and value heads): all are found.
    """
    weights = {n: s for n, s in shapes.items() if len(s) >= 2}
    conv = any(len(s) >= 3 for s in weights.values())
    linear = any(len(s) == 2 for s in weights.values())
    out: dict[str, str] = {}
    for n, s in weights.items():
        others = [o for m, o in weights.items() if m != n]
        is_in = s[1] not in {o[0] for o in others} and (len(s) >= 3 or not conv)
        is_out = s[0] not in {o[1] for o in others} and (len(s) == 2 or not linear)
        out[n] = "input" if is_in else "output" if is_out else "hidden"
    if weights and "input" not in out.values():
        order = sorted(weights, key=natural_key)
        out[order[0]], out[order[-1]] = "input", "output"
    for n in shapes:
        if n not in out:
            out[n] = out.get(n.rsplit(".", 1)[0] + ".weight", "hidden")
    return out


def role_key(role: str) -> tuple[int, str]:
    """Sort key of a role: :data:`ROLE_ORDER`, then roles it does not list by name."""
    return (ROLE_ORDER.index(role), "") if role in ROLE_ORDER else (len(ROLE_ORDER), role)


def in_role_order(found: Iterable[str]) -> list[str]:
    """The distinct roles of ``found`` in display order (:func:`role_key`)."""
    return sorted(set(found), key=role_key)


def roles(mask: Mask, named: Mapping[str, str] | None = None) -> dict[str, str]:
    """name -> role: the role the domain knows by name (``named``: the run's recorded
    :meth:`~multiticket.analysis.rundata.RunData.layer_roles`), else by position
    (:func:`position_roles`)."""
    pos = position_roles({n: tuple(t.shape) for n, t in mask.items()})
    named = named or {}
    return {n: named.get(n) or pos[n] for n in mask}


def ordered_layers(mask: Mask, named: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(role, name) sorted by role (:func:`role_key`), natural name order within a role."""
    r = roles(mask, named)
    return sorted(((r[n], n) for n in mask), key=lambda rn: (role_key(rn[0]), natural_key(rn[1])))


def remaining_per_layer(masks_by_level: dict[int, dict[int, Mask]]) -> dict[int, dict[str, float]]:
    """level -> name -> remaining fraction, averaged over the seeds' masks."""
    out: dict[int, dict[str, float]] = {}
    for level, by_seed in masks_by_level.items():
        acc: dict[str, list[float]] = defaultdict(list)
        for mask in by_seed.values():
            for layer in mask.report():
                acc[layer.name].append(layer.alive / layer.numel if layer.numel else 1.0)
        out[level] = {n: sum(v) / len(v) for n, v in acc.items()}
    return out


def remaining_per_role(mask: Mask, named: Mapping[str, str] | None = None, grouped: bool = False) -> dict[str, float]:
    """role -> alive / numel over all parameters of that role (:func:`roles`; ``grouped``: per
    family, :func:`role_group`, e.g. one 'attention' for its four projections), in display order."""
    r = roles(mask, named)
    alive: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for layer in mask.report():
        role = role_group(r[layer.name]) if grouped else r[layer.name]
        alive[role] += layer.alive
        total[role] += layer.numel
    return {role: alive[role] / total[role] for role in in_role_order(total) if total[role]}


def jaccard_across_seeds(masks_by_level: dict[int, dict[int, Mask]]) -> dict[int, dict[str, float]]:
    """level -> name -> Jaccard of the alive sets, averaged over all pairs of seeds.

    Also holds the whole-mask Jaccard under the key ``"(all)"``. Levels with fewer than two
    seeds are left out.
    """
    out: dict[int, dict[str, float]] = {}
    for level, by_seed in masks_by_level.items():
        seeds = sorted(by_seed)
        if len(seeds) < 2:
            continue
        acc: dict[str, list[float]] = defaultdict(list)
        for a, b in itertools.combinations(seeds, 2):
            for name, j in by_seed[a].jaccard_per_layer(by_seed[b]).items():
                acc[name].append(j)
            acc["(all)"].append(by_seed[a].jaccard(by_seed[b]))
        out[level] = {n: sum(v) / len(v) for n, v in acc.items()}
    return out


def random_jaccard(remaining: float) -> float:
    """Expected Jaccard of two independent random masks that each keep ``remaining`` of the
    entries: d² / (2d − d²) = d / (2 − d). The baseline a stable ticket should beat."""
    return remaining / (2.0 - remaining) if remaining > 0 else 0.0


def input_layers(mask: Mask) -> list[str]:
    """The 2-D input layers (:func:`position_roles`) that read the same observation width.

    Empty when the input is read by a convolution (images): columns are then not observation
    dimensions.
    """
    r = position_roles({n: tuple(t.shape) for n, t in mask.items()})
    inputs = [n for n in sorted(mask, key=natural_key) if r[n] == "input"]
    if not inputs or any(mask[n].dim() != 2 for n in inputs):
        return []
    width = mask[inputs[0]].shape[1]
    return [n for n in inputs if mask[n].shape[1] == width]


def input_columns_alive(mask: Mask, names: list[str]) -> list[float]:
    """Fraction of alive weights in each input column (observation dimension) over ``names``."""
    return torch.cat([mask[n].float() for n in names], dim=0).mean(dim=0).tolist()


def pruned_inputs(masks_by_level: dict[int, dict[int, Mask]]) -> tuple[list[str], dict[int, dict[int, list[int]]]]:
    """(input layers, level -> seed -> observation dimensions cut off from every input layer)."""
    names: list[str] = []
    out: dict[int, dict[int, list[int]]] = {}
    for level, by_seed in masks_by_level.items():
        for seed, mask in by_seed.items():
            names = names or input_layers(mask)
            if not names:
                continue
            alive = torch.cat([mask[n] for n in names], dim=0).any(dim=0)
            out.setdefault(level, {})[seed] = (~alive).nonzero().flatten().tolist()
    return names, out
