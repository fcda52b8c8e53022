"""The report header: what ran (domain, algorithm or model, environment or dataset, the resolved
hyperparameters, train and rewind steps, library versions, the command line) and what is missing.

The run name stays what the task file called it (renaming would orphan run directories), so the
header shows the real values from ``config.yaml`` and ``provenance.json``
(:mod:`multiticket.provenance`); a run made before that record existed shows "not recorded"
where only it knows. What ran in the domain's own terms (algorithm and environment, model and
dataset) are the header rows its adapter declared and the run recorded (:mod:`multiticket.core.facts`);
this module knows no domain. Both files are untrusted: the common keys of ``config.yaml`` are validated
by :mod:`multiticket.rundir`, everything else is shown as text here (the template escapes it),
cut to a bounded length. A transfer run is titled source → target, each with its algorithm or
model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from multiticket.analysis.rundata import RunData, run_facts
from multiticket.core.legacy import legacy_hyperparameters
from multiticket.errors import UserError
from multiticket.provenance import read_provenance
from multiticket.rundir import read_run_config

NOT_RECORDED = "not recorded (the run predates this record)"
#: longest value shown in one header cell
MAX_TEXT = 4000


def text(value: Any) -> str:
    """A value of an untrusted file as bounded text: strings as they are, the rest as JSON."""
    shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return shown if len(shown) <= MAX_TEXT else shown[:MAX_TEXT] + " …"


def _section(config: dict[str, Any]) -> dict[str, Any]:
    section = config.get(str(config.get("domain")))
    return section if isinstance(section, dict) else {}


def identity(config: dict[str, Any], provenance: dict[str, Any] | None) -> str:
    """What a run trained, in a few words (``PPO, CartPole-v1``; ``bert, rotten_tomatoes``), as its
    domain declared it; the domain's name where it declared nothing."""
    return text(run_facts(config, provenance).identity or config.get("domain", "?"))


def title(run: RunData) -> str:
    """The page title: the task, or for a transfer run source → target with both algorithms."""
    transfer = run.config.get("transfer")
    if not isinstance(transfer, dict):
        return run.task
    source_name = text(transfer.get("source", "?"))
    target = run.task.removesuffix(f"-from-{source_name}")
    try:
        source_dir = Path(str(transfer.get("source_dir")))
        source_config = read_run_config(source_dir).data
        source = f"{text(source_config.get('name'))} ({identity(source_config, read_provenance(source_dir))})"
    except UserError:  # the source run moved or is gone: its directory name is what is left
        source = source_name
    return f"{source} → {target} ({identity(run.config, run.provenance)})"


def what_ran(run: RunData) -> list[tuple[str, str]]:
    """The rows that say what ran: model or algorithm, data, hyperparameters, steps, versions, command."""
    record = run.provenance
    rows = [(text(label), text(value)) for label, value in run.facts.header.items()]
    rows.append(("model class", text(record["model_class"]) if record and record.get("model_class") else NOT_RECORDED))
    rows.append(("hyperparameters", hyperparameters(run, record)))
    rows.append(("train steps / rewind step", steps(run)))
    rows.append(("library versions", ", ".join(f"{k} {v}" for k, v in run.versions.items())
                 if run.versions else NOT_RECORDED))
    commands = record.get("commands") if record else None
    rows.append(("command line", " ; ".join(commands) if commands else NOT_RECORDED))
    return rows


def hyperparameters(run: RunData, record: dict[str, Any] | None) -> str:
    """The resolved hyperparameters of ``provenance.json``; for an older run what its config says."""
    if record and record.get("hyperparameters") is not None:
        values = ", ".join(f"{text(k)}={text(v)}" for k, v in record["hyperparameters"].items())
        source = f" [{text(record['hyperparameters_from'])}]" if record.get("hyperparameters_from") else ""
        return text(values + source)
    s = _section(run.config)
    origin = legacy_hyperparameters(run.domain, s)
    if origin is not None:
        return text(f"{NOT_RECORDED}; config: {origin}")
    if s:
        return text(f"{NOT_RECORDED}; config: " + ", ".join(f"{text(k)}={text(v)}" for k, v in s.items()))
    return NOT_RECORDED


def steps(run: RunData) -> str:
    cfg = run.task_config
    rewind = f"{cfg.rewind_step()}" + (f" ({cfg.rewind.step})" if isinstance(cfg.rewind.step, str) else "")
    return f"{cfg.train.steps} / {rewind} (rewind mode {cfg.rewind.mode})"


def evaluation_episodes(run: RunData) -> tuple[str, bool] | None:
    """(what the units' evaluation episodes were, whether they overlap across training seeds):
    from the ``eval_seeds`` units record; a run whose units record an evaluation method but no
    seeds was evaluated before training seeds got disjoint episodes, and shared them. None for a
    fixed evaluation set (no episodes: a validation split, the same for every seed by design)."""
    by_seed: dict[int, set[int]] = {}
    for r in run.records:
        if isinstance(r.get("eval_seeds"), list):
            by_seed.setdefault(r["seed"], set()).update(r["eval_seeds"])
    if by_seed:
        seeds = sorted(by_seed)
        shared = [(a, b, len(by_seed[a] & by_seed[b])) for i, a in enumerate(seeds) for b in seeds[i + 1:]
                  if by_seed[a] & by_seed[b]]
        if shared:
            a, b, n = shared[0]
            return (f"overlapping across training seeds (seeds {a} and {b} share {n} episode seed(s)): the seeds are "
                    "not independent samples, and the verdicts overstate the evidence"), True
        return f"disjoint across training seeds ({len(seeds)} seeds, recorded per unit)", False
    if any("eval_method" in r for r in run.records):
        return ("not recorded: this run was evaluated before training seeds got disjoint evaluation episodes, "
                "so its seeds shared most episodes (seed s on episode seeds offset + s + i) and are not "
                "independent samples; the verdicts overstate the evidence. Rerun to judge it"), True
    return None


def header(run: RunData) -> dict[str, Any]:
    """The header's data for templates/report.html.j2: title, rows, missing and corrupt units."""
    finished_seeds = sorted({r["seed"] for r in run.records})
    planned = run.planned_units()
    unfinished_levels = {u.level for u in run.unfinished}
    done_levels = [lv for lv in range(1, run.planned_levels + 1) if lv not in unfinished_levels]
    rows = [
        ("task", run.task), ("domain", run.domain), *what_ran(run), ("run directory", str(run.root)),
        ("config hash", run.config_hash),
        ("seeds", f"{', '.join(map(str, run.seeds))} (finished units from {len(finished_seeds)})"),
        ("controls", ", ".join(["ticket", *run.controls])),
        ("levels finished / planned", f"{len(done_levels)} / {run.planned_levels}"),
        ("units finished / planned", f"{len(planned) - len(run.unfinished)} / {len(planned)}"),
        ("primary metric", f"{run.primary_metric or '–'} ({run.with_metric(None).direction})" if run.records else "–"),
        *([("headline metric", f"{run.metric} ({run.direction}; --metric or report.metric)")]
          if run.metric != run.primary_metric else []),
        ("matching tolerance", f"{run.tolerance:g} × |dense metric| (report.tolerance)"),
    ]
    if run.description:
        rows.insert(1, ("description", run.description))
    transfer = run.config.get("transfer")
    if isinstance(transfer, dict):  # a run made by 'multiticket transfer' (docs/transfer-and-stability.md)
        rows.insert(1, ("transferred from", f"{text(transfer.get('source'))}: 'ticket' = source mask + source "
                        "rewind weights, 'transfer_mask' = source mask + this task's init, level 0 = this task's dense"))
    episodes = evaluation_episodes(run)
    if episodes is not None:
        rows.append(("evaluation episodes", episodes[0]))
    corrupt = sorted(run.corrupt.items(), key=lambda kv: (kv[0].seed, kv[0].control, kv[0].level))
    return {"title": title(run), "rows": rows, "missing": run.missing_lines(), "n_missing": len(run.missing),
            "corrupt": [f"{u.relpath()}: {why}" for u, why in corrupt],
            "overlap": episodes[0] if episodes is not None and episodes[1] else None}
