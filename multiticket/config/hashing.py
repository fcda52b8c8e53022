"""The run hash: the resolved config (defaults filled in) names the run directory ``<name>-<hash>``.

Which keys count is declared per field (``AlwaysHashed`` / ``NotHashed`` / unmarked:
:mod:`multiticket.schema`), on the common keys and on the domain's section alike, so adding a key
that changes no result (an evaluation interval) keeps every existing run directory's name.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from pydantic import BaseModel

from multiticket.config.rules import TaskConfig
from multiticket.config.sections import DEFAULTS_KEY
from multiticket.schema import legacy_values, not_hashed_paths


def config_hash(resolved: dict[str, Any], section: type[BaseModel] | None = None) -> str:
    """8 hex digits of the SHA-256 of the canonical JSON of a resolved config without its
    ``NotHashed`` keys (those of the domain's ``section`` model too, when given), its ``Since``
    keys at their legacy value and its :data:`~multiticket.config.sections.DEFAULTS_KEY` block (a
    record of the defaults)."""
    data = copy.deepcopy({k: v for k, v in resolved.items() if k != DEFAULTS_KEY})
    domain = str(resolved.get("domain"))
    paths = list(not_hashed_paths(TaskConfig))
    legacy = dict(legacy_values(TaskConfig))
    if section is not None:
        paths += [(domain, *path) for path in not_hashed_paths(section)]
        legacy |= {(domain, *path): value for path, value in legacy_values(section).items()}
    for path in paths:
        _parent(data, path).pop(path[-1], None)
    for path, value in legacy.items():
        parent = _parent(data, path)
        if path[-1] in parent and parent[path[-1]] == value:
            del parent[path[-1]]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def _parent(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """The mapping that holds ``path``'s last key (an empty one where the path is absent)."""
    node = data
    for p in path[:-1]:
        node = node.get(p) or {}
    return node
