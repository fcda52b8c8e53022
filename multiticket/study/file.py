"""The study file's schema (pydantic, unknown keys refused) and its loader, which checks what the
schema cannot: budgets, shipped tasks, controls and claims, each error one line naming the field.

Apart from the task files and the running (:mod:`multiticket.study.tasks`, :mod:`.run`): a study
is checked whole before anything is written or run. The schema's keys are described in
:mod:`multiticket.study`'s docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field

from multiticket.analysis.claims import ClaimBase, claim_spec
from multiticket.config import read_yaml_file, validate_section
from multiticket.core.controls import CONTROLS
from multiticket.errors import UserError
from multiticket.paths import shipped_tasks
from multiticket.schema import Strict

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class StudyModel(Strict):
    """Unknown keys are errors and nothing is coerced: a study decides hours of compute."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class BudgetSpec(StudyModel):
    """One part at one budget: training length, depth, rewind point, and settings merged last."""

    steps: int = Field(gt=0)
    levels: int = Field(ge=0, le=100)
    #: rewind step k: an integer in domain units or 'N%' of steps
    rewind: int | str
    settings: dict[str, Any] = Field(default_factory=dict)
    #: merged too (before ``settings``) when the study runs with --device cuda (bf16, ...)
    cuda: dict[str, Any] = Field(default_factory=dict)
    #: seeds at this budget when --seeds is not given (None: the part's)
    seeds: list[int] | None = None
    #: units at once when --workers is not given ("auto": the CPUs this process may use)
    workers: int | Literal["auto"] = "auto"
    #: estimated wall minutes (shown beside the measured ones)
    minutes: float | None = None


class TaskSpec(StudyModel):
    """One task of a part: a shipped task and the settings the study merges into it."""

    name: str = Field(pattern=NAME, max_length=200)
    #: what distinguishes it within its part (None: the part's title)
    label: str | None = None
    base: str = Field(min_length=1, max_length=200)
    controls: list[str]
    settings: dict[str, Any] = Field(default_factory=dict)
    #: budget -> settings of this task at that budget only (a bigger model on the paper budget)
    budgets: dict[str, dict[str, Any]] = Field(default_factory=dict)


class PartSpec(StudyModel):
    """One part: its tasks, run and judged together (one line of the results' parts table)."""

    title: str = Field(min_length=1, max_length=300)
    default: bool = True
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    secondary: list[str] = Field(default_factory=list)
    tasks: list[TaskSpec] = Field(min_length=1)
    budgets: dict[str, BudgetSpec]
    #: claim ids of the study, or {id: ..., <parameter>: ...} overriding the claim's parameters here
    claims: list[str | dict[str, Any]] = Field(default_factory=list)


class StudyFile(StudyModel):
    """A whole study file (the schema in :mod:`multiticket.study`'s docstring)."""

    title: str = Field(min_length=1, max_length=300)
    paper: str = Field(min_length=1, max_length=1000)
    description: str = Field(min_length=1, max_length=300)
    script: str = Field(min_length=1, max_length=200)
    out: str = Field(min_length=1, max_length=500)
    budgets: list[str] = Field(min_length=1)
    default_budget: str
    comparison: bool = False
    claims: dict[str, dict[str, Any]] = Field(default_factory=dict)
    parts: dict[str, PartSpec] = Field(min_length=1)


@dataclass
class Study:
    """A loaded study: the validated file, and per part its claims with their parameters resolved."""

    source: Path
    spec: StudyFile
    claims: dict[str, list[ClaimBase]]
    #: claims no part judges (not attempted by this study)
    unjudged: list[ClaimBase]

    @property
    def default_parts(self) -> list[str]:
        return [k for k, p in self.spec.parts.items() if p.default]


# -- loading --------------------------------------------------------------------------------------


def _check(ok: bool, source: Path, where: str, why: str) -> None:
    if not ok:
        raise UserError(f"{source}: {where}: {why}")


def _check_part(spec: StudyFile, key: str, part: PartSpec, source: Path) -> None:
    """Budgets, shipped tasks and controls of one part."""
    where = f"parts.{key}"
    _check(bool(re.fullmatch(NAME, key)), source, where, "a part's name is letters, digits, . _ -")
    for b in [*spec.budgets, *part.budgets]:
        _check(b in part.budgets, source, f"{where}.budgets", f"missing budget '{b}'")
        _check(b in spec.budgets, source, f"{where}.budgets.{b}", f"unknown budget (budgets: {', '.join(spec.budgets)})")
    shipped = shipped_tasks()
    for i, task in enumerate(part.tasks):
        _check(task.base in shipped, source, f"{where}.tasks.{i}.base", f"unknown shipped task '{task.base}'")
        for c in task.controls:
            _check(c in CONTROLS and c != "ticket", source, f"{where}.tasks.{i}.controls", CONTROLS.unknown(c))
        for b in task.budgets:
            _check(b in spec.budgets, source, f"{where}.tasks.{i}.budgets.{b}", "unknown budget")


def _part_claims(spec: StudyFile, key: str, part: PartSpec, defs: dict[str, ClaimBase], source: Path) -> list[ClaimBase]:
    """The part's claims: each the study's definition with the part's overrides."""
    out: list[ClaimBase] = []
    tasks = [t.name for t in part.tasks]
    for i, entry in enumerate(part.claims):
        where = f"parts.{key}.claims.{i}"
        given = {"id": entry} if isinstance(entry, str) else dict(entry)
        cid = given.get("id")
        _check(isinstance(cid, str) and cid in defs, source, f"{where}.id",
               f"unknown claim {cid!r} (the study's claims: {', '.join(defs)})")
        claim = claim_spec({**spec.claims[str(cid)], "id": cid, **given}, where, source)
        for name in (claim.task, getattr(claim, "against", None)):
            _check(name is None or name in tasks, source, where, f"task '{name}' is not a task of this part")
        for c in [*claim.controls_needed(), *getattr(claim, "controls", {})]:
            _check(c in CONTROLS, source, f"{where}.control", CONTROLS.unknown(c))
        control = getattr(claim, "control", None)
        _check(claim.judge != "beats-control" or CONTROLS[str(control)].role == "random", source,
               f"{where}.control", f"'{control}' is not a random control")
        _check(claim.id not in [c.id for c in out], source, where, f"claim '{claim.id}' listed twice")
        out.append(claim)
    return out


def load_study(path: Path | str) -> Study:
    """Read (bounded) and validate a study file; a one-line UserError naming the field otherwise."""
    source = Path(path)
    spec = validate_section(StudyFile, read_yaml_file(source, "study"), source, "")
    assert isinstance(spec, StudyFile)
    _check(spec.default_budget in spec.budgets, source, "default_budget", f"not one of {', '.join(spec.budgets)}")
    defs = {cid: claim_spec({**d, "id": cid}, f"claims.{cid}", source) for cid, d in spec.claims.items()}
    claims: dict[str, list[ClaimBase]] = {}
    for key, part in spec.parts.items():
        _check_part(spec, key, part, source)
        claims[key] = _part_claims(spec, key, part, defs, source)
    names = [t.name for p in spec.parts.values() for t in p.tasks]
    _check(len(names) == len(set(names)), source, "parts", "two tasks share a name")
    judged = {c.id for found in claims.values() for c in found}
    for cid, claim in defs.items():
        _check(cid in judged or claim.judge == "not-attempted", source, f"claims.{cid}",
               "no part judges it (list it under a part's claims, or make its judge not-attempted)")
    return Study(source, spec, claims, [c for c in defs.values() if c.id not in judged])
