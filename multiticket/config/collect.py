"""The collecting pass: every validation error of a task at once, each naming the ``--set`` override
that caused it.

Loading a task (:func:`multiticket.config.loading.task_from_data`) stops at its first error: pydantic's
model validators run only once every field is valid, and the domain section is validated after
the common keys. When that first error happens, this collecting pass looks again, on its own:
the field errors of the common keys, every cross-field rule of
:data:`~multiticket.config.rules.CROSS_FIELD_RULES` (each run separately, when the common fields are
valid), the field errors of the domain section, and the checks a domain's ``Section`` runs only
here because they need more than the section (``whole_section_problems``: the action space an
RL algorithm needs, which takes an environment). An error whose field a ``--set`` (or
``--seeds`` / ``--levels``) gave is reported as that override, not as the task file it
overrode. The happy path never comes here, so a valid task costs nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from multiticket.config.messages import error_field, named_field, register_model
from multiticket.config.rules import CROSS_FIELD_RULES, TaskConfig
from multiticket.config.sections import section_model
from multiticket.core.registry import domains
from multiticket.errors import UserError, UserErrors

#: a problem: (dotted field, why), or (None, a whole line) for an error that names its own cause
Problem = tuple[str | None, str]


def override_labels(
    overrides: Sequence[str] | Mapping[str, Any] | None, seeds: Sequence[int] | None, levels: int | None
) -> list[tuple[str, str]]:
    """(dotted key, how the user wrote it) of every override, the later ones first (they win)."""
    out: list[tuple[str, str]] = []
    if isinstance(overrides, Mapping):
        out += [(str(k).strip(), f"set {k}={v!r}") for k, v in overrides.items()]
    else:
        out += [(item.partition("=")[0].strip(), f"--set {item}") for item in overrides or []]
    if seeds is not None:
        out.append(("seeds", "--seeds " + ",".join(map(str, seeds))))
    if levels is not None:
        out.append(("prune.levels", f"--levels {levels}"))
    return out[::-1]


def line(source: Path | str, problem: Problem, labels: list[tuple[str, str]]) -> str:
    """One error line: the override that set ``field`` (or a section or key around it), else one
    whose key the reason names (a cross-field rule: ``--set train.steps=100: rewind.step: must be
    below train.steps (100)``), else the file; then the field, as always."""
    field, why = problem
    if field is None:
        return why
    for key, label in labels:
        if field == key or field.startswith(f"{key}.") or key.startswith(f"{field}."):
            return f"{label}: {field}: {why}"
    for key, label in labels:  # a cross-field rule names the other key it checks against
        if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w.])", why):
            return f"{label}: {field}: {why}"
    return f"{source}: {field}: {why}"


def common_problems(data: dict[str, Any]) -> list[Problem]:
    """Field errors of the common keys; when there are none, every failing cross-field rule."""
    register_model(TaskConfig)
    try:
        config = TaskConfig.model_validate(data, context={"rules_apart": True})
    except ValidationError as exc:
        return [error_field(err, exc.title) for err in exc.errors()]
    problems: list[Problem] = []
    for rule in CROSS_FIELD_RULES:
        try:
            rule(config)
        except ValueError as exc:
            problems.append(named_field(str(exc)) or ("(top level)", str(exc)))
    return problems


def section_problems(data: dict[str, Any], source: Path | str, user_code: bool,
                     run_dir: Path | None = None) -> list[Problem]:
    """Field errors of the domain section, then the section's own whole-section checks
    (``run_dir``: the data is that run directory's recorded config, as its validators must know)."""
    domain = data.get("domain")
    if not isinstance(domain, str) or domain not in domains:
        return []  # a common-key error says so
    try:
        model = section_model(domain)
    except UserError as exc:
        return [(None, f"{source}: {exc}")]
    section = data.get(domain)
    section = {} if section is None else section
    if not isinstance(section, dict):
        return [(domain, "expected a mapping")]
    problems: list[Problem] = []
    failed: set[str] = set()
    register_model(model)
    try:
        context: dict[str, Any] = {"user_code": user_code, "task_dir": Path(source).parent}
        if run_dir is not None:
            context["run_dir"] = run_dir
        model.model_validate(section, context=context)
    except ValidationError as exc:
        problems += [error_field(err, exc.title, f"{domain}.") for err in exc.errors()]
        failed = {str(err["loc"][0]) for err in exc.errors() if err["loc"]} or {"(top level)"}
    whole = getattr(model, "whole_section_problems", None)
    if whole is not None and user_code and "(top level)" not in failed:
        problems += [(f"{domain}.{field}", why) for field, why in whole(section, failed)]
    return problems


def collected_errors(
    data: dict[str, Any],
    source: Path | str,
    labels: list[tuple[str, str]],
    user_code: bool,
    first: UserError,
    run_dir: Path | None = None,
) -> UserError:
    """Every problem of ``data`` as one error of one line each (``first``, the error that stopped
    loading, when this pass finds nothing it can name: it is then about something else)."""
    problems = [*common_problems(data), *section_problems(data, source, user_code, run_dir)]
    lines = list(dict.fromkeys(line(source, p, labels) for p in problems))
    if not lines:
        return first
    return UserErrors(lines) if len(lines) > 1 else UserError(lines[0])
