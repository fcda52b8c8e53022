"""One line per problem: a pydantic error turned into ``(field, why)``, with a spelling hint.

Loading stops at the first error (:func:`field_error`), the collecting pass reports them all
(:mod:`multiticket.config.collect`); both name fields the same way, through :func:`error_field`.
A cross-field rule's ``"<field>: <why>"`` message names its own field (:func:`named_field`).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from multiticket.config.rules import TaskConfig
from multiticket.core.registry import domains
from multiticket.errors import UserError

#: the models validated so far, by title: an unknown key's hint lists the keys of its model
_MODEL_REGISTRY: dict[str, type[BaseModel]] = {}


def register_model(model: type[BaseModel]) -> None:
    """Remember ``model`` under its title, so that an unknown key in it gets a spelling hint."""
    _MODEL_REGISTRY[model.__name__] = model


def named_field(message: str, prefix: str = "") -> tuple[str, str] | None:
    """(field, why) of a cross-field rule's ``"<field>: <why>"`` message, or None."""
    head, sep, rest = message.partition(": ")
    return (f"{prefix}{head}", rest) if sep and re.fullmatch(r"[A-Za-z_][\w.]*", head) else None


def error_field(err: Any, model_title: str, prefix: str = "") -> tuple[str, str]:
    """(field, message) of one pydantic error, with a spelling hint for an unknown key."""
    loc = ".".join(str(p) for p in err["loc"])
    field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
        known = _known_keys(model_title, err["loc"])
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        if close:
            msg += f" (did you mean '{close[0]}'?)"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "value_error":
        msg = str(err.get("ctx", {}).get("error", "")) or msg.removeprefix("Value error, ")
        named = named_field(msg, prefix) if not loc else None  # a cross-field check names its field
        if named:
            field, msg = named
    return field, msg


def field_error(source: Path | str, exc: ValidationError, prefix: str = "") -> UserError:
    """One line naming the file and the first failing field, with a spelling hint."""
    field, msg = error_field(exc.errors()[0], exc.title, prefix)
    return UserError(f"{source}: {field}: {msg}")


def _known_keys(model_title: str, loc: tuple[Any, ...]) -> list[str]:
    """The keys of the (sub)model where an unknown key ``loc`` sits; [] when that model is not known."""
    model = _MODEL_REGISTRY.get(model_title)
    for part in loc[:-1]:
        if model is None:
            return []
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    if model is TaskConfig:  # a domain's section is a top-level key too
        return [*model.model_fields, *domains]
    return list(model.model_fields) if model else []
