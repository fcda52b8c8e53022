"""What tells runs apart by their settings: every setting of a recorded config flattened to
``dotted.key -> value``, the settings that differ among runs, and those of them that tell the
runs' results apart (compare's titles and table, sweep titles, an extension's note).

Kept apart from the readers of :mod:`multiticket.rundir`: it reads and checks nothing, it only
compares configs already read and validated (:func:`~multiticket.rundir.read_run_config`). Its
names are importable from :mod:`multiticket.rundir` too.
"""

from __future__ import annotations

import json
from typing import Any

from multiticket.config import DEFAULTS_KEY, TaskConfig
from multiticket.schema import not_hashed_paths

#: the mark of a setting one config has and another lacks
MISSING = "–"
#: keys that never tell two runs' results apart (not hashed: seeds, levels, controls, paths, ...)
UNTELLING = ("name", "description", "module_dir", "eval_every")


def settings(data: dict[str, Any], config: TaskConfig | None = None) -> dict[str, Any]:
    """Every setting of a recorded config as ``dotted.key -> value``: the keys it writes, then its
    ``defaults:`` block's (:data:`~multiticket.config.DEFAULTS_KEY`), then, for a ``config.yaml``
    written before that block, the common keys' defaults from its validated ``config``."""
    block = data.get(DEFAULTS_KEY)
    merged = _merge(config.model_dump(mode="json") if config is not None else {},
                    block if isinstance(block, dict) else {})
    merged = _merge(merged, {k: v for k, v in data.items() if k not in ("versions", DEFAULTS_KEY)})
    return dict(_flatten(merged, ""))


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` over it, mappings merged key by key."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _flatten(value: Any, prefix: str) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf (an empty mapping is one)."""
    if not isinstance(value, dict) or not value:
        return [(prefix, value)] if prefix else []
    return [item for k, v in value.items() for item in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]


def differing(all_settings: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """``(key, value per run)`` of every setting whose value is not the same in all runs (a run
    without the key has :data:`MISSING` there), in the order the keys first appear."""
    keys = list(dict.fromkeys(k for s in all_settings for k in s))
    rows = [(k, [s.get(k, MISSING) for s in all_settings]) for k in keys]
    return [(k, values) for k, values in rows if any(v != values[0] for v in values)]


def telling(key: str) -> bool:
    """Whether a differing ``key`` tells the runs' results apart (so names them in a title): not a
    key the run hash leaves out (seeds, levels, controls, ...), nor a name, description or path."""
    parts = tuple(key.split("."))
    if parts[-1] in UNTELLING:
        return False
    return not any(parts[:len(p)] == p for p in not_hashed_paths(TaskConfig))


def tell_apart(names: list[str], all_settings: list[dict[str, Any]], most: int = 3) -> list[str]:
    """Per run, what tells it apart from the other runs of the same task name: up to ``most``
    ``key=value`` of the :func:`telling` settings that differ among them ('' for a run whose
    name is unique, or whose settings differ in untelling keys only)."""
    rows = [(k, values) for k, values in differing(all_settings) if telling(k)]
    out = []
    for i, name in enumerate(names):
        same = [j for j, n in enumerate(names) if n == name]
        tags = [f"{k}={setting_text(values[i], 40)}" for k, values in rows
                if len(same) > 1 and any(values[j] != values[same[0]] for j in same)]
        out.append(", ".join(tags[:most]) + (" ..." if len(tags) > most else ""))
    return out


def setting_text(value: Any, limit: int = 80) -> str:
    """A setting as short plain text (JSON for what is not a string), at most ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
