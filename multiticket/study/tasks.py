"""A study's parts as ordinary task files: each task's settings merged into its shipped task at a
budget, written to ``OUT/tasks/`` and loaded as ``multiticket run FILE`` loads it, and the plan of
what the results cover.

Apart from the loader (:mod:`multiticket.study.file`): these are the files the runs are made from,
and what ``multiticket run`` reruns by hand.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from multiticket.analysis.claims.results import PartPlan, StudyPlan, TaskRun
from multiticket.config import ResolvedTask, load_task
from multiticket.core.textfile import read_yaml
from multiticket.paths import shipped_tasks
from multiticket.study.file import Study, TaskSpec

#: settings whose mappings replace the task's instead of merging into it
REPLACED = ("rates", "model_args", "overrides")


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in: nested mappings merge, anything else (and :data:`REPLACED`) replaces."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        nested = isinstance(v, dict) and isinstance(out.get(k), dict) and k not in REPLACED
        out[k] = merge(out[k], v) if nested else copy.deepcopy(v)
    return out


def task_data(study: Study, key: str, task: TaskSpec, budget: str, device: str, seeds: Sequence[int]) -> dict[str, Any]:
    """The whole task file of one task at one budget (``multiticket run FILE`` runs it as the study does)."""
    part = study.spec.parts[key]
    b = part.budgets[budget]
    base = read_yaml(shipped_tasks()[task.base])
    data = merge(merge(base, task.settings), task.budgets.get(budget, {}))
    data = merge(merge(data, b.cuda), b.settings) if device == "cuda" else merge(data, b.settings)
    label = task.label or part.title
    data.update(name=task.name, controls=list(task.controls), seeds=list(seeds),
                description=f"{study.spec.description} ({budget} budget): "
                            f"{part.title}{'' if label == part.title else ', ' + label}. "
                            f"Written by scripts/{study.spec.script}.")
    data["train"] = {"steps": b.steps}
    data["rewind"] = {**(data.get("rewind") or {}), "step": b.rewind}
    data["prune"] = {**data["prune"], "levels": b.levels}
    return data


@dataclass
class PartTasks:
    """One part's tasks at one budget: loaded, with their task files and run directories."""

    key: str
    specs: list[TaskSpec]
    tasks: list[ResolvedTask]
    files: list[Path]
    run_dirs: list[Path]


def part_seeds(study: Study, key: str, budget: str, seeds: Sequence[int] | None) -> list[int]:
    part = study.spec.parts[key]
    return list(seeds or part.budgets[budget].seeds or part.seeds)


def build_tasks(study: Study, key: str, budget: str, out: Path, seeds: Sequence[int] | None, levels: int | None,
                device: str, overrides: Sequence[str] = ()) -> PartTasks:
    """Write a part's task files to ``OUT/tasks/`` (only when changed) and load them, validating every key;
    ``overrides`` (``--set KEY=VALUE``) apply to every task as ``multiticket run --set`` does."""
    task_dir = out / "tasks"
    task_dir.mkdir(parents=True, exist_ok=True)
    chosen = part_seeds(study, key, budget, seeds)
    specs = study.spec.parts[key].tasks
    tasks, files = [], []
    for spec in specs:
        data = task_data(study, key, spec, budget, device, chosen)
        if levels is not None:
            data["prune"]["levels"] = levels
        path = task_dir / f"{spec.name}.{budget}.yaml"
        text = yaml.safe_dump(data, sort_keys=False)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        tasks.append(load_task(path, list(overrides), seeds=chosen, levels=levels))
        files.append(path)
    return PartTasks(key, list(specs), tasks, files, [out / t.run_name for t in tasks])


def plan(study: Study, budget: str, out: Path, part_tasks: dict[str, PartTasks]) -> StudyPlan:
    """What the results cover (:mod:`multiticket.analysis.claims.results`)."""
    parts = []
    for key, pt in part_tasks.items():
        part = study.spec.parts[key]
        runs = [TaskRun(s.name, s.label or part.title, f, d) for s, f, d in zip(pt.specs, pt.files, pt.run_dirs)]
        parts.append(PartPlan(key, part.title, runs, study.claims[key], part.secondary, part.budgets[budget].minutes))
    return StudyPlan(study.spec.title, study.spec.paper, study.spec.script, budget, out, parts, study.unjudged,
                     list(study.spec.claims), study.spec.comparison)
