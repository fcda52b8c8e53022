"""Bounded reading of YAML and JSON text: every task file, ``--set`` value, sweep file and run
directory file is parsed through here, so no input can exhaust memory or time before validation.

A file is refused before it is read whole when it is larger than its limit, or not UTF-8 text.
A document is refused when it holds more values than its limit with YAML aliases expanded (a
"billion laughs" alias bomb parses cheaply but explodes in whatever walks it next), when it is
nested deeper than :data:`MAX_DEPTH`, or when it holds an integer of more digits than Python
converts (``ValueError: Exceeds the limit (4300 digits)``). Each refusal is one
:class:`~multiticket.errors.UserError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from multiticket.errors import UserError

#: the largest task or sweep file read (a task file is a few KB)
MAX_TASK_BYTES = 1 << 20
#: the most values (aliases expanded) a task or config document may hold
MAX_NODES = 20_000
#: the deepest nesting a document may have (a task file nests four or five levels)
MAX_DEPTH = 64


def read_bounded(path: Path, limit: int) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes; UserError otherwise."""
    try:
        if not path.is_file():
            raise UserError(f"{path}: not a regular file")
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise UserError(f"{path}: larger than {limit} bytes; not a file multiticket reads")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def check_shape(data: Any, where: str, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """``data`` when it holds at most ``max_nodes`` values (aliases expanded) nested at most
    ``max_depth`` deep; the walk stops as soon as either is exceeded."""
    stack, seen = [(data, 0)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise UserError(f"{where}: more than {max_nodes} values (YAML aliases expanded)")
        if depth > max_depth:
            raise UserError(f"{where}: nested more than {max_depth} levels deep")
        if isinstance(node, dict):
            stack.extend((x, depth + 1) for pair in node.items() for x in pair)
        elif isinstance(node, list):
            stack.extend((x, depth + 1) for x in node)
    return data


def parse_yaml(text: str, where: str, max_nodes: int = MAX_NODES) -> Any:
    """A YAML document (safe loader) checked by :func:`check_shape`; one-line UserError otherwise."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UserError(f"{where}: YAML error{at}: {getattr(exc, 'problem', None) or 'invalid YAML'}") from None
    except RecursionError:
        raise UserError(f"{where}: nested too deeply") from None
    except ValueError as exc:  # an integer beyond Python's digit limit, a bad timestamp
        raise UserError(f"{where}: {str(exc).splitlines()[0][:200]}") from None
    return check_shape(data, where, max_nodes)


def read_yaml(path: Path, limit: int = MAX_TASK_BYTES, max_nodes: int = MAX_NODES) -> Any:
    """:func:`parse_yaml` of a bounded file."""
    return parse_yaml(read_bounded(path, limit), str(path), max_nodes)


def parse_json(text: str, where: str) -> Any:
    """A JSON document checked by :func:`check_shape` (no node limit: records hold curves)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: invalid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    except RecursionError:
        raise UserError(f"{where}: nested too deeply") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise UserError(f"{where}: {str(exc).splitlines()[0][:200]}") from None
    return check_shape(data, where, max_nodes=10**7)
