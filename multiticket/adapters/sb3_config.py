"""The ``rl:`` section of a task file and the RL-Zoo style hyperparameter files (``agents/``).

Everything that can be checked without building an environment is checked here, so a typo fails
when the task file is loaded (one line naming the field), not minutes into a run.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import LinearSchedule
from torch import nn, optim

from multiticket.adapters.sb3_algos import ALGOS, ROLES
from multiticket.adapters.user_code import (
    check_module_name,
    import_module,
    import_object,
    imported_from,
    recorded_module_dir,
    search_folder,
    task_folder,
    user_code_allowed,
)
from multiticket.paths import AGENTS_DIR
from multiticket.schema import AlwaysHashed, NotHashed, Strict

#: keys of an agents entry that the adapter consumes itself (RL-Zoo conventions)
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


def _error(message: str) -> PydanticCustomError:
    """A validation error whose message is exactly ``message`` (no "Value error," prefix)."""
    return PydanticCustomError("value_error", "{message}", {"message": message})


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


class Section(Strict):
    """The ``rl:`` section of a task file (see docs/rl.md)."""

    module_dir: NotHashed[str | None] = Field(
        None,
        description="folder searched first for your modules (rl.imports, module:EnvId, classes by import path); "
        "default: the task file's folder. config.yaml records the folder they were imported from (absolute), "
        "when the section names any; not hashed, so a moved project keeps its run names",
    )
    imports: list[str] = Field(
        default_factory=list,
        description="modules imported before anything else, in the driver and in every worker (they "
        "register custom environments with Gymnasium); hashed only when set",
    )
    env: AlwaysHashed[str] = Field(description="Gymnasium environment id, e.g. CartPole-v1 or ALE/Pong-v5")
    algo: AlwaysHashed[Literal["ppo", "a2c", "dqn", "sac", "td3"]]
    hyperparams: AlwaysHashed[str | None] = Field(None, description="entry of agents/<algo>.yaml; default: the env id")
    overrides: AlwaysHashed[dict[str, Any]] = Field(default_factory=dict, description="merged over the agents entry")
    env_kwargs: AlwaysHashed[dict[str, Any]] = Field(default_factory=dict, description="passed to gymnasium.make")
    env_attrs: dict[str, float | int | bool] = Field(
        default_factory=dict,
        description="constants set on every environment after gymnasium.make, for changed physics "
        "(CartPole: length, masspole, masscart, gravity, force_mag, tau); derived ones are recomputed",
    )
    n_eval_episodes: AlwaysHashed[int] = Field(10, ge=1, description="deterministic evaluation episodes per level")
    eval_seed_offset: AlwaysHashed[int] = Field(
        10_000, ge=1, description="episode i of training seed s is seeded offset + s * n_eval_episodes + i")
    eval_every: NotHashed[int | None] = Field(
        None, gt=0, description="env steps between deterministic evaluations recorded in each unit's learning "
        "curve (curve.csv); not hashed: evaluating changes no weight",
    )
    ticket_reward_episodes: AlwaysHashed[int] = Field(
        10, ge=1, le=100, description="last training episodes averaged into ticket_reward (Yu et al.)"
    )
    roles: AlwaysHashed[list[Literal["actor", "critic", "shared"]]] = Field(
        default_factory=lambda: list(ROLES),
        min_length=1,
        description="which parts of the policy are prunable",
    )
    prune_input_layer: AlwaysHashed[bool] = True
    keep_replay_buffer: AlwaysHashed[bool] = Field(
        False, description="off-policy: restore the replay buffer of the rewind point"
    )
    progress_bar: AlwaysHashed[bool] = False
    tensorboard: AlwaysHashed[bool | None] = Field(
        None, description="per-level TensorBoard logs; default: if installed")
    device: AlwaysHashed[Literal["auto", "cpu", "cuda"]] = Field(
        "auto", description="auto: CUDA for CNN policies when the run has a GPU, CPU for MLPs"
    )
    torch_threads: AlwaysHashed[int | None] = Field(None, ge=1, description="default 1 for MLP policies on CPU")
    verbose: AlwaysHashed[int] = Field(0, ge=0, le=2)

    def user_modules(self) -> list[str]:
        """Modules of the user's this section imports (pool workers preload them once; a command
        that opens someone else's run directory refuses them without ``--trust-code``):
        ``rl.imports``, the module of ``rl.env: module:EnvId``, and the modules of the classes
        ``rl.overrides`` names by import path (policy, policy_kwargs classes, env_wrapper), less
        the libraries multiticket itself installs."""
        module, sep, _ = self.env.rpartition(":")
        named = [path.replace(":", ".").rpartition(".")[0] for path in override_import_paths(self.overrides)]
        own = [m for m in named if m.split(".")[0] not in LIBRARIES]
        return list(dict.fromkeys([*self.imports, *([module] if sep else []), *own]))

    @field_validator("algo", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("module_dir")
    @classmethod
    def _module_folder(cls, v: str | None, info: ValidationInfo) -> str | None:
        """Relative to the task file's folder (torch.module_dir's rule); in a run directory's
        ``config.yaml`` (context ``run_dir``) only an absolute folder outside that run directory,
        and nothing when it records none, so reading someone else's run directory never imports
        code it carries."""
        context = info.context if isinstance(info.context, dict) else {}
        try:
            if context.get("run_dir") is not None:
                folder = recorded_module_dir(v, Path(context["run_dir"]))
            else:
                folder = task_folder(v, context.get("task_dir"))
        except ValueError as exc:
            raise _error(str(exc)) from None
        if v is not None and folder is not None and user_code_allowed(info) and not Path(folder).is_dir():
            raise _error(f"no such folder '{folder}'")
        return folder

    @field_validator("imports")
    @classmethod
    def _import(cls, v: list[str], info: ValidationInfo) -> list[str]:
        try:
            for name in v:
                check_module_name(name)
            if user_code_allowed(info):
                _search(info, v)
                for name in v:
                    import_module(name)
        except ValueError as exc:
            raise _error(str(exc)) from None
        return v

    @field_validator("env")
    @classmethod
    def _known_env(cls, v: str, info: ValidationInfo) -> str:
        try:
            if not user_code_allowed(info):  # the form only
                module, sep, _ = v.rpartition(":")
                if sep:
                    check_module_name(module)
                return v
            if "imports" not in info.data:  # they failed (reported): the env may be one they register
                return v
            _search(info, [v.rpartition(":")[0]] if ":" in v else [])
            env_spec(v)
        except ValueError as exc:
            raise _error(str(exc)) from None
        return v

    @field_validator("hyperparams")
    @classmethod
    def _known_entry(cls, v: str | None, info: ValidationInfo) -> str | None:
        algo, env = info.data.get("algo"), info.data.get("env")
        if algo is None or env is None or not user_code_allowed(info) or "imports" not in info.data:
            return v
        try:
            entry = agents_entry(algo, env, v)
            check_keys(algo, list(entry))
        except ValueError as exc:
            raise _error(str(exc)) from None
        return v

    @field_validator("overrides")
    @classmethod
    def _known_overrides(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        algo, env = info.data.get("algo"), info.data.get("env")
        if algo is not None:
            try:
                check_keys(algo, list(v))
                if env is not None and {"hyperparams", "imports"} <= info.data.keys() and user_code_allowed(info):
                    _search(info, [p.replace(":", ".").rpartition(".")[0] for p in override_import_paths(v)])
                    resolve_hyper(algo, env, info.data["hyperparams"], v)  # conversions fail here, not later
            except ValueError as exc:
                raise _error(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _record_module_dir(self, info: ValidationInfo) -> Section:
        """``module_dir`` as ``config.yaml`` records it: where the section's modules were imported
        from (:func:`_imported_folder`) when it names any and they were imported; else only a folder
        the task wrote itself. A run directory's record stays as it is."""
        context = info.context if isinstance(info.context, dict) else {}
        if context.get("run_dir") is not None:
            return self
        written = "module_dir" in self.model_fields_set
        modules = self.user_modules()
        if modules and user_code_allowed(info):
            self.module_dir = _imported_folder(modules, self.module_dir)
        elif not written:
            self.module_dir = None
        return self

    @model_validator(mode="after")
    def _known_env_kwargs(self, info: ValidationInfo) -> Section:
        """A keyword the environment does not take fails here, naming ``rl.env_kwargs.<key>`` (so
        the ``--set`` that gave it) with the closest keyword it takes, not minutes into a run."""
        if self.env_kwargs and user_code_allowed(info):
            problem = env_kwargs_problem(self.env, self.env_kwargs)
            if problem is not None:
                raise ValueError(f"env_kwargs.{problem[0]}: {problem[1]}")
        return self

    @classmethod
    def whole_section_problems(cls, data: dict[str, Any], failed: set[str]) -> list[tuple[str, str]]:
        """Checks that need an environment, run only by the collecting pass (:mod:`multiticket.config.collect`)
        when another error stops loading before the adapter is built (which checks them again on its
        envs): the action space the algorithm needs. Skipped where ``env_wrapper`` may change it."""
        if failed & {"algo", "env", "env_kwargs", "imports"}:
            return []
        algo, env = str(data["algo"]).lower(), str(data["env"])
        try:
            entry = {**agents_entry(algo, env, data.get("hyperparams")), **(data.get("overrides") or {})}
            if "env_wrapper" in entry:
                return []
            kwargs = {**dict(entry.get("env_kwargs") or {}), **(data.get("env_kwargs") or {})}
            with gym.make(env, **kwargs) as made:
                problem = action_space_problem(algo, made.action_space, env)
        except Exception:  # noqa: BLE001 - building the adapter reports it, with its own message
            return []
        return [("algo", problem)] if problem else []

    @field_validator("roles")
    @classmethod
    def _roles_exist(cls, v: list[str], info: ValidationInfo) -> list[str]:
        algo = info.data.get("algo")
        if len(set(v)) != len(v):
            raise _error("roles are listed twice")
        if algo is not None and not set(v) & set(ALGOS[algo].roles):
            raise _error(f"{ALGOS[algo].name} has only the roles {list(ALGOS[algo].roles)}")
        return v


def _search(info: ValidationInfo, modules: list[str]) -> None:
    """Before the section imports ``modules`` (the user's: libraries aside), put ``rl.module_dir``
    first on ``sys.path``, as the torch domain does with ``torch.module_dir``: the modules resolve
    next to the task file (or where ``config.yaml`` recorded), not only from ``PYTHONPATH``."""
    folder = info.data.get("module_dir")
    own = [m for m in modules if m and m.split(".")[0] not in LIBRARIES]
    if folder is not None and own and Path(folder).is_dir():
        search_folder(folder, own)


def _imported_folder(modules: list[str], folder: str | None) -> str | None:
    """The folder the section's modules were imported from: ``folder`` (the task file's, or the
    one the task wrote) when it holds any of them, else the first one's own folder on ``sys.path``."""
    found = [imported_from(m, folder) for m in modules]
    if folder is not None and folder in found:
        return folder
    return next((f for f in found if f is not None), folder)


def action_space_problem(algo: str, space: gym.Space, env_id: str) -> str | None:
    """Why ``algo`` cannot act in ``space`` (the action space of ``env_id``), or None."""
    spec = ALGOS[algo]
    if isinstance(space, spec.action_spaces):
        return None
    allowed = "/".join(s.__name__ for s in spec.action_spaces)
    return f"{spec.name} needs a {allowed} action space; '{env_id}' has {space}"


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
