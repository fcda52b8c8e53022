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
from multiticket.schema import not_hashed_paths


def config_hash(resolved: dict[str, Any], section: type[BaseModel] | None = None) -> str:
    """8 hex digits of the SHA-256 of the canonical JSON of a resolved config without its
    ``NotHashed`` keys (those of the domain's ``section`` model too, when given) and its
    :data:`~multiticket.config.sections.DEFAULTS_KEY` block (a record of the defaults)."""
    data = copy.deepcopy({k: v for k, v in resolved.items() if k != DEFAULTS_KEY})
    paths = list(not_hashed_paths(TaskConfig))
    if section is not None:
        paths += [(str(resolved.get("domain")), *path) for path in not_hashed_paths(section)]
    for path in paths:
        node = data
        for p in path[:-1]:
            node = node.get(p) or {}
        node.pop(path[-1], None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]
