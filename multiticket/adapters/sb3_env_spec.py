"""Gymnasium environment ids of the ``rl:`` section: lookup (``module:EnvId`` included), the
constructor behind an id, the ``env_kwargs`` it takes, and what an algorithm's action space needs.

Checked when the task loads, so a misspelled id or keyword fails in one line, not minutes into a run.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any

import gymnasium as gym

from multiticket.adapters.sb3_algos import ALGOS
from multiticket.adapters.user_code import import_module


@functools.cache
def register_atari() -> bool:
    """Register the ALE environments with Gymnasium (``ALE/Pong-v5``); False without ale-py."""
    try:
        import ale_py
    except ImportError:
        return False
    gym.register_envs(ale_py)
    return True


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, or of ``module:EnvId`` after importing ``module``
    (Gymnasium's own syntax, as ``gymnasium.make`` reads it); ``ValueError`` with a hint."""
    module, sep, name = env_id.rpartition(":")
    if sep:
        import_module(module)
    try:
        return gym.spec(name)
    except gym.error.Error:
        register_atari()  # ALE ids exist only once ale_py has registered them
    try:
        return gym.spec(name)
    except gym.error.Error as exc:
        close = difflib.get_close_matches(name, list(gym.registry), n=1)
        own = "registered by a module of yours? name it in rl.imports, or write rl.env: module:EnvId"
        hint = f" (did you mean '{close[0]}'? {own})" if close else f" ({own})"
        detail = f": {exc}" if isinstance(exc, gym.error.VersionNotFound) else ""
        raise ValueError(f"unknown Gymnasium environment '{name}'{hint}{detail}") from None


def env_creator(env_id: str) -> Any:
    """What ``gymnasium.make`` calls for ``env_id`` (its class or function), loaded as Gymnasium
    loads it; ``ValueError`` when it cannot be found."""
    spec = env_spec(env_id)
    if callable(spec.entry_point):
        return spec.entry_point
    try:
        return gym.envs.registration.load_env_creator(str(spec.entry_point))
    except Exception as exc:  # noqa: BLE001 - the module of a user's entry point may raise anything
        raise ValueError(f"cannot load the entry point of '{env_id}': {type(exc).__name__}: {exc}") from None


#: keywords ``gymnasium.make`` takes itself, besides those it passes to the environment
MAKE_KEYWORDS = tuple(p for p in inspect.signature(gym.make).parameters if p not in ("id", "kwargs"))


def accepted_env_kwargs(env_id: str) -> tuple[str, ...] | None:
    """The ``env_kwargs`` keywords ``gymnasium.make(env_id, ...)`` accepts: the constructor's
    parameters, the registered kwargs and ``make``'s own (``max_episode_steps``); None when the
    constructor takes ``**kwargs`` or cannot be inspected (then the environment itself decides)."""
    try:
        params = list(inspect.signature(env_creator(env_id)).parameters.values())
        registered = list(env_spec(env_id).kwargs)
    except (ValueError, TypeError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return tuple(dict.fromkeys([*named, *registered, *MAKE_KEYWORDS]))


def env_kwargs_problem(env_id: str, kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """(key, why) for the first ``env_kwargs`` key ``env_id`` does not take, with the closest one
    it does: a misspelling fails when the task loads, naming the key (and its ``--set``)."""
    accepted = accepted_env_kwargs(env_id)
    if accepted is None:
        return None
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(str(key), accepted, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            return str(key), f"{env_id} takes no keyword '{key}' ({hint}it takes: {', '.join(accepted)})"
    return None


def is_atari(env_id: str) -> bool:
    return "ale_py" in str(env_spec(env_id).entry_point)


def action_space_problem(algo: str, space: gym.Space, env_id: str) -> str | None:
    """Why ``algo`` cannot act in ``space`` (the action space of ``env_id``), or None."""
    spec = ALGOS[algo]
    if isinstance(space, spec.action_spaces):
        return None
    allowed = "/".join(s.__name__ for s in spec.action_spaces)
    return f"{spec.name} needs a {allowed} action space; '{env_id}' has {space}"

