"""The ``early_bird`` chain (docs/tasks.md, *Retraining modes and early-bird tickets*): IMP whose every mask
is drawn as soon as it stabilises (You et al. 2020) instead of after full training.

Early-bird plugs into the level loop in two places, neither of them a runner method: it provides
the weights an early-bird level prunes (:func:`dense_search` at level 1, :func:`previous_search`
after), and its detector is a monitor (:class:`~multiticket.core.monitors.EarlyBirdWatch`) of the
level's training; :func:`finish_level` then adds what it found to the unit's record. The
detection itself is :mod:`multiticket.core.early_bird`.

Level 1 first runs the dense search: train from step 0 under the dense mask and *stop* once the
level-1 mask has stabilised (never before k: level 1 rewinds to the run's rewind point). Every
level L then prunes the weights its previous search stopped at, rewinds to k (or starts as
``rewind.mode`` says) and trains to T under the monitor of mask L+1: the weights at the step that
mask stabilised are kept (``early_bird.safetensors``) for level L+1, and training goes on to T
so this level's metric is the early-bird ticket's, trained exactly as the IMP ticket at the same
sparsity. Stopping at that step instead and retraining from k would give the same masks and
metrics (the run k -> e is a prefix of the run k -> T), so the compute accounting counts only the
steps the search needed: ``search_steps`` = e_0 + sum over earlier levels of (e_i - k), against
IMP's T + (L-1)(T-k).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from safetensors.torch import load_file

from multiticket.core.early_bird import EarlyBirdMonitor, EarlyBirdSettings
from multiticket.core.mask import Mask
from multiticket.core.monitors import EarlyBirdWatch
from multiticket.core.prune import PruneSpec
from multiticket.core.rewind import copy_state_dict
from multiticket.core.store import RunStore, Unit
from multiticket.core.train import Phases, TrainJob, TrainResult

#: the file in which an early-bird level keeps the weights at which the next mask stabilised
SEARCH_FILE = "early_bird.safetensors"


@dataclass
class Search:
    """Where the early-bird search stands before a level: the mask and the weights it prunes
    next, the search steps spent so far, and the level's ``early_bird`` record so far."""

    prev_mask: Mask
    weights: Mapping[str, torch.Tensor]
    searched: int
    info: dict[str, Any]


def settings_of(cfg: Any) -> EarlyBirdSettings:
    """The detector's settings of a task config (interval in steps)."""
    eb = cfg.early_bird_settings()
    return EarlyBirdSettings(cfg.early_bird_interval(), eb.window, eb.threshold)


def _info(settings: EarlyBirdSettings) -> dict[str, Any]:
    return {"interval": settings.interval, "window": settings.window, "threshold": settings.threshold}


def watch(monitor: EarlyBirdMonitor) -> Callable[[torch.nn.Module, Unit], EarlyBirdWatch]:
    """A monitor factory for a train job (the detector itself stays with the caller)."""
    return lambda module, unit: EarlyBirdWatch(monitor)


def dense_search(train: Callable[[TrainJob], TrainResult], job: TrainJob, spec: PruneSpec,
                 settings: EarlyBirdSettings, k: int, module: Callable[[], torch.nn.Module],
                 init: Mapping[str, torch.Tensor] | None = None) -> Search:
    """Level 1's search: train the dense ``job`` from step 0 until the level-1 mask is stable
    (never before ``k``); ``module`` gives the trained module afterwards, ``init`` the rewind-point
    weights init-reading criteria rank against (None before a rewind point exists)."""
    search = EarlyBirdMonitor(job.mask, spec, settings, start=0, min_stop=k, stop=True, init=init)
    result = train(replace(job, monitors=(*job.monitors, watch(search))))
    weights = search.snapshot if search.snapshot is not None else copy_state_dict(module())
    info = _info(settings)
    info.update(dense_stopped_at=search.fired_at, dense_distance=search.distance, dense_trace=search.trace,
                dense_metrics=result.metrics, dense_train_seconds=result.seconds)
    searched = search.fired_at if search.fired_at is not None else job.stop
    return Search(job.mask, weights, searched, info)


def previous_search(store: RunStore, unit: Unit, settings: EarlyBirdSettings, phases: Phases) -> Search:
    """Level L > 1: the previous level's mask, the weights its monitor kept, its search steps."""
    d = store.unit_dir(Unit(unit.seed, unit.control, unit.level - 1))
    with phases.timed("load_inputs"):
        prev_mask = Mask.load(d / "mask.safetensors")
        weights = load_file(str(d / SEARCH_FILE))
        prev_info = json.loads((d / "metrics.json").read_text())["early_bird"]
    return Search(prev_mask, weights, int(prev_info["search_steps_next"]), _info(settings))


def finish_level(record: dict[str, Any], search: Search, monitor: EarlyBirdMonitor, level: int, k: int,
                 stop: int, module: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Add the level's ``early_bird`` record (what the search cost against IMP's) and return the
    extra file the next level prunes from."""
    fired = monitor.fired_at if monitor.fired_at is not None else stop
    imp = stop + (level - 1) * (stop - k)
    info = search.info
    info.update(
        stopped_at=monitor.fired_at, distance=monitor.distance, trace=monitor.trace,
        search_steps=search.searched, imp_search_steps=imp, compute_fraction=round(search.searched / imp, 6),
        steps_saved=imp - search.searched, search_steps_next=search.searched + fired - k,
    )
    record["early_bird"] = info
    snapshot = monitor.snapshot if monitor.snapshot is not None else copy_state_dict(module)
    return {SEARCH_FILE: snapshot}
