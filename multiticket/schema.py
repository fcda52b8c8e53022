"""The pydantic base of every task-file model, and the rule that decides which keys name a run.

One module below the core's users: the config (:mod:`multiticket.config`) and the domain sections
that adapters validate both build on it, so an adapter never imports the config.

The hash rule (the run directory is ``<name>-<8 hex of the hashed keys>``), declared per field:

- ``AlwaysHashed[T]``: recorded in ``config.yaml`` and hashed, at its default too. Every key that
  existed when this rule was introduced carries it, so no existing run directory changes name.
- ``Since(legacy)`` (``Annotated[T, Since(v)]``): a key added later whose *default* changes results
  (``nlp.adamw_fused``): recorded, and hashed unless it holds ``legacy``, the behaviour of every run
  made before it. A run directory's config without the key reads as ``legacy``
  (:func:`with_legacy`), so an older run keeps its name and is extended the way it was trained,
  while a new run at the new default gets a new name: no run holds units trained both ways.
- ``NotHashed[T]``: recorded (left out while None) but never hashed: keys that only add work to a
  run or never change a unit's result (``seeds``, ``prune.levels``, ``controls``, ...), so a run
  can be extended in place.
- no mark (every key added from now on): recorded and hashed only while it differs from its
  default, so adding a key never renames the runs made before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


@dataclass(frozen=True)
class HashMark:
    """Annotation metadata of a field's hash rule: ``"always"``, ``"never"`` or ``"since"`` (with
    the value runs made before the key had: ``legacy``; see the module doc)."""

    rule: str
    legacy: Any = None


def Since(legacy: Any) -> HashMark:  # noqa: N802 - reads as a type annotation
    """The hash rule of a key added later whose default changes results: hashed unless ``legacy``."""
    return HashMark("since", legacy)


T = TypeVar("T")
AlwaysHashed = Annotated[T, HashMark("always")]
NotHashed = Annotated[T, HashMark("never")]


def hash_rule(info: FieldInfo) -> str | None:
    """``"always"``, ``"never"``, or None (hashed only when it differs from its default)."""
    marks = [m.rule for m in info.metadata if isinstance(m, HashMark)]
    return marks[-1] if marks else None


def legacy_values(model: type[BaseModel]) -> dict[tuple[str, ...], Any]:
    """Dotted paths (as tuples) of every ``Since`` field of ``model`` and its nested models, with
    the value runs made before that field had."""
    out: dict[tuple[str, ...], Any] = {}
    for name, info in model.model_fields.items():
        marks = [m for m in info.metadata if isinstance(m, HashMark)]
        if marks and marks[-1].rule == "since":
            out[(name,)] = marks[-1].legacy
            continue
        sub = _model_of(info.annotation)
        if sub is not None:
            out |= {(name, *path): value for path, value in legacy_values(sub).items()}
    return out


def with_legacy(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``data`` (a recorded config's section) with each ``Since`` key it lacks set to its legacy
    value: that config was written before the key existed. Nested mappings are copied, not changed."""
    out = dict(data)
    for path, value in legacy_values(model).items():
        node = out
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                break
            node[key] = node = dict(node[key])
        else:
            node.setdefault(path[-1], value)
    return out


def recorded(model: BaseModel) -> dict[str, Any]:
    """The model as ``config.yaml`` records it (JSON values): every field except an unmarked one
    at its default and a not-hashed one that is None; nested models by the same rule."""
    dumped = model.model_dump(mode="json")
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        if info.exclude:
            continue
        value = getattr(model, name)
        rule = hash_rule(info)
        if rule is None and not info.is_required() and value == info.get_default(call_default_factory=True):
            continue
        if rule == "never" and value is None:
            continue
        out[name] = recorded(value) if isinstance(value, BaseModel) else dumped[name]
    return out


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class inside ``annotation`` (``M``, ``M | None``, ``Annotated[M, ...]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, Annotated) or type(annotation).__name__ == "UnionType":
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


@cache
def not_hashed_paths(model: type[BaseModel]) -> tuple[tuple[str, ...], ...]:
    """Dotted paths (as tuples) of every ``NotHashed`` field of ``model`` and its nested models."""
    out: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        if hash_rule(info) == "never":
            out.append((name,))
            continue
        sub = _model_of(info.annotation)
        if sub is not None:
            out += [(name, *path) for path in not_hashed_paths(sub)]
    return tuple(out)
