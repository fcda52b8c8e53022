"""The sections of a task file: the common ones (``train:``, ``prune:``, ``rewind:`` ...), the
:class:`TaskFields` that holds them, and where a domain's own section model comes from.

Each model checks its keys one by one (types, bounds, registered names); a rule that relates two
keys is :mod:`multiticket.config.rules`'s, so that the collecting pass
(:mod:`multiticket.config.collect`) can run the field checks and the rules apart. Which keys name
the run is declared per field (``AlwaysHashed`` / ``NotHashed`` / unmarked: :mod:`multiticket.schema`).
"""

from __future__ import annotations

import importlib
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator

from multiticket import domains as _builtin_domains  # noqa: F401 - registers toy, rl, nlp
from multiticket.core.controls import CONTROLS as CONTROL_SPECS
from multiticket.core.criteria import DEFAULT as DEFAULT_CRITERION
from multiticket.core.criteria.allocators import STRATEGY_ALLOCATOR
from multiticket.core.registry import allocators, criteria, domains
from multiticket.schema import AlwaysHashed, NotHashed, Strict

#: bounds that no real run reaches but that keep planning a run (and reading one) cheap
MAX_SEEDS = 1000
MAX_CONTROLS = 64

#: the longest task name (the run directory is '<name>-<hash>', well under a file name's 255 bytes)
MAX_NAME = 100

#: the block of ``config.yaml`` that lists every setting the file leaves out at its default (what
#: ran, for readers and ``compare``); not hashed, and dropped when a config is read back
DEFAULTS_KEY = "defaults"


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
    allocator: str | None = Field(None, description="how a level's budget splits over the layers: global | layerwise "
                                  "| erk | a registered name (multiticket.core.criteria.allocators); default: the "
                                  "strategy's")
    structure: Literal["weights", "neurons", "heads", "units"] = Field(
        "weights", description="what a level prunes: single weights, whole neurons (Linear rows, Conv output "
        "channels; output layers kept whole), attention heads and feed-forward neurons of a BERT-like encoder, "
        "or LSTM hidden units (multiticket.core.structure); not hashed while weights")

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

    @field_validator("allocator")
    @classmethod
    def _registered_allocator(cls, v: str | None) -> str | None:
        if v is not None and v not in allocators:
            if v in criteria:  # lamp: a criterion ranked by the global allocator (Lee et al. 2021)
                raise ValueError(f"'{v}' is a criterion, not an allocator: set prune.criterion: {v} "
                                 "(its global ranking is the layer-adaptive budget)")
            raise ValueError(allocators.unknown(v))
        return v

    @model_validator(mode="after")
    def _allocator_of_the_strategy(self) -> PruneSection:
        """The allocator the strategy implies is the default: naming it renames no run."""
        if self.allocator is not None and self.allocator == STRATEGY_ALLOCATOR[self.strategy]:
            self.allocator = None
        return self


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
        None, description="steps between mask checks, or 'N%' of train.steps; default: the domain adapter's "
        "early_bird_interval (5% in rl, 2% elsewhere)")
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


class WandbSection(Strict):
    """Weights & Biases (``tracking.wandb``): one W&B run per unit, grouped by the run directory."""

    project: str = Field("multiticket", min_length=1, max_length=128, description="the W&B project")
    entity: str | None = Field(None, min_length=1, max_length=128, description="the W&B team or user")
    mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="offline (the default: files only, no network; `wandb sync` uploads them), "
        "online, or disabled")
    dir: str | None = Field(None, min_length=1, max_length=4096,
                            description="where W&B writes its files (default: $WANDB_DIR, else the working directory)")


class TrackingSection(Strict):
    """Experiment trackers (``tracking:``): each finished unit is logged by the driver, never by the core."""

    mlflow: str | None = Field(
        None, min_length=1, max_length=4096,
        description="an MLflow tracking URI (sqlite:///..., http://..., file:...), or a path: a folder holds an "
                    "SQLite store mlflow.db, a *.db file is one")
    wandb: WandbSection | None = None


class TaskFields(Strict):
    """The common keys of a task file, each checked on its own; the domain's own section is kept raw
    (:meth:`domain_section`) and validated by the domain adapter's ``Section``
    (:func:`multiticket.config.loading.resolve_task`). :class:`~multiticket.config.rules.TaskConfig`
    adds the rules that relate two keys: they read the methods here, so they sit above this model."""

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
    tracking: NotHashed[TrackingSection | None] = Field(
        None, description="log each finished unit to MLflow and/or Weights & Biases (never renames a run)")
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
    def _domain_sections(cls, data: Any, handler: Any) -> TaskFields:
        """Take every registered domain's section out of ``data``; only the task's own may be there.
        The :data:`DEFAULTS_KEY` block of a recorded config goes (it is recomputed, never read)."""
        sections: dict[str, Any] = {}
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != DEFAULTS_KEY}  # a record, never read back
            sections = {k: v for k, v in data.items() if k in domains and k not in cls.model_fields}
            data = {k: v for k, v in data.items() if k not in sections}
        config = handler(data)
        for other in sections:
            if other != config.domain:
                raise ValueError(f"{other}: section does not belong to domain '{config.domain}'")
        config._sections = sections
        return config

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
        if interval is None:  # the adapter's declared default (imports it: early-bird tasks only)
            interval = domains.lookup(self.domain).early_bird_interval
        return steps_of(interval, self.train.steps)

    def runs_early_bird(self) -> bool:
        """True when some unit searches early-bird masks (the control, or an ``early_bird:`` section)."""
        return "early_bird" in self.controls or self.early_bird is not None


def section_model(domain: str) -> type[BaseModel]:
    """The model of a registered domain's own section. The module a domain is registered from may
    declare it as ``DOMAIN_SECTION`` (the adapter class's ``Section``, importable without the
    adapter's libraries): validating an ``nlp:`` section then does not import transformers, which
    ``status``, ``report`` and every worker's re-validation would otherwise pay for in seconds.
    Else, or when that module cannot be imported (the registry then names the missing package),
    the adapter class's ``Section``; an unknown domain is a UserError naming ``domain``."""
    module_name = domains.module_of(domain) if domain in domains else None
    if module_name is not None:
        try:
            declared = getattr(importlib.import_module(module_name), "DOMAIN_SECTION", None)
        except ImportError:
            declared = None
        if isinstance(declared, type) and issubclass(declared, BaseModel):
            return declared
    section: type[BaseModel] = domains.lookup(domain).Section
    return section
