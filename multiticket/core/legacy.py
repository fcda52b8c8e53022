"""What run directories written by older versions hold or lack: ``.pt`` state files, domain facts.

**State files.** Run directories written before the safetensors format hold ``.pt`` files.

Older multiticket versions pickled rewind points (``state.pt``), checkpoints (``state.pt``,
``core.pt``), the prune-only controls' dense state (``final_state.pt``) and instability state
(``state.pt``) with ``torch.save``. They are read with ``torch.load(weights_only=True)``, which
unpickles nothing but tensors, containers and an allowlist of types: numpy arrays, dtypes and
scalars, numpy's generator and bit-generator constructors, plus the types each adapter registers
with :func:`allow_legacy_types` (SB3: running statistics, replay buffers, spaces). A file holding
anything else is refused with one line, unless the user trusts it: ``--trust-checkpoints`` (or
``MULTITICKET_TRUST_CHECKPOINTS=1``) allows the old unrestricted ``torch.load``.

**Domain facts.** A run recorded before adapters declared their domain's facts
(:mod:`multiticket.core.facts`) has none in its ``provenance.json``: :func:`legacy_facts` and
:func:`legacy_layer_roles` give the report what it showed for such a run then, from the domain's
name and its section of ``config.yaml``. This table is the only place where that is decided by a
domain's name; it is frozen (facts of new runs come from their adapters) and knows only the
built-in domains, a third-party domain's old run gets the generic defaults.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multiticket.core.facts import MAX_FACT, MAX_LAYERS, DomainFacts
from multiticket.core.name_roles import name_role
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


# -- domain facts of runs recorded before adapters declared them ----------------------------------

#: step unit of the built-in domains (``train.steps`` counts env timesteps in rl, optimizer steps else)
LEGACY_STEP_UNITS = {"rl": "env steps", "nlp": "optimizer steps", "toy": "optimizer steps",
                     "torch": "optimizer steps"}
#: built-in domains whose layers had roles by name (:func:`multiticket.core.name_roles.name_role`)
LEGACY_NAMED_ROLES = ("nlp",)


def _text(value: object) -> str:
    """A value of an untrusted config as bounded text: strings as they are, the rest as JSON."""
    shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return shown if len(shown) <= MAX_FACT else shown[:MAX_FACT - 2] + " …"


def _header(domain: str, s: Mapping[str, object], chosen: object) -> tuple[dict[str, str], str | None]:
    """(header rows, identity) as the report showed them: algorithm and environment (rl), model
    and dataset (nlp; ``chosen``: the model the adapter recorded choosing), nothing else."""
    if domain == "rl":
        algo, env = _text(s.get("algo", "?")).upper(), _text(s.get("env", "?"))
        identity = f"{algo}, {env}" if s.get("algo") is not None else None
        return {"algorithm": algo, "environment": env}, _text(identity) if identity else None
    if domain == "nlp":
        model = s.get("pretrained") or s.get("model") or chosen or "the task's default"
        config = f" ({_text(s['dataset_config'])})" if s.get("dataset_config") else ""
        rows = {"model": _text(f"{_text(model)}" + (" (pretrained)" if s.get("pretrained") else " (random init)")),
                "dataset": _text(_text(s.get("dataset", "?")) + config)}
        named = s.get("pretrained") or s.get("model") or "default model"
        identity = f"{_text(named)}, {_text(s.get('dataset'))}" if s.get("dataset") is not None else None
        return rows, _text(identity) if identity else None
    return {}, None


def legacy_facts(domain: str, section: object, hyperparameters: object = None) -> DomainFacts:
    """The domain facts of a run recorded before they were (see the module docstring): its
    ``domain``, its domain ``section`` and the ``hyperparameters`` of its ``provenance.json``
    (None: none), all as read from the untrusted run directory. ``layer_roles`` stays None:
    :func:`legacy_layer_roles` needs the layer names."""
    s = section if isinstance(section, dict) else {}
    chosen = hyperparameters.get("model") if isinstance(hyperparameters, dict) else None
    header, identity = _header(domain, s, chosen)
    given = s.get("obs_names")
    names = [str(x)[:200] for x in given[:MAX_LAYERS]] if isinstance(given, list) else []
    return DomainFacts(step_unit=LEGACY_STEP_UNITS.get(domain, "steps"),
                       eval_every_key=f"{domain}.eval_every" if domain in LEGACY_STEP_UNITS else None,
                       identity=identity, header=header, input_names=names if domain == "rl" else None)


def legacy_layer_roles(domain: str, names: Iterable[str]) -> dict[str, str]:
    """The roles by name that the report gave the layers of an old run (the rest: by position)."""
    if domain not in LEGACY_NAMED_ROLES:
        return {}
    return {n: role for n in names if (role := name_role(n)) is not None}


def legacy_hyperparameters(domain: str, section: object) -> str | None:
    """Where an old run's hyperparameters came from, for a run with no ``provenance.json``: the
    agents entry and overrides (rl); None: the report lists the domain section itself."""
    s = section if isinstance(section, dict) else {}
    if domain != "rl":
        return None
    entry = _text(s.get("hyperparams") or s.get("env", "?"))
    return f"agents/{_text(s.get('algo', '?'))}.yaml entry '{entry}' + rl.overrides {_text(s.get('overrides') or {})}"
