"""The ``rl:`` section of a task file (see docs/rl.md).

Everything that can be checked without building an environment is checked here, so a typo fails
when the task file is loaded (one line naming the field), not minutes into a run. The agents
files and their conversion to SB3 arguments: :mod:`multiticket.adapters.sb3_hyper`; environment
ids and their keywords: :mod:`multiticket.adapters.sb3_env_spec`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from multiticket.adapters.sb3_algos import ALGOS, ROLES
from multiticket.adapters.sb3_env_spec import action_space_problem, env_kwargs_problem, env_spec
from multiticket.adapters.sb3_hyper import LIBRARIES, agents_entry, check_keys, override_import_paths, resolve_hyper
from multiticket.adapters.user_code import (
    check_module_name,
    import_module,
    imported_from,
    recorded_module_dir,
    search_folder,
    task_folder,
    user_code_allowed,
)
from multiticket.schema import AlwaysHashed, NotHashed, Strict


def _error(message: str) -> PydanticCustomError:
    """A validation error whose message is exactly ``message`` (no "Value error," prefix)."""
    return PydanticCustomError("value_error", "{message}", {"message": message})


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

