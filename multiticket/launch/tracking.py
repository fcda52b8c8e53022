"""Experiment trackers: every finished unit of a run logged to MLflow and/or Weights & Biases.

A task's optional ``tracking:`` section (not hashed: naming a tracker renames no run) asks for
them. The driver wraps its reporter in a :class:`TrackingReporter` per run directory, so a unit is
logged where the driver learns that it is finished and written: right after training in an
in-process run, and, in a pool, on Ray or Slurm, when the unit's result comes back to the driver
(the workers never import a tracker; the driver reads the unit's files from the shared run
directory). The core knows nothing of trackers.

What one unit becomes, one tracker run per unit, grouped under the multiticket run:

- MLflow: an experiment named after the run directory (``<name>-<hash>``), one run per unit named
  ``seed_<s>/<control>/level_<L>`` and tagged ``multiticket.unit``; params: the resolved config
  (flattened, defaults included) and the unit's seed, control, level, sparsity; metrics: the
  unit's evaluation (``metrics.json``) at its last step, ``sparsity``, ``train_seconds``, and the
  learning curve (``curve.csv``) as step-wise metrics; tags: the unit directory and its files'
  paths (paths, not uploads).
- W&B: one run per unit in ``group=<run name>``, with a deterministic id; the same config, the
  curve logged against a ``step`` metric, the final metrics and paths in its summary.

A unit whose tracker run is finished is not logged again (a rerun of a finished task logs
nothing); an interrupted one is continued. A tracker that fails is reported in one warning line
and left alone for the rest of the run: tracking never fails or changes a unit.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiticket.config.sections import DEFAULTS_KEY, WandbSection
from multiticket.core.curves import CURVE_FILE
from multiticket.core.hooks import Reporter
from multiticket.core.store import RunStore, Unit
from multiticket.errors import UserError

#: the package each tracker needs (the ``tracking`` extra installs both)
PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}
#: the MLflow tag that names a unit (``seed_0/ticket/level_1``): how a logged unit is found again
UNIT_TAG = "multiticket.unit"
#: written into a W&B run's local ``files/`` folder once the unit is logged in full
WANDB_MARKER = "multiticket-logged.json"
#: what config keys never reach a tracker (the trackers' own settings, the library versions)
NOT_LOGGED = ("tracking", "versions", DEFAULTS_KEY)
MAX_PARAM = 6000  # MLflow's limit on a param value


def check_trackers(task: Any) -> None:
    """Refuse, before anything is written, a ``tracking:`` section whose tracker is not installed."""
    tracking = getattr(task.config, "tracking", None)
    for name, package in PACKAGES.items():
        if tracking is not None and getattr(tracking, name) is not None and importlib.util.find_spec(package) is None:
            raise UserError(f"{task.source}: tracking.{name}: the {package} package is not installed "
                            "(pip install 'multiticket[tracking]')")


def tracked(reporter: Reporter, task: Any, run_dir: Path) -> Reporter:
    """``reporter`` itself, or, when the task has a ``tracking:`` section, a :class:`TrackingReporter`
    around it for ``run_dir`` (the trackers' packages are imported only then, at the first unit)."""
    tracking = getattr(task.config, "tracking", None)
    if tracking is None:
        return reporter
    trackers: list[Any] = []
    if tracking.mlflow is not None:
        trackers.append(MlflowTracker(tracking.mlflow, Path(run_dir)))
    if tracking.wandb is not None:
        trackers.append(WandbTracker(tracking.wandb, Path(run_dir)))
    return TrackingReporter(reporter, trackers, Path(run_dir), task.resolved) if trackers else reporter


@dataclass
class UnitFacts:
    """What a tracker logs of one finished unit, read from its directory."""

    run_name: str
    unit: Unit
    unit_dir: Path
    record: dict[str, Any]
    config: dict[str, Any]
    curve: list[tuple[int, str, float]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def unit_fields(self) -> dict[str, Any]:
        """The unit's own settings: seed, control, level, sparsity and how it was trained."""
        keys = ("seed", "control", "level", "sparsity", "planned_sparsity", "alive", "prunable", "role",
                "retrain_mode", "start_step", "stop_step", "metric", "eval_method")
        return {k: self.record[k] for k in keys if k in self.record}

    def final_metrics(self) -> dict[str, float]:
        """The unit's evaluation (``metrics.json``'s ``metrics``), its sparsity and training seconds."""
        out = {str(k): float(v) for k, v in (self.record.get("metrics") or {}).items()}
        for key in ("sparsity", "train_seconds"):
            if isinstance(self.record.get(key), int | float):
                out[key] = float(self.record[key])
        return out

    def paths(self) -> dict[str, str]:
        """The unit directory and its files (``DONE``'s list), as absolute paths."""
        return {"unit_dir": str(self.unit_dir), **{f"file.{name}": path for name, path in self.files.items()}}


def unit_facts(run_dir: Path, unit: Unit, record: dict[str, Any], resolved: dict[str, Any]) -> UnitFacts:
    """Gather a finished unit's facts: its record, the run's full config, its curve and files."""
    unit_dir = (Path(run_dir) / unit.relpath()).resolve()
    listed = RunStore(Path(run_dir)).done_files(unit_dir) or {}
    files = {name: str(unit_dir / name) for name in sorted(listed)}
    curve = read_curve(unit_dir / CURVE_FILE) if CURVE_FILE in listed else []
    return UnitFacts(Path(run_dir).name, unit, unit_dir, record, full_config(resolved), curve, files)


def full_config(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved config with its ``defaults:`` block folded back in: every setting that ran."""
    def merge(kept: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
        out = dict(kept)
        for key, value in defaults.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            elif key not in out:
                out[key] = value
        return out

    kept = {k: v for k, v in resolved.items() if k not in NOT_LOGGED}
    defaults = {k: v for k, v in (resolved.get(DEFAULTS_KEY) or {}).items() if k not in NOT_LOGGED}
    return merge(kept, defaults)


def read_curve(path: Path) -> list[tuple[int, str, float]]:
    """The rows of a ``curve.csv`` (``step,series,value``); a malformed row is skipped."""
    rows = []
    for line in path.read_text().splitlines()[1:]:
        step, _, rest = line.partition(",")
        series, _, value = rest.rpartition(",")
        with contextlib.suppress(ValueError):
            rows.append((int(step), series, float(value)))
    return rows


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as dotted keys -> text (lists and values as JSON, strings as they are)."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return out


class TrackingReporter:
    """A :class:`~multiticket.core.hooks.Reporter` that passes everything on and logs each finished
    unit (trained now, or finished before and not yet logged) to the run's trackers."""

    def __init__(self, inner: Reporter, trackers: list[Any], run_dir: Path, resolved: dict[str, Any]) -> None:
        self.inner = inner
        self.trackers = trackers
        self.run_dir = run_dir
        self.resolved = resolved

    def unit_started(self, unit: Unit, start: int, stop: int) -> None:
        self.inner.unit_started(unit, start, stop)

    def step(self, step: int) -> None:
        self.inner.step(step)

    def warn(self, text: str) -> None:
        self.inner.warn(text)

    def unit_finished(self, unit: Unit, record: dict[str, Any] | None, skipped: bool) -> None:
        """Report the unit, then log it to every tracker that does not hold it yet."""
        self.inner.unit_finished(unit, record, skipped)
        if record is None:
            return
        facts: UnitFacts | None = None
        for tracker in list(self.trackers):
            try:
                importlib.import_module(tracker.module)  # first: importing sets the package's own log levels
                with quiet():
                    if tracker.logged(unit):
                        continue
                    facts = facts or unit_facts(self.run_dir, unit, record, self.resolved)
                    tracker.log(facts)
            except Exception as exc:  # noqa: BLE001 - a tracker never fails a unit
                self.trackers.remove(tracker)
                why = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                self.inner.warn(f"tracking: {tracker.name}: {unit.relpath()}: {why}; "
                                f"nothing more is logged to {tracker.name} in this run")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The trackers' own chatter (MLflow's database set-up, deprecation warnings) kept off the terminal."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic", "wandb")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


# -- MLflow ------------------------------------------------------------------------------------------


def mlflow_uri(target: str) -> tuple[str, str | None]:
    """(tracking URI, artifact location for new experiments) of ``tracking.mlflow``: a URI
    (``scheme:...``) as given; a path ending in ``.db``/``.sqlite`` is an SQLite store; any other
    path a folder holding ``mlflow.db`` (MLflow 3 refuses plain file stores unless asked;
    ``file:...`` still asks for one)."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", target):
        return target, None
    path = Path(target).expanduser().resolve()
    db = path if path.suffix in (".db", ".sqlite") else path / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db.as_posix()}", (db.parent / "mlartifacts").as_uri()


class MlflowTracker:
    """One MLflow experiment per run directory, one MLflow run per unit."""

    name = "mlflow"
    module = "mlflow.tracking"

    def __init__(self, target: str, run_dir: Path) -> None:
        self.uri, self.artifacts = mlflow_uri(target)
        self.run_name = run_dir.name
        self.run_dir = run_dir
        self.client: Any = None
        self.experiment = ""
        #: unit relpath -> the MLflow run that logs it (read once, on first use)
        self.runs: dict[str, Any] = {}

    def open(self) -> Any:
        """The client, this run's experiment (created, or restored when deleted) and its unit runs."""
        if self.client is not None:
            return self.client
        from mlflow.entities import ViewType
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        exp = client.get_experiment_by_name(self.run_name)
        if exp is None:
            tags = {"multiticket.run_dir": str(self.run_dir.resolve())}
            self.experiment = client.create_experiment(self.run_name, artifact_location=self.artifacts, tags=tags)
        else:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            self.experiment = exp.experiment_id
        token = None
        while True:
            page = client.search_runs([self.experiment], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                      page_token=token)
            for run in page:
                unit = run.data.tags.get(UNIT_TAG)
                if unit and (unit not in self.runs or run.info.status == "FINISHED"):
                    self.runs[unit] = run
            token = page.token
            if not token:
                break
        self.client = client
        return client

    def logged(self, unit: Unit) -> bool:
        self.open()
        run = self.runs.get(unit.relpath().as_posix())
        return run is not None and run.info.status == "FINISHED"

    def log(self, facts: UnitFacts) -> None:
        """Create the unit's run (or continue an unfinished one), log it in batches, finish it."""
        from mlflow.entities import Metric, Param, RunTag

        client = self.open()
        rel = facts.unit.relpath().as_posix()
        run = self.runs.get(rel)
        if run is None:
            run = client.create_run(self.experiment, run_name=rel, tags={UNIT_TAG: rel, "multiticket.run": self.run_name})
        present_params, present_metrics = dict(run.data.params), set(run.data.metrics)
        values = {_key(k): v for k, v in flat(facts.config).items()}
        values.update({_key(k): str(v) for k, v in facts.unit_fields().items()})
        params = [Param(k, v[:MAX_PARAM]) for k, v in values.items() if k not in present_params]
        tags = [RunTag(f"multiticket.{k}", v) for k, v in facts.paths().items()]
        now = int(time.time() * 1000)
        metrics = [Metric(_key(s), v, now + i, step) for i, (step, s, v) in enumerate(facts.curve)
                   if _key(s) not in present_metrics]
        stop = int(facts.record.get("stop_step") or 0)
        metrics += [Metric(_key(k), v, now + len(metrics), stop) for k, v in facts.final_metrics().items()
                    if _key(k) not in present_metrics]
        run_id = run.info.run_id
        for i in range(0, max(len(params), len(tags)), 100):
            client.log_batch(run_id, params=params[i:i + 100], tags=tags[i:i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i:i + 1000])
        client.set_terminated(run_id, "FINISHED")
        self.runs[rel] = client.get_run(run_id)


def _key(name: str) -> str:
    """A name MLflow accepts (letters, digits, ``_ - . / :`` and spaces)."""
    return re.sub(r"[^A-Za-z0-9_\-./: ]", "_", name)[:250]


# -- Weights & Biases --------------------------------------------------------------------------------


class WandbTracker:
    """One W&B run per unit, ``group=<run name>``, its id derived from the run name and the unit."""

    name = "wandb"
    module = "wandb"

    def __init__(self, section: WandbSection, run_dir: Path) -> None:
        self.section = section
        self.run_name = run_dir.name
        self.base = Path(section.dir or os.environ.get("WANDB_DIR") or ".").expanduser().resolve()

    def run_id(self, unit: Unit) -> str:
        """The same id for the same unit of the same run, every time (W&B resumes it by id)."""
        return hashlib.sha256(f"{self.run_name}/{unit.relpath().as_posix()}".encode()).hexdigest()[:20]

    def logged(self, unit: Unit) -> bool:
        """A local run folder of this unit holds the marker written once it was logged in full."""
        if self.section.mode == "disabled":
            return False
        return any(self.base.glob(f"wandb/*run-*-{self.run_id(unit)}/files/{WANDB_MARKER}"))

    def log(self, facts: UnitFacts) -> None:
        """Log the config, the curve (against ``step``), the final metrics and paths; mark it logged."""
        import wandb

        unit = facts.unit
        self.base.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, save_code=False, disable_git=True,
                                  x_disable_meta=True, x_disable_machine_info=True, x_save_requirements=False)
        config = {**facts.config, **facts.unit_fields(), "paths": facts.paths()}
        run = wandb.init(project=self.section.project, entity=self.section.entity, mode=self.section.mode,
                         dir=str(self.base), group=self.run_name, job_type=unit.control, id=self.run_id(unit),
                         name=f"{self.run_name}/{unit.relpath().as_posix()}", resume="allow", config=config,
                         settings=settings, reinit="create_new")
        folder = Path(run.dir) if self.section.mode != "disabled" else None
        try:
            run.define_metric("step", hidden=True)
            for series in dict.fromkeys(s for _, s, _ in facts.curve):
                run.define_metric(series, step_metric="step")
            for row in _rows_by_step(facts.curve):
                run.log(row)
            run.summary.update({**facts.final_metrics(), "stop_step": facts.record.get("stop_step")})
        finally:
            run.finish()
        if folder is not None and folder.is_dir():
            (folder / WANDB_MARKER).write_text(json.dumps({"unit": unit.relpath().as_posix(), "run": self.run_name}))


def _rows_by_step(curve: list[tuple[int, str, float]]) -> Iterator[dict[str, float]]:
    """The curve as W&B rows: values of one step together, a repeated series at a step in a new row."""
    row: dict[str, float] = {}
    for step, series, value in curve:
        if row and (row["step"] != step or series in row):
            yield row
            row = {}
        row["step"] = step
        row[series] = value if math.isfinite(value) else float("nan")
    if row:
        yield row
