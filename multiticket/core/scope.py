"""Which parameters are prunable: the adapter's default set, narrowed or widened by patterns.

Patterns are shell-style globs over ``named_parameters()`` names (``mlp_extractor.*.weight``);
a pattern prefixed with ``re:`` is a regular expression (full match). A pattern that matches no
parameter is an error: a typo must never leave a network silently dense. Tied tensors (GPT-2's
input/output embeddings) appear once under their first name, so they get one mask; a pattern
naming any alias selects that one tensor.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from torch import nn

from multiticket.errors import UserError

#: module types whose ``weight`` is prunable by default in any domain
DEFAULT_MODULE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Bilinear,
)


def matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def is_bias(name: str) -> bool:
    """Bias parameters by the naming conventions of torch, SB3 and HF (``bias``, ``bias_ih_l0``)."""
    return name.rsplit(".", 1)[-1].startswith("bias")


def aliases(module: nn.Module) -> dict[str, str]:
    """Every parameter name (including tied duplicates) -> the canonical first name."""
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        canonical = first.setdefault(id(p), name)
        out[name] = canonical
    return out


def weights_of_types(module: nn.Module, types: Sequence[type[nn.Module]] = DEFAULT_MODULE_TYPES) -> list[str]:
    """Canonical names of the ``weight`` (and RNN ``weight_*``) parameters of modules of ``types``."""
    canon = aliases(module)
    out: list[str] = []
    for mod_name, mod in module.named_modules():
        if not any(isinstance(mod, t) for t in types):
            continue
        for p_name, _ in mod.named_parameters(recurse=False):
            if p_name == "weight" or p_name.startswith("weight_"):
                full = f"{mod_name}.{p_name}" if mod_name else p_name
                name = canon[full]
                if name not in out:
                    out.append(name)
    return out


def select(
    module: nn.Module,
    default: Sequence[str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    biases: bool = False,
    field: str = "prune",
) -> list[str]:
    """Resolve the prunable parameter names, in ``named_parameters()`` order.

    ``include`` replaces ``default`` when given; ``exclude`` removes; biases are dropped unless
    ``biases`` is true. Raises :class:`UserError` naming ``field.include``/``field.exclude`` for a
    pattern that matches nothing, and ``field`` when the result is empty.
    """
    canon = aliases(module)
    order = list(dict.fromkeys(canon.values()))
    if include:
        chosen: set[str] = set()
        for pattern in include:
            hit = {canon[n] for n in canon if matches(pattern, n)}
            if not hit:
                raise UserError(f"{field}.include: pattern '{pattern}' matches no parameter")
            chosen |= hit
    else:
        unknown = [n for n in default if n not in canon]
        if unknown:
            raise ValueError(f"adapter default names unknown parameter '{unknown[0]}'")
        chosen = {canon[n] for n in default}
    for pattern in exclude:
        hit = {canon[n] for n in canon if matches(pattern, n)}
        if not hit:
            raise UserError(f"{field}.exclude: pattern '{pattern}' matches no parameter")
        chosen -= hit
    if not biases:
        chosen = {n for n in chosen if not is_bias(n)}
    names = [n for n in order if n in chosen]
    if not names:
        raise UserError(f"{field}: the prunable scope is empty (check include/exclude/biases)")
    return names


def rate_overrides(names: Sequence[str], rates: dict[str, float], field: str = "prune.rates") -> dict[str, float]:
    """Name -> rate for parameters matched by a per-pattern override (first pattern wins)."""
    out: dict[str, float] = {}
    for pattern, rate in rates.items():
        hit = [n for n in names if matches(pattern, n)]
        if not hit:
            raise UserError(f"{field}: pattern '{pattern}' matches no prunable parameter")
        for n in hit:
            out.setdefault(n, rate)
    return out
