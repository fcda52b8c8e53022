"""Deterministic seeds derived from names, so every unit's randomness is reproducible alone."""

from __future__ import annotations

import hashlib
import json

import torch


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any JSON-able parts, e.g. ``derive_seed(seed, "random_mask", level)``."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))
