"""RL-Zoo style hyperparameters: the ``agents/`` files, ``rl.overrides``, and their conversion to
SB3 arguments (:func:`resolve_hyper`): schedules, policy classes, wrappers, noise.

Everything that can be checked without building an environment is checked here or in the
section (:mod:`multiticket.adapters.sb3_config`), so a typo fails when the task file is loaded.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import LinearSchedule
from torch import nn, optim

from multiticket.adapters.sb3_algos import ALGOS
from multiticket.adapters.sb3_env_spec import is_atari
from multiticket.adapters.user_code import import_object
from multiticket.paths import AGENTS_DIR

ADAPTER_KEYS = (
    "policy",
    "n_envs",
    "n_timesteps",
    "normalize",
    "frame_stack",
    "env_wrapper",
    "noise_type",
    "noise_std",
    "env_kwargs",
)
#: constructor arguments the adapter sets itself; a task may not override them
RESERVED = ("env", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model", "policy")
#: hyperparameters given as RL-Zoo "lin_<start>" strings become linear schedules to 0
SCHEDULED = ("learning_rate", "clip_range", "clip_range_vf")

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leakyrelu": nn.LeakyReLU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}
OPTIMIZERS: dict[str, type[optim.Optimizer]] = {
    "adam": optim.Adam,
    "adamw": optim.AdamW,
    "rmsprop": optim.RMSprop,
    "sgd": optim.SGD,
    "rmsproptflike": RMSpropTFLike,
}



def agents_file(algo: str) -> Path:
    return AGENTS_DIR / f"{algo}.yaml"


@functools.cache
def _agents(algo: str) -> dict[str, dict[str, Any]]:
    path = agents_file(algo)
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return {str(k): dict(v or {}) for k, v in data.items()}


def agents_key(algo: str, env_id: str, key: str | None) -> str | None:
    """The entry of agents/<algo>.yaml for ``env_id``: ``key`` (an error if missing), else the
    entry named like the env id (``Reach-v0`` for ``module:Reach-v0`` too), else ``atari`` for
    ALE games, else None (SB3's defaults)."""
    entries = _agents(algo)
    if key is not None:
        if key not in entries:
            close = difflib.get_close_matches(key, list(entries), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"no entry '{key}' in agents/{algo}.yaml{hint}")
        return key
    name = env_id.rpartition(":")[2]
    if name in entries:
        return name
    if is_atari(env_id) and "atari" in entries:
        return "atari"
    return None


def agents_entry(algo: str, env_id: str, key: str | None) -> dict[str, Any]:
    """The hyperparameters of :func:`agents_key`'s entry ({} for SB3's defaults)."""
    found = agents_key(algo, env_id, key)
    return {} if found is None else dict(_agents(algo)[found])


@functools.cache
def algo_parameters(algo: str) -> tuple[str, ...]:
    """Constructor arguments of the SB3 class that a task may set."""
    params = inspect.signature(ALGOS[algo].cls.__init__).parameters
    return tuple(p for p in params if p not in ("self", *RESERVED))


def check_keys(algo: str, keys: list[str]) -> None:
    known = (*algo_parameters(algo), *ADAPTER_KEYS)
    for k in keys:
        if k in RESERVED and k != "policy":
            raise ValueError(f"'{k}' is set by multiticket, not by hyperparameters")
        if k not in known:
            close = difflib.get_close_matches(k, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown {ALGOS[algo].name} hyperparameter '{k}'{hint}")


@dataclass
class Hyper:
    """An agents entry turned into SB3 objects."""

    policy: str = "MlpPolicy"
    #: a policy class by import path (``policy: mypkg.mod.MyPolicy``), None for SB3's aliases
    policy_class: type[BasePolicy] | None = None
    n_envs: int = 1
    normalize: dict[str, Any] | None = None
    frame_stack: int | None = None
    noise: tuple[str, float] | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    #: ``env_wrapper``: Gymnasium wrappers (class, kwargs), innermost first, applied over Monitor
    wrappers: list[tuple[type[gym.Wrapper], dict[str, Any]]] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        return LinearSchedule(float(value[4:]), 0.0, 1.0)
    return value


#: classes ``policy_kwargs`` may name: key -> (short names, prefix dropped before lookup, base class)
POLICY_CLASSES: dict[str, tuple[dict[str, type], str, type]] = {
    "activation_fn": (ACTIVATIONS, "nn.", nn.Module),
    "optimizer_class": (OPTIMIZERS, "torch.optim.", optim.Optimizer),
    "features_extractor_class": ({}, "", BaseFeaturesExtractor),
}


def _named_class(key: str, value: str) -> type:
    """A short name of the table (``relu``, ``adam``) or a class by import path."""
    table, prefix, base = POLICY_CLASSES[key]
    name = value.lower().removeprefix(prefix)
    if name in table:
        return table[name]
    if "." not in value and ":" not in value:
        raise ValueError(f"policy_kwargs.{key}: unknown '{value}' ({list(table)}, or an import path mypkg.mod.Name)")
    try:
        return import_object(value, base)
    except ValueError as exc:
        raise ValueError(f"policy_kwargs.{key}: {exc}") from None


def _policy_kwargs(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError("policy_kwargs must be a mapping (RL-Zoo's dict(...) strings are not evaluated)")
    out = dict(raw)
    for key in POLICY_CLASSES:
        if isinstance(out.get(key), str):
            out[key] = _named_class(key, out[key])
    return out


def _policy(value: str) -> tuple[str, type[BasePolicy] | None]:
    """``policy``: an alias of the algorithm (MlpPolicy, ...) or an SB3 policy class by import path."""
    if "." not in value and ":" not in value:
        return value, None
    try:
        return value, import_object(value, BasePolicy, "policy class")
    except ValueError as exc:
        raise ValueError(f"policy: {exc}") from None


#: packages multiticket installs, whose classes a task may name without running anyone's own code
LIBRARIES = frozenset({"stable_baselines3", "sb3_contrib", "gymnasium", "torch", "ale_py"})


def override_import_paths(overrides: dict[str, Any]) -> list[str]:
    """The classes ``rl.overrides`` names by import path: ``policy``, ``policy_kwargs`` classes
    and ``env_wrapper`` entries (short names such as ``MlpPolicy`` or ``relu`` are none)."""
    found: list[Any] = [overrides.get("policy")]
    kwargs = overrides.get("policy_kwargs")
    if isinstance(kwargs, dict):
        found += [kwargs.get(key) for key in POLICY_CLASSES]
    if overrides.get("env_wrapper") is not None:
        with contextlib.suppress(ValueError):
            found += [path for path, _ in _wrapper_entries(overrides["env_wrapper"])]
    return [v for v in found if isinstance(v, str) and ("." in v or ":" in v)]


def _wrapper_entries(spec: Any) -> list[tuple[str, dict[str, Any]]]:
    """RL-Zoo's ``env_wrapper`` forms: a path, ``{path: kwargs}``, or a list of either."""
    items = spec if isinstance(spec, list) else [spec]
    out = []
    for item in items:
        if isinstance(item, dict) and len(item) == 1:
            (path, kwargs), = item.items()
            kwargs = {} if kwargs is None else kwargs
        else:
            path, kwargs = item, {}
        if not isinstance(path, str) or not isinstance(kwargs, dict):
            raise ValueError(f"env_wrapper: expected an import path or {{path: {{kwargs}}}}, got {item!r}")
        out.append((path, dict(kwargs)))
    return out


def resolve_wrappers(spec: Any) -> list[tuple[type[gym.Wrapper], dict[str, Any]]]:
    """The ``env_wrapper`` key (agents files and ``rl.overrides`` alike) as (class, kwargs) pairs."""
    out = []
    for path, kwargs in _wrapper_entries(spec):
        try:
            out.append((import_object(path, gym.Wrapper, "Gymnasium wrapper"), kwargs))
        except ValueError as exc:
            raise ValueError(f"env_wrapper: {exc}") from None
    return out


def atari_wrapped(wrappers: list[tuple[type[gym.Wrapper], dict[str, Any]]]) -> list[tuple[type[gym.Wrapper], dict[str, Any]]]:
    """An ALE game always gets SB3's ``AtariWrapper`` (first, as ``make_atari_env`` applies it),
    with the kwargs an ``env_wrapper`` entry gives it."""
    if any(issubclass(cls, AtariWrapper) for cls, _ in wrappers):
        return wrappers
    return [(AtariWrapper, {}), *wrappers]


def resolve_hyper(
    algo: str,
    env: str,
    hyperparams: str | None,
    overrides: dict[str, Any],
    env_kwargs: dict[str, Any] | None = None,
) -> Hyper:
    """Merge the agents entry and the overrides; convert RL-Zoo conventions to SB3 arguments."""
    raw = agents_entry(algo, env, hyperparams)
    raw.update(overrides)
    hyper = Hyper()
    hyper.policy, hyper.policy_class = _policy(str(raw.pop("policy", "CnnPolicy" if is_atari(env) else "MlpPolicy")))
    hyper.n_envs = int(raw.pop("n_envs", 1))
    raw.pop("n_timesteps", None)  # train.steps decides the budget
    hyper.env_kwargs = {**dict(raw.pop("env_kwargs", None) or {}), **(env_kwargs or {})}
    wrappers = raw.pop("env_wrapper", None)
    hyper.wrappers = resolve_wrappers(wrappers) if wrappers is not None else []
    if is_atari(env):
        hyper.wrappers = atari_wrapped(hyper.wrappers)
    norm = raw.pop("normalize", None)
    if norm:
        if not isinstance(norm, dict | bool):
            raise ValueError(f"normalize: expected true/false or a mapping, got {norm!r}")
        hyper.normalize = dict(norm) if isinstance(norm, dict) else {}
    frame_stack = raw.pop("frame_stack", None)
    hyper.frame_stack = int(frame_stack) if frame_stack else None
    noise_type, noise_std = raw.pop("noise_type", None), raw.pop("noise_std", None)
    if noise_type is not None:
        if noise_type not in ("normal", "ornstein-uhlenbeck"):
            raise ValueError(f"noise_type: expected 'normal' or 'ornstein-uhlenbeck', got '{noise_type}'")
        hyper.noise = (noise_type, float(noise_std if noise_std is not None else 0.1))
    if "policy_kwargs" in raw:
        raw["policy_kwargs"] = _policy_kwargs(raw["policy_kwargs"])
    if isinstance(raw.get("train_freq"), list):
        raw["train_freq"] = tuple(raw["train_freq"])
    for key in SCHEDULED:
        if key in raw:
            raw[key] = _schedule(raw[key])
    hyper.kwargs = raw
    return hyper
