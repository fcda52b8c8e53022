"""Reading the ``.pt`` state files of run directories written before the safetensors format.

Older multiticket versions pickled rewind points (``state.pt``), checkpoints (``state.pt``,
``core.pt``), the prune-only controls' dense state (``final_state.pt``) and instability state
(``state.pt``) with ``torch.save``. They are read with ``torch.load(weights_only=True)``, which
unpickles nothing but tensors, containers and an allowlist of types: numpy arrays, dtypes and
scalars, numpy's generator and bit-generator constructors, plus the types each adapter registers
with :func:`allow_legacy_types` (SB3: running statistics, replay buffers, spaces). A file holding
anything else is refused with one line, unless the user trusts it: ``--trust-checkpoints`` (or
``MULTITICKET_TRUST_CHECKPOINTS=1``) allows the old unrestricted ``torch.load``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multiticket.errors import UserError

TRUST_ENV = "MULTITICKET_TRUST_CHECKPOINTS"
_EXTRA: list[Any] = []


def trust_checkpoints(on: bool = True) -> None:
    """Allow the unrestricted (code-executing) load of legacy ``.pt`` files in this process and
    the workers it starts (the flag travels as an environment variable)."""
    if on:
        os.environ[TRUST_ENV] = "1"
    else:
        os.environ.pop(TRUST_ENV, None)


def trusted() -> bool:
    return os.environ.get(TRUST_ENV, "") not in ("", "0")


def allow_legacy_types(types: Iterable[Any]) -> None:
    """Types (classes or functions) an adapter's legacy state files hold, added to the allowlist."""
    _EXTRA.extend(t for t in types if t not in _EXTRA)


def _numpy_types() -> list[Any]:
    """numpy arrays, dtypes, scalars and random generators, under numpy 1's and 2's module names."""
    from numpy.random import _pickle as np_random_pickle

    core = getattr(np, "_core", None) or np.core
    reconstruct, scalar = core.multiarray._reconstruct, core.multiarray.scalar
    found: list[Any] = [
        reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"),
        scalar, (scalar, "numpy.core.multiarray.scalar"), np.ndarray, np.dtype,
        np_random_pickle.__generator_ctor, np_random_pickle.__bit_generator_ctor,  # type: ignore[attr-defined,unused-ignore]
        np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64, np.random.Generator,
        np.random.SeedSequence,
    ]  # fmt: skip
    unpickle_seq = getattr(np.random.bit_generator, "__pyx_unpickle_SeedSequence", None)
    if unpickle_seq is not None:
        found.append(unpickle_seq)
    found += [type(np.dtype(c)) for c in "?bhilqBHILQefdg"]
    return found


def load_legacy(path: Path) -> Any:
    """A legacy ``torch.save`` file through the allowlist (or unrestricted if trusted)."""
    if trusted():
        return torch.load(path, weights_only=False, map_location="cpu")
    try:
        with torch.serialization.safe_globals([*_numpy_types(), *_EXTRA]):
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        names = _unsafe(path)
        if not names:
            raise UserError(f"{path}: cannot be read (not a state file of multiticket, or corrupt)") from None
        listed = ", ".join(names[:3]) + (" and more" if len(names) > 3 else "")
        raise UserError(
            f"{path}: written by an older multiticket and holds {listed}, which is not unpickled from a "
            "run directory; if you trust where this directory comes from, rerun with --trust-checkpoints"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line, never a traceback
        raise UserError(f"{path}: cannot be read ({type(exc).__name__})") from None


def _unsafe(path: Path) -> list[str]:
    """The globals of ``path`` outside the allowlist, sorted (found without unpickling anything)."""
    allowed = set()
    for t in [*_numpy_types(), *_EXTRA]:
        allowed.add(t[1] if isinstance(t, tuple) else f"{t.__module__}.{t.__qualname__}")
    try:
        names = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) if g not in allowed]
    except Exception:  # noqa: BLE001 - not a torch file at all
        return []
    return sorted(names)
