"""Where the files shipped with multiticket live (tasks, agent hyperparameters, corpora)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
RESOURCES = PACKAGE_DIR / "resources"
TASKS_DIR = RESOURCES / "tasks"
AGENTS_DIR = RESOURCES / "agents"
DATA_DIR = RESOURCES / "data"


def shipped_tasks() -> dict[str, Path]:
    """Task name (file stem) -> path of every task file shipped in ``tasks/``."""
    return {p.stem: p for p in sorted(TASKS_DIR.glob("*.yaml"))}


def resolve_task_path(arg: str) -> Path:
    """A task argument is a path to a YAML file or the name of a shipped task."""
    p = Path(arg)
    if p.exists() or p.suffix in (".yaml", ".yml"):
        return p
    return shipped_tasks().get(arg, p)
