"""Reading a run directory as untrusted input: its ``config.yaml``, its units' ``metrics.json`` and
its ``baselines.json``.

A run directory may come from someone else, so everything read from it goes through a schema
before ``report``, ``status``, ``compare``, ``transfer``, ``instability`` or a resumed ``run``
uses it, and every file is read with a size bound: a malformed file is one line naming the file
and the field (:class:`UserError`, exit 2), never a traceback or a runaway. ``config.yaml``'s
common part is checked by the task schema (:class:`~multiticket.config.TaskConfig`), whose bounds
(``prune.levels``, the number of seeds, the size of a plan) keep every plan cheap; the domain
section (``rl:``, ``nlp:``) is checked only by commands that train, so reading a report needs
neither SB3 nor transformers. This is the one place that reads a run's ``config.yaml``. What
tells runs apart by their settings is :mod:`.settings_diff` (its names are importable from here).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from multiticket.config import TaskConfig, _field_error, validate_task
from multiticket.core.mask import Mask
from multiticket.core.store import DONE, RunStore, Unit, sha256
from multiticket.core.textfile import parse_json, read_bounded, read_yaml
from multiticket.errors import UserError
from multiticket.rundir.settings_diff import MISSING, UNTELLING, differing, setting_text, settings, tell_apart, telling  # noqa: F401 - re-exported

CONFIG = "config.yaml"
METRICS = "metrics.json"
BASELINES = "baselines.json"
#: largest config.yaml / JSON record read (a resolved config is a few KB, a record a few hundred)
MAX_CONFIG_BYTES = 1 << 20
MAX_JSON_BYTES = 4 << 20
#: most YAML nodes (aliases expanded) a config.yaml may hold: a resolved config has about a hundred
MAX_YAML_NODES = 20_000
#: seeds are any 64-bit integers (they are hashed into generator seeds)
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
#: metric values beyond this are no measurement (and would overflow means and plots)
METRIC_BOUND = 1e15
UNIT_DIR = re.compile(r"seed_(-?\d{1,19})/([a-z][a-z0-9_]{0,63})/level_(\d{1,3})")


@dataclass(frozen=True)
class RunConfig:
    """A run directory's validated ``config.yaml``: the recorded dict (without ``versions``) and
    its common part as a :class:`TaskConfig` (domain section unchecked)."""

    path: Path
    data: dict[str, Any]
    config: TaskConfig
    #: the recorded library versions (``{name: version}`` as text), or None when absent or malformed
    versions: dict[str, str] | None = None


def read_run_config(run_dir: Path | str) -> RunConfig:
    """Read and validate ``run_dir/config.yaml``; UserError naming the file and field otherwise."""
    root = Path(run_dir)
    path = root / CONFIG
    if not root.is_dir():
        raise UserError(f"{root}: not a run directory (no such directory)")
    if not path.exists():
        raise UserError(f"{root}: not a run directory (no {CONFIG}; pass the <task>-<hash> directory)")
    data = read_yaml(path, MAX_CONFIG_BYTES, MAX_YAML_NODES)
    if not isinstance(data, dict):
        raise UserError(f"{path}: (top level): expected a mapping of keys, got {type(data).__name__}")
    versions = data.get("versions")
    data = {k: v for k, v in data.items() if k != "versions"}
    try:
        config = validate_task(data, path)
    except RecursionError:
        raise UserError(f"{path}: nested too deeply") from None
    return RunConfig(path, data, config, _versions(versions))


def _versions(value: Any) -> dict[str, str] | None:
    """``versions:`` of a config.yaml, when it is what multiticket writes (a short name -> version map)."""
    if not isinstance(value, dict) or len(value) > 100:
        return None
    out = {str(k)[:100]: str(v)[:100] for k, v in value.items() if isinstance(v, str | int | float)}
    return out if len(out) == len(value) else None


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file of a run directory (bounded; NaN and Infinity are parsed, schemas refuse them)."""
    return parse_json(read_bounded(path, limit), str(path))


# -- metrics.json ---------------------------------------------------------------------------------

Seed = Annotated[int, Field(ge=SEED_MIN, le=SEED_MAX)]
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-METRIC_BOUND, le=METRIC_BOUND)]
Steps = Annotated[int, Field(ge=0, le=2**53)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class EarlyBirdInfo(BaseModel):
    """The ``early_bird`` block of an early-bird unit's record (what the report reads of it)."""

    model_config = ConfigDict(extra="allow", strict=True)

    search_steps: Steps
    imp_search_steps: Steps
    interval: Steps
    window: Annotated[int, Field(ge=2, le=100)]
    threshold: Annotated[float, Field(allow_inf_nan=False, gt=0, le=1)]
    stopped_at: Steps | None = None
    dense_stopped_at: Steps | None = None


class UnitRecord(BaseModel):
    """One unit's ``metrics.json``: the fields every reader relies on (others are kept as they are)."""

    model_config = ConfigDict(extra="allow", strict=True)

    task: Name
    domain: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    seed: Seed
    control: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    level: Annotated[int, Field(ge=0, le=100)]
    sparsity: Annotated[float, Field(allow_inf_nan=False, ge=0, le=1)]
    metric: Name
    higher_is_better: bool = True
    metrics: Annotated[dict[Name, Any], Field(max_length=1000)]
    start_step: Steps | None = None
    stop_step: Steps | None = None
    early_bird: EarlyBirdInfo | None = None
    #: what the control is for (:class:`multiticket.core.controls.ControlSpec`); absent in older runs
    role: Literal["ticket", "random", "ablation", "baseline"] | None = None
    #: the environment seeds of the unit's evaluation episodes (episodic evaluation only)
    eval_seeds: Annotated[list[Seed], Field(max_length=100_000)] | None = None

    @field_validator("metrics")
    @classmethod
    def _values(cls, metrics: dict[str, Any]) -> dict[str, Any]:
        """Every value a finite number within ±METRIC_BOUND, or a short string."""
        for name, v in metrics.items():
            if isinstance(v, str) and len(v) <= 1000:
                continue
            if type(v) not in (int, float) or not math.isfinite(v) or abs(v) > METRIC_BOUND:
                shown = repr(v) if type(v) in (int, float) else type(v).__name__
                raise ValueError(f"'{name}' must be a finite number within ±{METRIC_BOUND:g} or a short string, "
                                 f"got {shown[:40]}")
        return metrics

    @model_validator(mode="after")
    def _primary_is_a_number(self) -> UnitRecord:
        value = self.metrics.get(self.metric)
        if isinstance(value, str) or value is None:
            raise ValueError(f"metrics: the primary metric '{self.metric}' must be a number")
        if self.early_bird is not None and (self.start_step is None or self.stop_step is None):
            raise ValueError("start_step: an early-bird record needs start_step and stop_step")
        return self


def validated(model: type[BaseModel], data: Any, path: Path) -> dict[str, Any]:
    """``data`` checked by ``model`` (extra keys kept); UserError naming ``path`` and the field."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: (top level): expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data).model_dump()
    except ValidationError as exc:
        raise _field_error(path, exc) from None


def unit_of(unit_dir: Path, root: Path) -> Unit | None:
    """The unit a directory ``seed_<s>/<control>/level_<L>`` under ``root`` holds, or None."""
    try:
        rel = unit_dir.relative_to(root).as_posix()
    except ValueError:
        return None
    m = UNIT_DIR.fullmatch(rel)
    return Unit(int(m[1]), m[2], int(m[3])) if m else None


def read_record(path: Path, unit: Unit) -> dict[str, Any]:
    """A unit's ``metrics.json``, validated and checked to describe the unit it lives in."""
    record = validated(UnitRecord, read_json(path), path)
    for key in ("seed", "control", "level"):
        if record[key] != getattr(unit, key):
            raise UserError(f"{path}: {key}: {record[key]!r} is not that of its directory {unit.relpath()}")
    return record


def check_finished_unit(unit_dir: Path, unit: Unit) -> tuple[dict[str, Any], dict[str, tuple[int, ...]] | None]:
    """The validated record of a finished unit and its mask's parameter shapes (None without a
    mask), after checking the mask file's header (UserError otherwise)."""
    record = read_record(unit_dir / METRICS, unit)
    mask = unit_dir / "mask.safetensors"
    return record, Mask.check_file(mask) if mask.exists() else None


def corrupt_reason(store: RunStore, unit: Unit, verified: bool = False) -> str | None:
    """Why a unit that has a ``DONE`` cannot count as finished (bad checksums, ``DONE`` unreadable,
    ``metrics.json`` not covered by it), or None when it is fine or has no ``DONE``.
    ``verified``: the caller has just checked the checksums (:meth:`RunStore.is_done`), so the
    artifacts are not hashed again."""
    d = store.unit_dir(unit)
    if not (d / DONE).is_file():
        return None
    problems = [] if verified else store.problems(d)
    if problems:
        return problems[0]
    if METRICS not in (store.done_files(d) or {}):
        return f"{d / DONE}: does not cover {METRICS}"
    return None


def check_resumable(root: Path) -> None:
    """Validate every ``metrics.json`` whose own checksum its ``DONE`` vouches for: what a resumed
    run reads of its finished units. The other artifacts are not hashed here (the run checks them
    unit by unit, recomputing a corrupt one); a malformed record raises UserError before training."""
    store = RunStore(root)
    for metrics_file in sorted(root.glob(f"seed_*/*/level_*/{METRICS}")):
        unit = unit_of(metrics_file.parent, root)
        files = store.done_files(metrics_file.parent) if unit is not None else None
        if unit is not None and files and metrics_file.is_file() and files.get(METRICS) == sha256(metrics_file):
            read_record(metrics_file, unit)


def finished_records(root: Path) -> list[dict[str, Any]]:
    """Validated records of every finished unit (``DONE`` checksums valid), sorted by seed,
    control (ticket first) and level. Each one's ``metrics.json`` and ``mask.safetensors`` header
    are checked here, before anything uses them; a malformed one raises UserError. Corrupt units
    (:func:`corrupt_reason`) are left out."""
    store = RunStore(root)
    records: list[dict[str, Any]] = []
    first: tuple[Unit, dict[str, tuple[int, ...]]] | None = None
    for metrics_file in sorted(root.glob(f"seed_*/*/level_*/{METRICS}")):
        unit = unit_of(metrics_file.parent, root)
        if unit is None or not (metrics_file.parent / DONE).is_file() or corrupt_reason(store, unit):
            continue
        record, shapes = check_finished_unit(metrics_file.parent, unit)
        records.append(record)
        if shapes is not None and first is None:
            first = (unit, shapes)
        elif shapes is not None and first is not None and shapes != first[1]:  # every unit prunes the same parameters
            raise UserError(f"{metrics_file.parent / 'mask.safetensors'}: its tensors (names, order or shapes) "
                            f"differ from those of {first[0].relpath()}'s mask")
    records.sort(key=lambda m: (m["seed"], m["control"] != "ticket", m["control"], m["level"]))
    return records


# -- instability.json -----------------------------------------------------------------------------

INSTABILITY_DIR = re.compile(r"seed_(-?\d{1,19})/instability/([a-z][a-z0-9_]{0,63})/level_(\d{1,3})")


class InstabilityRecord(BaseModel):
    """One ``multiticket instability`` result (what the report reads of it)."""

    model_config = ConfigDict(extra="allow", strict=True)

    task: Name
    seed: Seed
    control: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    level: Annotated[int, Field(ge=0, le=100)]
    sparsity: Annotated[float, Field(allow_inf_nan=False, ge=0, le=1)]
    metric: Name
    higher_is_better: bool
    points: Annotated[int, Field(ge=2, le=1001)]
    alphas: Annotated[list[Finite], Field(min_length=2, max_length=1001)]
    values: Annotated[list[Finite], Field(min_length=2, max_length=1001)]
    barrier: Finite
    barrier_linear: Finite

    @model_validator(mode="after")
    def _one_value_per_alpha(self) -> InstabilityRecord:
        if len(self.values) != len(self.alphas) or len(self.alphas) != self.points:
            raise ValueError(f"values: {len(self.values)} values for {len(self.alphas)} alphas ({self.points} points)")
        return self


def read_instability_record(path: Path, root: Path) -> dict[str, Any] | None:
    """A finished ``instability.json`` (validated; its seed, control and level those of its
    directory), or None when ``path`` is not in an instability unit directory."""
    try:
        m = INSTABILITY_DIR.fullmatch(path.parent.relative_to(root).as_posix())
    except ValueError:
        m = None
    if m is None:
        return None
    record = validated(InstabilityRecord, read_json(path), path)
    for key, value in (("seed", int(m[1])), ("control", m[2]), ("level", int(m[3]))):
        if record[key] != value:
            raise UserError(f"{path}: {key}: {record[key]!r} is not that of its directory {m[0]}")
    return record


# -- baselines.json -------------------------------------------------------------------------------

#: known baselines -> (lowest, highest) value that makes sense (others: any finite number)
BASELINE_RANGES = {
    "majority_rate": (0.0, 1.0), "test_majority_rate": (0.0, 1.0),
    "unigram_perplexity": (1.0, METRIC_BOUND), "test_unigram_perplexity": (1.0, METRIC_BOUND),
    "random_return_std": (0.0, METRIC_BOUND), "random_episodes": (1.0, 1e6),
}


class BaselinesFile(BaseModel):
    """``baselines.json``: what trivial predictors score on the run's task (measured once per run
    by ``multiticket run``, :meth:`DomainAdapter.baselines`); empty when the domain measures none."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal[1]
    domain: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    baselines: Annotated[dict[Name, Finite], Field(max_length=100)]

    @field_validator("baselines")
    @classmethod
    def _in_range(cls, values: dict[str, float]) -> dict[str, float]:
        for name, (low, high) in BASELINE_RANGES.items():
            if name in values and not low <= values[name] <= high:
                raise ValueError(f"'{name}' must lie in [{low:g}, {high:g}], got {values[name]!r}")
        return values


def baselines_record(domain: str, values: dict[str, float]) -> dict[str, Any]:
    """The content of a ``baselines.json`` (validated, so a bad adapter fails before it is written)."""
    record = {"format": 1, "domain": domain, "baselines": {str(k): float(v) for k, v in values.items()}}
    return validated(BaselinesFile, record, Path(BASELINES))


def read_baselines(run_dir: Path | str) -> dict[str, Any] | None:
    """A run directory's validated ``baselines.json``, or None for a run made before baselines
    were measured; UserError naming the file and field when it is malformed."""
    path = Path(run_dir) / BASELINES
    if not path.exists() and not path.is_symlink():
        return None
    return validated(BaselinesFile, read_json(path, MAX_CONFIG_BYTES), path)
