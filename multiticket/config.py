"""Task files: loading, ``--set`` overrides, validation with one-line errors, and hashing.

A task file is YAML with the common keys below plus one domain section (``toy:``, ``rl:`` or
``nlp:``) validated by that domain's adapter. Unknown keys are errors. The resolved config (all
defaults filled in) is hashed to name the run directory; keys that only add work to a run
(``seeds``, ``prune.levels``, ``controls``, ``description``) are left out of the hash so a run
can be extended in place.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from multiticket.core.controls import CONTROLS as CONTROL_SPECS
from multiticket.errors import UserError

#: keys that do not change any single unit's result, so they are not part of the run hash
UNHASHED_KEYS = ("seeds", "prune.levels", "controls", "description")

#: controls a task may request (every entry of the core's registry except the ticket chain itself)
CONTROLS = tuple(name for name in CONTROL_SPECS if name != "ticket")
ControlName = Literal[CONTROLS]  # type: ignore[valid-type]


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class TrainSection(Strict):
    steps: int = Field(gt=0, description="training length: env timesteps (rl), optimizer steps (nlp, toy)")


class PruneSection(Strict):
    strategy: Literal["global_magnitude", "layerwise_magnitude", "random"] = "global_magnitude"
    rate: float = Field(0.2, gt=0, lt=1, description="fraction pruned per level")
    rate_of: Literal["remaining", "original"] = Field(
        "remaining", description="rate applies to the weights still alive, or to the original count"
    )
    levels: int = Field(5, ge=0, le=100)
    include: list[str] = Field(default_factory=list, description="glob patterns over parameter names")
    exclude: list[str] = Field(default_factory=list)
    biases: bool = False
    rates: dict[str, float] = Field(
        default_factory=dict, description="per-pattern rate overrides, pruned layerwise"
    )

    @field_validator("rates")
    @classmethod
    def _rates_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for pattern, rate in v.items():
            if not 0 < rate < 1:
                raise ValueError(f"rate for '{pattern}' must be in (0, 1), got {rate}")
        return v


class RewindSection(Strict):
    step: int | str = Field(0, description="rewind step k: an integer in domain units, or 'N%' of train.steps")
    optimizer: Literal["reset", "restore"] = "reset"

    @field_validator("step")
    @classmethod
    def _step_form(cls, v: int | str) -> int | str:
        if isinstance(v, int):
            if v < 0:
                raise ValueError("must be >= 0")
            return v
        if not re.fullmatch(r"\d+(\.\d+)?%", v.strip()):
            raise ValueError(f"must be an integer or a percentage such as '1%', got '{v}'")
        return v.strip()


class ReportSection(Strict):
    tolerance: float = Field(
        0.01, ge=0, description="a ticket 'matches' dense when within this fraction of the dense metric"
    )


class TaskConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    domain: Literal["toy", "rl", "nlp"]
    description: str = ""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    train: TrainSection
    prune: PruneSection = Field(default_factory=PruneSection)
    rewind: RewindSection = Field(default_factory=RewindSection)
    controls: list[ControlName] = Field(default_factory=lambda: ["random_reinit", "random_mask"])
    report: ReportSection = Field(default_factory=ReportSection)
    toy: dict[str, Any] | None = None
    rl: dict[str, Any] | None = None
    nlp: dict[str, Any] | None = None

    def rewind_step(self) -> int:
        """The rewind step k in domain units (a percentage is rounded half up)."""
        step = self.rewind.step
        if isinstance(step, int):
            return step
        return math.floor(float(step[:-1]) / 100 * self.train.steps + 0.5)


@dataclass
class ResolvedTask:
    """A validated task: the common config, its domain section, and the run hash."""

    config: TaskConfig
    section: BaseModel
    source: Path

    @property
    def resolved(self) -> dict[str, Any]:
        """The whole config with defaults filled in (what ``config.yaml`` records)."""
        data = self.config.model_dump(mode="json")
        for domain in ("toy", "rl", "nlp"):
            data.pop(domain)
        # optional sections left out (None) are omitted, so adding a new optional feature to the
        # schema never changes the hash (and thus the run directory) of an existing task
        data = {k: v for k, v in data.items() if v is not None}
        data[self.config.domain] = self.section.model_dump(mode="json")
        return data

    @property
    def hash(self) -> str:
        return config_hash(self.resolved)

    @property
    def run_name(self) -> str:
        return f"{self.config.name}-{self.hash}"


def config_hash(resolved: dict[str, Any]) -> str:
    """8 hex digits of the SHA-256 of the canonical JSON of the hashed part of a config."""
    data = copy.deepcopy(resolved)
    for dotted in UNHASHED_KEYS:
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


# -- loading ---------------------------------------------------------------------------------


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set: expected key.path=value, got '{item}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return [k for k in key.strip().split(".")], value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars/lists)."""
    data = copy.deepcopy(data)
    for item in overrides:
        path, value = _parse_override(item)
        node = data
        for k in path[:-1]:
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                raise UserError(f"--set {item}: '{k}' is not a section")
            node = nxt
        node[path[-1]] = value
    return data


def _field_error(source: Path | str, exc: ValidationError, prefix: str = "") -> UserError:
    """One line naming the file and the first failing field, with a spelling hint."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        model = exc.title
        msg = "unknown key"
        known = _known_keys(model, err["loc"])
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        if close:
            msg += f" (did you mean '{close[0]}'?)"
    elif err["type"] == "missing":
        msg = "required key is missing"
    return UserError(f"{source}: {field}: {msg}")


_MODEL_REGISTRY: dict[str, type[BaseModel]] = {}


def _known_keys(model_title: str, loc: tuple[Any, ...]) -> list[str]:
    model = _MODEL_REGISTRY.get(model_title)
    for part in loc[:-1]:
        if model is None:
            return []
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(model.model_fields) if model else []


def validate_section(model: type[BaseModel], data: Any, source: Path | str, prefix: str) -> BaseModel:
    """Validate a domain section; errors name ``prefix.field`` in ``source``."""
    _MODEL_REGISTRY[model.__name__] = model
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: {prefix.rstrip('.')}: expected a mapping")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _field_error(source, exc, prefix) from None


def read_yaml_file(source: Path, kind: str) -> Any:
    """Parse a YAML file; a missing, unreadable or malformed file is a one-line UserError."""
    if not source.is_file():
        raise UserError(f"{source}: no such {kind} file")
    try:
        return yaml.safe_load(source.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{source}: YAML error{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: cannot read: {exc}") from None


def load_task(
    path: Path | str,
    overrides: list[str] | None = None,
    seeds: list[int] | None = None,
    levels: int | None = None,
) -> ResolvedTask:
    """Read, override and validate a task file. Raises :class:`UserError` on any bad input."""
    from multiticket.adapters import adapter_class

    source = Path(path)
    data = read_yaml_file(source, "task")
    if not isinstance(data, dict):
        raise UserError(f"{source}: (top level): expected a mapping of keys, got {type(data).__name__}")
    data = apply_overrides(data, overrides or [])
    if seeds is not None:
        data["seeds"] = seeds
    if levels is not None:
        data.setdefault("prune", {})
        if not isinstance(data["prune"], dict):
            raise UserError(f"{source}: prune: expected a mapping")
        data["prune"]["levels"] = levels
    _MODEL_REGISTRY[TaskConfig.__name__] = TaskConfig
    try:
        config = TaskConfig.model_validate(data)
    except ValidationError as exc:
        raise _field_error(source, exc) from None
    for other in ("toy", "rl", "nlp"):
        if other != config.domain and getattr(config, other) is not None:
            raise UserError(f"{source}: {other}: section does not belong to domain '{config.domain}'")
    if config.rewind_step() >= config.train.steps:
        raise UserError(f"{source}: rewind.step: must be below train.steps ({config.train.steps})")
    cls = adapter_class(config.domain)
    section = validate_section(cls.Section, getattr(config, config.domain), source, f"{config.domain}.")
    return ResolvedTask(config=config, section=section, source=source)
