"""Loading a task: a task file (or a run directory's ``config.yaml``, or data built in Python) read,
overridden, validated, and resolved with its domain's section into a :class:`ResolvedTask`.

The happy path stops at the first error, as pydantic does; only then does the collecting pass
(:mod:`multiticket.config.collect`) look again for every error, each naming its ``--set``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from multiticket.config.collect import collected_errors, override_labels
from multiticket.config.hashing import config_hash
from multiticket.config.messages import field_error, register_model
from multiticket.config.overrides import apply_overrides
from multiticket.config.rules import TaskConfig
from multiticket.config.sections import DEFAULTS_KEY, section_model
from multiticket.core.textfile import read_yaml
from multiticket.errors import UserError
from multiticket.schema import recorded, with_legacy


@dataclass
class ResolvedTask:
    """A validated task: the common config, its domain section, and the run hash."""

    config: TaskConfig
    section: BaseModel
    source: Path
    #: (dotted key, how the user wrote it) of each override (:func:`override_labels`), so an error
    #: found later (building the adapter) can name the ``--set`` that caused it
    overrides: tuple[tuple[str, str], ...] = ()

    @property
    def resolved(self) -> dict[str, Any]:
        """The whole config with defaults filled in (what ``config.yaml`` records): every key but an
        unmarked one at its default (:func:`multiticket.schema.recorded`), the domain section, then
        the :data:`DEFAULTS_KEY` block with the settings left out above (not hashed, so no run name
        changes; readers see every setting that ran, ``compare`` tells runs apart by them)."""
        data = recorded(self.config)
        data[self.config.domain] = recorded(self.section)
        full = self.config.model_dump(mode="json")
        full[self.config.domain] = self.section.model_dump(mode="json")
        left = left_out(full, data)
        if left:
            data[DEFAULTS_KEY] = left
        return data

    @property
    def hash(self) -> str:
        """The run hash of :attr:`resolved` (:func:`~multiticket.config.hashing.config_hash`)."""
        return config_hash(self.resolved, type(self.section))

    @property
    def run_name(self) -> str:
        """The run directory's name, ``<name>-<hash>``."""
        return f"{self.config.name}-{self.hash}"


def left_out(full: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``full`` (a model dump) that ``kept`` (its recorded form) leaves out, nested
    sections by the same rule: the settings ``config.yaml`` does not write at their defaults."""
    out: dict[str, Any] = {}
    for key, value in full.items():
        if key not in kept:
            out[key] = value
        elif isinstance(value, dict) and isinstance(kept[key], dict) and (inner := left_out(value, kept[key])):
            out[key] = inner
    return out


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
    register_model(model)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: {prefix.rstrip('.')}: expected a mapping")
    try:
        return model.model_validate(data, context={"user_code": user_code, **(context or {})})
    except ValidationError as exc:
        raise field_error(source, exc, prefix) from None


def read_yaml_file(source: Path, kind: str) -> Any:
    """Parse a YAML file, bounded (:mod:`multiticket.core.textfile`: size, values with aliases
    expanded, depth, integer digits); a missing, oversized or malformed file is one UserError line."""
    if not source.is_file():
        raise UserError(f"{source}: no such {kind} file")
    return read_yaml(source)


def validate_task(data: Any, source: Path | str) -> TaskConfig:
    """Validate the common keys (every cross-field rule included); a one-line UserError naming the field."""
    register_model(TaskConfig)
    if not isinstance(data, dict):
        raise UserError(f"{source}: (top level): expected a mapping of keys, got {type(data).__name__}")
    try:
        return TaskConfig.model_validate(data)
    except ValidationError as exc:
        raise field_error(source, exc) from None


def resolve_task(config: TaskConfig, source: Path | str, user_code: bool = True,
                 run_dir: Path | None = None) -> ResolvedTask:
    """Validate the domain section with the domain's section model
    (:func:`~multiticket.config.sections.section_model`): the task, complete (``user_code``: see
    :func:`validate_section`). ``run_dir``: the task is a run directory's recorded config, so its
    section's paths must not resolve inside it (the validators see it)."""
    model = section_model(config.domain)
    context: dict[str, Any] = {"task_dir": Path(source).parent}
    if run_dir is not None:
        context["run_dir"] = run_dir
    data = config.domain_section()
    if run_dir is not None and isinstance(data, dict):  # recorded before a Since key existed: its legacy value
        data = with_legacy(data, model)
    section = validate_section(model, data, source, f"{config.domain}.", user_code, context)
    return ResolvedTask(config=config, section=section, source=Path(source))


def load_task(
    path: Path | str,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
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
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    seeds: list[int] | None = None,
    levels: int | None = None,
    user_code: bool = True,
    run_dir: Path | None = None,
) -> ResolvedTask:
    """Override and validate a task's data (``source`` names it in errors); ``user_code=False``
    imports no module the task names (see :func:`validate_section`); ``run_dir``: the data is that
    run directory's recorded config (see :func:`resolve_task`)."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: (top level): expected a mapping of keys, got {type(data).__name__}")
    data = apply_overrides(data, overrides if isinstance(overrides, Mapping) else list(overrides or []))
    if seeds is not None:
        data["seeds"] = seeds
    if levels is not None:
        data.setdefault("prune", {})
        if not isinstance(data["prune"], dict):
            raise UserError(f"{source}: prune: expected a mapping")
        data["prune"]["levels"] = levels
    labels = override_labels(overrides, seeds, levels)
    try:
        task = resolve_task(validate_task(data, source), source, user_code, run_dir)
    except UserError as first:  # look again for every error, each naming its --set
        raise collected_errors(data, source, labels, user_code, first, run_dir) from None
    task.overrides = tuple(labels)
    return task
