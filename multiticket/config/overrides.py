"""``--set key.path=value`` overrides (and the Python API's ``set=`` mapping) applied to a task's data.

Values are parsed as YAML (bounded like a task file: :func:`multiticket.core.textfile.check_shape`),
so ``--set toy.hidden=[32,16]`` gives a list; an override is applied before validation, so every
check of the task file applies to it too.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from multiticket.core.textfile import check_shape
from multiticket.errors import UserError

#: the longest --set item (key=value)
MAX_OVERRIDE = 100_000


def _parse_override(item: str) -> tuple[list[str], Any]:
    """(key path, value) of one ``key.path=value``; a UserError naming the ``--set`` when malformed."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set: expected key.path=value, got '{item[:100]}'")
    where = f"--set {key.strip()[:100]}"
    if len(item) > MAX_OVERRIDE:
        raise UserError(f"{where}: longer than {MAX_OVERRIDE} characters")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise UserError(f"{where}: nested too deeply") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise UserError(f"{where}: {str(exc).splitlines()[0][:200]}") from None
    return [k for k in key.strip().split(".")], check_shape(value, where)


def apply_overrides(data: dict[str, Any], overrides: list[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars/lists), or a mapping
    ``{"key.path": value}`` (values taken as they are; the Python API's ``set=``)."""
    data = copy.deepcopy(data)
    if isinstance(overrides, Mapping):
        items = [(str(k).strip().split("."), v, f"{k}={v!r}") for k, v in overrides.items()]
    else:
        items = [(*_parse_override(item), item) for item in overrides]
    for path, value, item in items:
        node = data
        for k in path[:-1]:
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                raise UserError(f"--set {item}: '{k}' is not a section")
            node = nxt
        node[path[-1]] = value
    return data
