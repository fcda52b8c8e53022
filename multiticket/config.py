"""Task files: loading, ``--set`` overrides, validation with one-line errors, and hashing.

A task file is YAML with the common keys below plus one domain section (``toy:``, ``rl:``,
``nlp:``, or the key of a registered third-party domain) validated by that domain's adapter.
Unknown keys are errors. Every rule that relates two keys is a model validator of
:class:`TaskConfig`, so every way of building one (a task file, ``config.yaml`` in a worker, a
transfer task) agrees. ``domain``, ``prune.criterion`` and ``controls`` are checked against the
registries (:mod:`multiticket.core.registry`).

The resolved config (defaults filled in) names the run directory through its hash; which keys
count is declared per field (``AlwaysHashed`` / ``NotHashed`` / unmarked: :mod:`multiticket.schema`).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from multiticket import domains as _builtin_domains  # noqa: F401 - registers toy, rl, nlp
from multiticket.core.controls import CONTROLS as CONTROL_SPECS
from multiticket.core.criteria import DEFAULT as DEFAULT_CRITERION
from multiticket.core.registry import criteria, domains
from multiticket.core.textfile import check_shape, read_yaml
from multiticket.errors import UserError
from multiticket.schema import AlwaysHashed, NotHashed, Strict, not_hashed_paths, recorded

#: early-bird mask-check interval of a domain when the task sets none. In RL the first updates of
#: PPO/A2C move the weights so little that the next mask looks stable before training has shaped
#: it: on cartpole-ppo, checks every 2 % stopped at about 20 % of training and one seed's early-bird
#: tickets collapsed (return 10-150 vs 500), while every 5 % they stopped at 30-50 % and held.
EARLY_BIRD_INTERVAL: dict[str, int | str] = {"rl": "5%"}
DEFAULT_EARLY_BIRD_INTERVAL = "2%"

#: bounds that no real run reaches but that keep planning a run (and reading one) cheap
MAX_SEEDS = 1000
MAX_CONTROLS = 64
MAX_UNITS = 100_000

#: the longest task name (the run directory is '<name>-<hash>', well under a file name's 255 bytes)
MAX_NAME = 100
#: the longest --set item (key=value)
MAX_OVERRIDE = 100_000


class TrainSection(Strict):
    steps: AlwaysHashed[int] = Field(gt=0, description="training length: env timesteps (rl), optimizer steps (nlp, toy)")


class PruneSection(Strict):
    strategy: AlwaysHashed[Literal["global_magnitude", "layerwise_magnitude", "random"]] = Field(
        "global_magnitude", description="the scope a level is ranked over (global or per layer), or random ranks")
    rate: AlwaysHashed[float] = Field(0.2, gt=0, lt=1, description="fraction pruned per level")
    rate_of: AlwaysHashed[Literal["remaining", "original"]] = Field(
        "remaining", description="rate applies to the weights still alive, or to the original count"
    )
    levels: NotHashed[int] = Field(5, ge=0, le=100)
    include: AlwaysHashed[list[str]] = Field(default_factory=list, description="glob patterns over parameter names")
    exclude: AlwaysHashed[list[str]] = Field(default_factory=list)
    biases: AlwaysHashed[bool] = False
    rates: AlwaysHashed[dict[str, float]] = Field(
        default_factory=dict, description="per-pattern rate overrides, pruned layerwise"
    )
    criterion: str = Field(DEFAULT_CRITERION, description="mask criterion of a magnitude strategy (Zhou et al. 2019; "
                           "a registered name: multiticket.core.criteria)")

    @field_validator("rates")
    @classmethod
    def _rates_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for pattern, rate in v.items():
            if not 0 < rate < 1:
                raise ValueError(f"rate for '{pattern}' must be in (0, 1), got {rate}")
        return v

    @field_validator("criterion")
    @classmethod
    def _registered_criterion(cls, v: str) -> str:
        if v not in criteria:
            raise ValueError(criteria.unknown(v))
        return v


def _steps_form(v: int | str) -> int | str:
    """A step count: a non-negative integer, or a percentage string such as '1%'."""
    if isinstance(v, int):
        if v < 0:
            raise ValueError("must be >= 0")
        return v
    if not re.fullmatch(r"\d+(\.\d+)?%", v.strip()):
        raise ValueError(f"must be an integer or a percentage such as '1%', got '{v}'")
    return v.strip()


def steps_of(value: int | str, total: int) -> int:
    """An integer step count, or a percentage of ``total`` rounded half up."""
    if isinstance(value, int):
        return value
    return math.floor(float(value[:-1]) / 100 * total + 0.5)


class RewindSection(Strict):
    step: AlwaysHashed[int | str] = Field(
        0, description="rewind step k: an integer in domain units, or 'N%' of train.steps")
    optimizer: AlwaysHashed[Literal["reset", "restore"]] = "reset"
    mode: Literal["weights", "lr", "finetune"] = Field(
        "weights",
        description="weights: rewind survivors to step k; lr: keep the previous level's final weights and "
        "replay the LR schedule from k; finetune: final weights at a constant finetune_lr for T - k steps",
    )
    finetune_lr: float | None = Field(None, gt=0, description="constant learning rate of mode finetune")

    _step_form = field_validator("step")(classmethod(lambda cls, v: _steps_form(v)))


class EarlyBirdSection(Strict):
    """Early-bird search (You et al. 2020) for the ``early_bird`` control."""

    interval: int | str | None = Field(
        None, description="steps between mask checks, or 'N%' of train.steps; default: the domain's "
        "(EARLY_BIRD_INTERVAL: 5% in rl, 2% elsewhere)")
    window: AlwaysHashed[int] = Field(5, ge=2, le=100, description="masks compared (You et al.: 5)")
    threshold: AlwaysHashed[float] = Field(
        0.1, gt=0, le=1, description="largest normalised Hamming distance counted as stable")

    _interval_form = field_validator("interval")(classmethod(lambda cls, v: v if v is None else _steps_form(v)))


class ReportSection(Strict):
    tolerance: AlwaysHashed[float] = Field(
        0.01, ge=0, description="a ticket 'matches' dense when within this fraction of the dense metric"
    )
    metric: NotHashed[str | None] = Field(
        None, min_length=1, max_length=200,
        description="the headline metric of the report and the terminal table (default: the adapter's "
                    "primary metric); any metric the units record, e.g. f1_macro or test_accuracy",
    )
    correction: NotHashed[Literal["sequence", "holm"]] = Field(
        "sequence",
        description="how the verdicts keep the per-run rate of a false 'won' at 5 %: 'sequence' tests the "
                    "levels from the deepest down, each at 5 %, stopping at the first not won (5 seeds "
                    "suffice); 'holm' tests every level, Holm-corrected (log2(levels / 0.05) seeds needed)",
    )


class CheckpointSection(Strict):
    every: int = Field(
        gt=0, description="write a mid-level checkpoint every this many steps (domain units); resume is bitwise on CPU"
    )


class TDRampSection(Strict):
    """Linear ramp of γ over training (Gomez et al.: 0 -> 0.99 with α = 0.99)."""

    gamma_start: AlwaysHashed[float] = Field(0.0, ge=0, le=1)
    gamma_end: AlwaysHashed[float] = Field(0.99, ge=0, le=1)
    start: AlwaysHashed[float] = Field(0.0, ge=0, lt=1, description="fraction of train.steps where the ramp starts")
    end: AlwaysHashed[float] = Field(1.0, gt=0, le=1, description="fraction of train.steps where γ reaches gamma_end")

    @model_validator(mode="after")
    def _ordered(self) -> TDRampSection:
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be below end ({self.end})")
        return self


class TargetedDropoutSection(Strict):
    """Targeted dropout (Gomez et al. 2019, :mod:`multiticket.core.targeted_dropout`)."""

    variant: AlwaysHashed[Literal["weight", "unit"]] = Field(
        "weight", description="weight: per output unit, its smallest-|w| weights; unit: whole lowest-norm units"
    )
    gamma: AlwaysHashed[float] = Field(
        0.5, ge=0, le=1, description="targeted fraction (of each unit's live weights, or of units)")
    alpha: AlwaysHashed[float] = Field(0.5, ge=0, le=1, description="drop probability of each targeted weight or unit")
    ramp: AlwaysHashed[TDRampSection | None] = Field(
        None, description="ramp γ over training instead of a constant gamma")
    apply_to: AlwaysHashed[Literal["experiment", "all"]] = Field(
        "experiment",
        description="experiment: only the dense_td unit (for prune_dense_td); all: every trained unit (TD + IMP)",
    )

    @model_validator(mode="after")
    def _gamma_or_ramp(self) -> TargetedDropoutSection:
        if self.ramp is not None and "gamma" in self.model_fields_set:
            raise ValueError("give either gamma (constant) or ramp, not both")
        return self


class TransferSection(Strict):
    """Set by ``multiticket transfer`` (:mod:`multiticket.core.transfer`): where the tickets come from."""

    source: AlwaysHashed[str] = Field(description="the source run directory's name (<task>-<hash>): part of the run hash")
    source_dir: NotHashed[str] = Field(description="path of the source run directory (not hashed: the run may move)")


class TaskConfig(Strict):
    """The common keys of a task file; the domain's own section is kept raw (:meth:`domain_section`)
    and validated by the domain adapter's ``Section`` (:func:`resolve_task`)."""

    name: AlwaysHashed[str] = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MAX_NAME,
                                    description=f"the run directory is '<name>-<hash>': at most {MAX_NAME} characters")
    domain: AlwaysHashed[str] = Field(description="a registered domain (toy, rl, nlp, or a plugin's)")
    description: NotHashed[str] = ""
    seeds: NotHashed[list[Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]]] = Field(
        default_factory=lambda: [0], min_length=1, max_length=MAX_SEEDS)
    train: AlwaysHashed[TrainSection]
    prune: AlwaysHashed[PruneSection] = Field(default_factory=PruneSection)
    rewind: AlwaysHashed[RewindSection] = Field(default_factory=RewindSection)
    controls: NotHashed[list[str]] = Field(default_factory=lambda: ["random_reinit", "random_mask"],
                                           max_length=MAX_CONTROLS)
    report: AlwaysHashed[ReportSection] = Field(default_factory=ReportSection)
    checkpoint: NotHashed[CheckpointSection | None] = None
    early_bird: EarlyBirdSection | None = None
    targeted_dropout: TargetedDropoutSection | None = None
    transfer: TransferSection | None = None
    _sections: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("domain")
    @classmethod
    def _registered_domain(cls, v: str) -> str:
        if v not in domains:
            raise ValueError(domains.unknown(v))
        return v

    @field_validator("controls")
    @classmethod
    def _registered_controls(cls, v: list[str]) -> list[str]:
        names = [c for c in CONTROL_SPECS if c != "ticket"]  # the ticket chain always runs
        for c in v:
            if c not in names:
                raise ValueError(CONTROL_SPECS.unknown(c, names))
        return v

    @model_validator(mode="wrap")
    @classmethod
    def _domain_sections(cls, data: Any, handler: Any) -> TaskConfig:
        """Take every registered domain's section out of ``data``; only the task's own may be there."""
        sections: dict[str, Any] = {}
        if isinstance(data, dict):
            sections = {k: v for k, v in data.items() if k in domains and k not in cls.model_fields}
            data = {k: v for k, v in data.items() if k not in sections}
        config = handler(data)
        for other in sections:
            if other != config.domain:
                raise ValueError(f"{other}: section does not belong to domain '{config.domain}'")
        config._sections = sections
        return config

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> TaskConfig:
        if not (info.context or {}).get("rules_apart"):  # the collecting pass runs each one (multiticket.validation)
            for check in CROSS_FIELD_RULES:
                check(self)
        return self

    def domain_section(self) -> Any:
        """The raw section of the task's domain (None when the task file has none)."""
        return self._sections.get(self.domain)

    def rewind_step(self) -> int:
        """The rewind step k in domain units (a percentage is rounded half up)."""
        return steps_of(self.rewind.step, self.train.steps)

    def early_bird_settings(self) -> EarlyBirdSection:
        """The early-bird settings (the defaults when the task file has no ``early_bird:``)."""
        return self.early_bird or EarlyBirdSection()

    def early_bird_interval(self) -> int:
        """Steps between early-bird mask checks (a percentage of train.steps rounded half up)."""
        interval = self.early_bird_settings().interval
        if interval is None:
            interval = EARLY_BIRD_INTERVAL.get(self.domain, DEFAULT_EARLY_BIRD_INTERVAL)
        return steps_of(interval, self.train.steps)

    def runs_early_bird(self) -> bool:
        return "early_bird" in self.controls or self.early_bird is not None


# -- cross-field rules (each raises ValueError("<field>: <why>"), reported naming that field) ---------


def _plan_rules(config: TaskConfig) -> None:
    """A plan stays cheap to build and to read back (a run directory's config.yaml is input)."""
    units = len(config.seeds) * (1 + config.prune.levels * (1 + len(config.controls)))
    if units > MAX_UNITS:
        raise ValueError(f"seeds: {len(config.seeds)} seeds x {config.prune.levels} levels x {len(config.controls)} "
                         f"controls plan {units} units, more than {MAX_UNITS}")


def _rewind_rules(config: TaskConfig) -> None:
    """The rewind step lies inside training; ``rewind.finetune_lr`` goes with mode finetune only."""
    if config.rewind_step() >= config.train.steps:
        raise ValueError(f"rewind.step: must be below train.steps ({config.train.steps})")
    rw = config.rewind
    if rw.mode == "finetune" and rw.finetune_lr is None:
        raise ValueError("rewind.finetune_lr: required when rewind.mode is finetune")
    if rw.mode != "finetune" and rw.finetune_lr is not None:
        raise ValueError(f"rewind.finetune_lr: only used with rewind.mode finetune (mode is {rw.mode})")


def _early_bird_rules(config: TaskConfig) -> None:
    """Early-bird masks need a magnitude strategy and an interval inside training."""
    if not config.runs_early_bird():
        return
    if config.prune.strategy == "random":
        raise ValueError("early_bird: needs a magnitude strategy (prune.strategy is random: "
                         "random masks never stabilise)")
    interval = config.early_bird_interval()
    if not 1 <= interval < config.train.steps:
        raise ValueError(f"early_bird.interval: must be 1 to {config.train.steps - 1} steps, got {interval}")


def _targeted_dropout_rules(config: TaskConfig) -> None:
    """A targeted-dropout control needs the section, and the section must be used by something."""
    td_controls = [c for c in config.controls if CONTROL_SPECS[c].source == "dense_td"]
    td = config.targeted_dropout
    if td_controls and td is None:
        raise ValueError(f"controls: '{td_controls[0]}' needs a targeted_dropout section")
    if td is not None and td.apply_to == "experiment" and not td_controls:
        raise ValueError("targeted_dropout.apply_to: 'experiment' trains only the dense_td unit of the "
                         "control prune_dense_td, which controls does not list (add it, or use apply_to: all)")


def _criterion_rules(config: TaskConfig) -> None:
    """A criterion ranks a magnitude strategy's scope; one that reads the initial (rewind-point)
    weights needs a unit that has them: not the early-bird search before k, not ``dense_td``."""
    name = config.prune.criterion
    if name == DEFAULT_CRITERION:
        return
    if config.prune.strategy == "random":
        raise ValueError(f"prune.criterion: the random strategy ranks at random; '{name}' needs a magnitude strategy")
    if not criteria[name].needs_init:
        return
    if config.runs_early_bird() and config.rewind_step() > 0:
        raise ValueError(f"prune.criterion: '{name}' reads the rewind-point weights, which the early-bird search "
                         "does not have when it checks masks before the rewind step (use rewind.step 0)")
    if any(CONTROL_SPECS[c].source == "dense_td" for c in config.controls):
        raise ValueError(f"prune.criterion: '{name}' reads the rewind-point weights, which the dense_td unit "
                         "pruned by prune_dense_td does not record")


def _transfer_rules(config: TaskConfig) -> None:
    if "transfer_mask" in config.controls and config.transfer is None:
        raise ValueError("controls: transfer_mask exists only in runs made by 'multiticket transfer'")


#: every cross-field rule, in the order a failing one is reported
CROSS_FIELD_RULES = (_plan_rules, _rewind_rules, _early_bird_rules, _targeted_dropout_rules, _criterion_rules,
                     _transfer_rules)


@dataclass
class ResolvedTask:
    """A validated task: the common config, its domain section, and the run hash."""

    config: TaskConfig
    section: BaseModel
    source: Path

    @property
    def resolved(self) -> dict[str, Any]:
        """The whole config with defaults filled in (what ``config.yaml`` records): every key but an
        unmarked one at its default (:func:`multiticket.schema.recorded`), the domain section last."""
        data = recorded(self.config)
        data[self.config.domain] = recorded(self.section)
        return data

    @property
    def hash(self) -> str:
        return config_hash(self.resolved, type(self.section))

    @property
    def run_name(self) -> str:
        return f"{self.config.name}-{self.hash}"


def config_hash(resolved: dict[str, Any], section: type[BaseModel] | None = None) -> str:
    """8 hex digits of the SHA-256 of the canonical JSON of a resolved config without its
    ``NotHashed`` keys (those of the domain's ``section`` model too, when given)."""
    data = copy.deepcopy(resolved)
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


# -- loading ---------------------------------------------------------------------------------


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set: expected key.path=value, got '{item[:100]}'")
    where = f"--set {key.strip()[:100]}"
    if len(item) > MAX_OVERRIDE:
        raise UserError(f"{where}: longer than {MAX_OVERRIDE} characters")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise UserError(f"{where}: nested too deeply") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise UserError(f"{where}: {str(exc).splitlines()[0][:200]}") from None
    return [k for k in key.strip().split(".")], check_shape(value, where)


def apply_overrides(data: dict[str, Any], overrides: list[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars/lists), or a mapping
    ``{"key.path": value}`` (values taken as they are; the Python API's ``set=``)."""
    data = copy.deepcopy(data)
    if isinstance(overrides, Mapping):
        items = [(str(k).strip().split("."), v, f"{k}={v!r}") for k, v in overrides.items()]
    else:
        items = [(*_parse_override(item), item) for item in overrides]
    for path, value, item in items:
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


def named_field(message: str, prefix: str = "") -> tuple[str, str] | None:
    """(field, why) of a cross-field rule's ``"<field>: <why>"`` message, or None."""
    head, sep, rest = message.partition(": ")
    return (f"{prefix}{head}", rest) if sep and re.fullmatch(r"[A-Za-z_][\w.]*", head) else None


def error_field(err: Any, model_title: str, prefix: str = "") -> tuple[str, str]:
    """(field, message) of one pydantic error, with a spelling hint for an unknown key."""
    loc = ".".join(str(p) for p in err["loc"])
    field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
        known = _known_keys(model_title, err["loc"])
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        if close:
            msg += f" (did you mean '{close[0]}'?)"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "value_error":
        msg = str(err.get("ctx", {}).get("error", "")) or msg.removeprefix("Value error, ")
        named = named_field(msg, prefix) if not loc else None  # a cross-field check names its field
        if named:
            field, msg = named
    return field, msg


def _field_error(source: Path | str, exc: ValidationError, prefix: str = "") -> UserError:
    """One line naming the file and the first failing field, with a spelling hint."""
    field, msg = error_field(exc.errors()[0], exc.title, prefix)
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
    if model is TaskConfig:  # a domain's section is a top-level key too
        return [*model.model_fields, *domains]
    return list(model.model_fields) if model else []


def validate_section(
    model: type[BaseModel],
    data: Any,
    source: Path | str,
    prefix: str,
    user_code: bool = True,
    context: dict[str, Any] | None = None,
) -> BaseModel:
    """Validate a domain section; errors name ``prefix.field`` in ``source``. ``user_code=False``
    checks the form of the modules and classes a section names without importing them (``status``).
    ``context`` reaches the section's validators too (``task_dir``: the task file's folder, for
    paths relative to it)."""
    _MODEL_REGISTRY[model.__name__] = model
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: {prefix.rstrip('.')}: expected a mapping")
    try:
        return model.model_validate(data, context={"user_code": user_code, **(context or {})})
    except ValidationError as exc:
        raise _field_error(source, exc, prefix) from None


def read_yaml_file(source: Path, kind: str) -> Any:
    """Parse a YAML file, bounded (:mod:`multiticket.core.textfile`: size, values with aliases
    expanded, depth, integer digits); a missing, oversized or malformed file is one UserError line."""
    if not source.is_file():
        raise UserError(f"{source}: no such {kind} file")
    return read_yaml(source)




def validate_task(data: Any, source: Path | str) -> TaskConfig:
    """Validate the common keys (every cross-field rule included); a one-line UserError naming the field."""
    _MODEL_REGISTRY[TaskConfig.__name__] = TaskConfig
    if not isinstance(data, dict):
        raise UserError(f"{source}: (top level): expected a mapping of keys, got {type(data).__name__}")
    try:
        return TaskConfig.model_validate(data)
    except ValidationError as exc:
        raise _field_error(source, exc) from None


def resolve_task(config: TaskConfig, source: Path | str, user_code: bool = True,
                 run_dir: Path | None = None) -> ResolvedTask:
    """Validate the domain section with the domain adapter's ``Section``: the task, complete
    (``user_code``: see :func:`validate_section`). ``run_dir``: the task is a run directory's
    recorded config, so its section's paths must not resolve inside it (the validators see it)."""
    cls = domains.lookup(config.domain)
    context: dict[str, Any] = {"task_dir": Path(source).parent}
    if run_dir is not None:
        context["run_dir"] = run_dir
    section = validate_section(cls.Section, config.domain_section(), source, f"{config.domain}.", user_code, context)
    return ResolvedTask(config=config, section=section, source=Path(source))


def load_task(
    path: Path | str,
    overrides: list[str] | Mapping[str, Any] | None = None,
    seeds: list[int] | None = None,
    levels: int | None = None,
    user_code: bool = True,
) -> ResolvedTask:
    """Read, override and validate a task file. Raises :class:`UserError` on any bad input."""
    source = Path(path)
    return task_from_data(read_yaml_file(source, "task"), source, overrides, seeds, levels, user_code)


def task_from_data(
    data: Any,
    source: Path,
    overrides: list[str] | Mapping[str, Any] | None = None,
    seeds: list[int] | None = None,
    levels: int | None = None,
    user_code: bool = True,
) -> ResolvedTask:
    """Override and validate a task's data (``source`` names it in errors); ``user_code=False``
    imports no module the task names (see :func:`validate_section`)."""
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
    try:
        return resolve_task(validate_task(data, source), source, user_code)
    except UserError as first:  # look again for every error, each naming its --set (multiticket.validation)
        from multiticket.validation import collected_errors, override_labels

        labels = override_labels(overrides, seeds, levels)
        raise collected_errors(data, source, labels, user_code, first) from None
