"""One run directory, read for analysis: its config, finished units, what is still missing.

Everything the report and the comparison show comes from here, so both agree on which units
count (only those whose ``DONE`` checksums match, via :class:`RunStore`) and on how seeds are
averaged. Everything read is validated first (:mod:`multiticket.rundir`), so a malformed run
directory is one line naming the file and field. Nothing here writes to the run directory except
:func:`load_run` refreshing ``summary.csv`` (through :func:`write_summary`, which rewrites it only
when its content changes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from multiticket.analysis.metric_choice import choose, direction, direction_text, recorded_metrics
from multiticket.analysis.stats import mean_std
from multiticket.analysis.summary import write_summary
from multiticket.config import TaskConfig, config_hash
from multiticket.config.sections import section_model
from multiticket.core.controls import CONTROLS as CONTROL_SPECS
from multiticket.core.controls import Role, role_of
from multiticket.core.facts import DomainFacts
from multiticket.core.legacy import legacy_facts, legacy_layer_roles
from multiticket.core.mask import Mask
from multiticket.core.store import RunStore, Unit
from multiticket.errors import UserError
from multiticket.provenance import read_provenance
from multiticket.rundir import corrupt_reason, finished_records, read_baselines, read_run_config


@dataclass
class RunData:
    """The finished part of one run directory plus what its config plans."""

    root: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]
    summary_path: Path
    task_config: TaskConfig
    #: the metric this view reads (None: the primary); see :meth:`with_metric`
    selected: str | None = None
    #: ``baselines.json``'s numbers (:mod:`multiticket.analysis.degenerate`); None: not measured
    baselines: dict[str, float] | None = None
    _masks: dict[tuple[int, int, str], Mask | None] = field(default_factory=dict, repr=False)
    #: library versions recorded in config.yaml (None for a run that has none)
    versions: dict[str, str] | None = None
    #: what analysis computed once for this view (the verdicts, :func:`verdicts.run_verdict`)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- plan -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.root.name

    @property
    def task(self) -> str:
        return str(self.config.get("name", self.root.name))

    @property
    def domain(self) -> str:
        return str(self.config.get("domain", "?"))

    @cached_property
    def provenance(self) -> dict[str, Any] | None:
        """The validated ``provenance.json`` (:mod:`multiticket.provenance`), None for a run made before it."""
        return read_provenance(self.root)

    @cached_property
    def facts(self) -> DomainFacts:
        """What the run's domain declared (step unit, header rows, ...), as the run recorded it."""
        return run_facts(self.config, self.provenance)

    def layer_roles(self, names: Iterable[str]) -> dict[str, str]:
        """Name -> role of those of ``names`` whose role the domain knows by name (the rest have
        theirs by position, :func:`multiticket.analysis.layers.roles`), as recorded by the run."""
        recorded = self.facts.layer_roles
        if recorded is None:
            return legacy_layer_roles(self.domain, names)
        return {n: recorded[n] for n in names if n in recorded}

    @cached_property
    def config_hash(self) -> str:
        """The hash the run's name carries, recomputed from its config (the domain's section model
        decides which of its keys count; without the domain's package, every recorded key does)."""
        resolved = {k: v for k, v in self.config.items() if k != "versions"}
        try:
            section = section_model(self.task_config.domain)
        except (UserError, ImportError):
            section = None
        return config_hash(resolved, section)

    @property
    def description(self) -> str:
        return self.task_config.description

    @property
    def seeds(self) -> list[int]:
        """The config's seeds, then any other seed with a finished unit (a directory whose
        config.yaml an older version overwrote with the last invocation's seeds)."""
        return list(dict.fromkeys([*self.task_config.seeds, *sorted({r["seed"] for r in self.records})]))

    @property
    def planned_levels(self) -> int:
        return self.task_config.prune.levels

    @property
    def controls(self) -> list[str]:
        """Planned controls (without ``ticket``), in config order."""
        return list(self.task_config.controls)

    @property
    def tolerance(self) -> float:
        return self.task_config.report.tolerance

    def planned_units(self) -> list[Unit]:
        units = []
        for seed in self.seeds:
            units += [Unit(seed, "ticket", level) for level in range(self.planned_levels + 1)]
            if any(CONTROL_SPECS[c].source == "dense_td" for c in self.controls if c in CONTROL_SPECS):
                units.append(Unit(seed, "dense_td", 0))  # the targeted-dropout dense run
            for control in self.controls:
                units += [Unit(seed, control, level) for level in range(1, self.planned_levels + 1)]
        return units

    @cached_property
    def unfinished(self) -> list[Unit]:
        """Planned units without a finished result (missing or corrupt)."""
        done = {(r["seed"], r["control"], r["level"]) for r in self.records}
        return [u for u in self.planned_units() if (u.seed, u.control, u.level) not in done]

    @cached_property
    def corrupt(self) -> dict[Unit, str]:
        """Unfinished units whose ``DONE`` is there but does not hold (checksums, unreadable) -> why."""
        store = RunStore(self.root)
        found = {u: corrupt_reason(store, u) for u in self.unfinished}
        return {u: why for u, why in found.items() if why is not None}

    @cached_property
    def missing(self) -> list[Unit]:
        """Unfinished units that are not corrupt: never written, or interrupted before ``DONE``."""
        return [u for u in self.unfinished if u not in self.corrupt]

    def missing_lines(self) -> list[str]:
        """The missing units, compacted to one line per seed and control: 'seed 1 ticket: levels 3-4'."""
        by: dict[tuple[int, str], list[int]] = defaultdict(list)
        for u in self.missing:
            by[(u.seed, u.control)].append(u.level)
        return [f"seed {s} {c}: levels {_ranges(levels)}" for (s, c), levels in by.items()]

    # -- finished results ---------------------------------------------------------------------
    @property
    def primary_metric(self) -> str:
        """The metric the adapter declared primary (recorded in every unit)."""
        return str(self.records[0]["metric"]) if self.records else ""

    @property
    def metric(self) -> str:
        """The metric this view reports: the selected one (:meth:`with_metric`), else the primary."""
        return self.selected or self.primary_metric

    @property
    def metric_names(self) -> list[str]:
        """Every numeric metric the finished units recorded, the primary first."""
        return recorded_metrics(self.records)

    @property
    def judged(self) -> bool:
        """Whether :attr:`metric` has a better direction (a spread or a length has none: no verdicts)."""
        return self._direction is not None

    @property
    def _direction(self) -> bool | None:
        if not self.records:
            return True
        return direction(self.metric, self.primary_metric, bool(self.records[0].get("higher_is_better", True)))

    @property
    def higher_is_better(self) -> bool:
        return self._direction is not False

    @property
    def direction(self) -> str:
        return direction_text(self._direction)

    def with_metric(self, name: str | None) -> RunData:
        """The same run read through another metric (None: the primary); masks stay shared."""
        return replace(self, selected=name, _masks=self._masks, cache={})

    @property
    def seen_controls(self) -> list[str]:
        """``ticket`` first, then planned controls, then any other control found on disk."""
        found = {r["control"] for r in self.records}
        order = ["ticket", *self.controls, *sorted(found)]
        return [c for c in dict.fromkeys(order) if c in found]

    def role(self, control: str) -> Role:
        """What a control is for, as its units recorded it (``role`` in ``metrics.json``), else as
        its registered spec says (:func:`multiticket.core.controls.role_of`)."""
        return role_of(control, self._recorded_roles.get(control))

    @cached_property
    def _recorded_roles(self) -> dict[str, str]:
        return {r["control"]: str(r["role"]) for r in self.records if r.get("role")}

    @property
    def random_controls(self) -> list[str]:
        """The random controls with a finished unit: a winning ticket must beat each of them."""
        return [c for c in self.seen_controls if c != "ticket" and self.role(c) == "random"]

    @property
    def levels(self) -> list[int]:
        return sorted({r["level"] for r in self.records})

    def values(self, control: str, level: int, metric: str | None = None) -> dict[int, float]:
        """seed -> value of ``metric`` (the primary one by default) of the finished units."""
        metric = metric or self.metric
        return {
            r["seed"]: float(r["metrics"][metric])
            for r in self.records
            if r["control"] == control and r["level"] == level and type(r["metrics"].get(metric)) in (int, float)
        }

    def stat(self, control: str, level: int) -> tuple[float, float, int]:
        """(mean, std, n) of the primary metric over seeds; std is 0 for one seed, NaN for none."""
        return mean_std(list(self.values(control, level).values()))

    @cached_property
    def sparsity(self) -> dict[int, float]:
        """level -> achieved sparsity (the ticket's; every control of a level shares it)."""
        out: dict[int, float] = {}
        for r in self.records:
            if r["control"] == "ticket" or r["level"] not in out:
                out[r["level"]] = float(r["sparsity"])
        return out

    def remaining(self, level: int) -> float:
        return 1.0 - self.sparsity[level]

    @property
    def dense(self) -> float:
        """Mean dense (ticket level 0) metric over seeds, NaN if no dense unit is finished."""
        return self.stat("ticket", 0)[0]

    # -- masks ------------------------------------------------------------------------------
    def mask(self, seed: int, level: int, control: str = "ticket") -> Mask | None:
        """The mask of a finished unit (cached), or None."""
        key = (seed, level, control)
        if key not in self._masks:
            d = self.root / Unit(seed, control, level).relpath()
            done = any(r["seed"] == seed and r["control"] == control and r["level"] == level for r in self.records)
            self._masks[key] = Mask.load(d / "mask.safetensors") if done else None
        return self._masks[key]

    def ticket_masks(self) -> dict[int, dict[int, Mask]]:
        """level -> seed -> ticket mask, for every finished ticket unit."""
        out: dict[int, dict[int, Mask]] = defaultdict(dict)
        for r in self.records:
            if r["control"] == "ticket":
                m = self.mask(r["seed"], r["level"])
                if m is not None:
                    out[r["level"]][r["seed"]] = m
        return dict(sorted(out.items()))


def run_facts(config: dict[str, Any], provenance: dict[str, Any] | None) -> DomainFacts:
    """A run's domain facts from its validated ``provenance.json``; for a run recorded before them,
    what the report showed then (:func:`multiticket.core.legacy.legacy_facts`)."""
    recorded = (provenance or {}).get("domain_facts")
    if isinstance(recorded, dict):
        return DomainFacts.model_validate(recorded)
    domain = str(config.get("domain", "?"))
    return legacy_facts(domain, config.get(domain), (provenance or {}).get("hyperparameters"))


def _ranges(levels: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    levels = sorted(levels)
    parts: list[str] = []
    start: int | None = levels[0]
    for prev, cur in zip(levels, [*levels[1:], None]):
        if cur != prev + 1:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(parts)


def load_run(run_dir: Path | str, metric: str | None = None, lenient: bool = False) -> RunData:
    """Read and validate a run directory (refreshing its ``summary.csv``); UserError if it is
    not one, or when its config or a finished unit's files are malformed (nothing is written then).
    The view reads ``metric`` (``--metric``), else the task's ``report.metric``, else the primary
    metric; UserError naming the recorded metrics when that one is not among them (``lenient``:
    a task's ``report.metric`` the units do not record falls back to the primary metric, for
    readers other than the report: the API, ``compare``)."""
    root = Path(run_dir)
    run_config = read_run_config(root)
    records = finished_records(root)
    metrics = sorted({r["metric"] for r in records})
    if len(metrics) > 1:
        raise UserError(f"{root}: units disagree on the primary metric ({', '.join(map(repr, metrics))})")
    directions = {r["higher_is_better"] for r in records}
    if len(directions) > 1:
        raise UserError(f"{root}: units disagree on higher_is_better of '{metrics[0]}'")
    if metric is not None:
        selected = choose(records, metric, "--metric")
    else:
        try:
            selected = choose(records, run_config.config.report.metric, f"{run_config.path}: report.metric")
        except UserError:
            if not lenient:
                raise
            selected = None
    summary_path, _ = write_summary(root, records)
    found = read_baselines(root)
    return RunData(root=root, config=run_config.data, records=records, summary_path=summary_path,
                   task_config=run_config.config, selected=selected, versions=run_config.versions,
                   baselines=None if found is None else found["baselines"])
