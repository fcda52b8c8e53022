"""Training one unit: ``train_unit(adapter, job) -> TrainResult``, with no knowledge of the run store.

Everything a unit's training needs arrives in a :class:`TrainJob` (the unit's recipe with its
inputs loaded: mask, start point, weights, monitors); everything it produced comes back in a
:class:`TrainResult` (evaluated metrics, the rewind points it captured, where it stopped). Where
the result is written is the caller's business (:mod:`multiticket.core.writer`), so the same
function trains an IMP level, a control, the early-bird search and the two copies of an
instability analysis. The one storage it may touch is a unit's mid-level checkpoints, handed in
as a :class:`CheckpointStore`, because resuming mid-level is part of training.

The order of operations below (build, restore, permute, enforce, hard copy, RNG) is what makes a
unit reproducible bit for bit and a resumed unit identical to an uninterrupted one: change it
only together with tests/test_pinned_runs.py's pins.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from multiticket.core.adapter import DomainAdapter
from multiticket.core.checkpoint import Checkpoint, CheckpointStore
from multiticket.core.curves import Curve, CurveMonitor
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.hooks import LevelHooks, NullReporter, Reporter, StopTraining
from multiticket.core.mask import Mask
from multiticket.core.monitors import Monitor, MonitorList
from multiticket.core.rewind import RewindPoint
from multiticket.core.store import Unit
from multiticket.errors import RunFailure

#: builds one monitor for the module a unit trains (it exists only once the adapter has built it)
#: and the unit it trains (an instability copy is the unit under another data seed)
MonitorFactory = Callable[[torch.nn.Module, Unit], Monitor]


class Phases(dict[str, float]):
    """Wall seconds per phase of one unit (build, restore, train, evaluate, save, ...), for
    scripts/bench.py and the launch backends' timing reports."""

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self[name] = self.get(name, 0.0) + seconds


@dataclass
class TrainJob:
    """One training run of a unit, inputs loaded. ``start`` None: a fresh build (init from
    ``init_seed``, or the unit's seed); else the rewind point whose weights, adapter state and RNG
    the run starts from and whose step it starts at. ``weights`` (a state dict of the prunable
    root) replaces the start's weights while its counters, state and RNG stay (``rewind.mode``
    lr and finetune); ``permute`` shuffles the start's values within each layer of ``names``;
    ``constant_lr`` replaces the LR schedule (finetune); ``captures``: steps whose rewind points
    to capture on the way; ``curve``: record the unit's learning curve (a :class:`CurveMonitor`
    after the other monitors)."""

    unit: Unit
    mask: Mask
    names: Sequence[str]
    stop: int
    start: RewindPoint | None = None
    init_seed: int | None = None
    weights: Mapping[str, torch.Tensor] | None = None
    permute: torch.Generator | None = None
    constant_lr: float | None = None
    captures: Sequence[int] = ()
    restore_optimizer: bool = False
    monitors: Sequence[MonitorFactory] = ()
    checkpoint_every: int = 0
    curve: bool = False


@dataclass
class TrainResult:
    """What one training run produced: the evaluated metrics of the final weights (left in the
    adapter's module), where it started and stopped, its training seconds (a resumed unit's
    include those before the kill), the rewind points captured on the way, and the learning
    curve when the job asked for one."""

    metrics: dict[str, float]
    start_step: int
    stop_step: int
    seconds: float
    captured: dict[int, RewindPoint] = field(default_factory=dict)
    curve: Curve | None = None


def train_unit(
    adapter: DomainAdapter,
    job: TrainJob,
    checkpoints: CheckpointStore | None = None,
    reporter: Reporter | None = None,
    phases: Phases | None = None,
) -> TrainResult:
    """Build, start (rewound or fresh; or from the unit's latest checkpoint), train to
    ``job.stop`` under the mask and the monitors, check and evaluate the weights."""
    reporter = reporter or NullReporter()
    phases = Phases() if phases is None else phases
    with phases.timed("build"):
        adapter.build(job.unit.seed, job.init_seed)
    resume = checkpoints.latest() if checkpoints is not None else None
    with phases.timed("restore"):
        enforcer, restore = _start(adapter, job, resume)
    begin = job.start.step if job.start is not None else 0
    train_from = resume.step if resume is not None else begin
    done_before = resume.captured if resume is not None else {}
    captures = [c for c in job.captures if c not in done_before]
    hooks = LevelHooks(adapter, enforcer, train_from, captures, restore, reporter)
    hooks.captured.update(done_before)
    prior_seconds = resume.train_seconds if resume is not None else 0.0
    t0 = time.perf_counter()
    if checkpoints is not None:
        _checkpointing(hooks, job, checkpoints, lambda: prior_seconds + time.perf_counter() - t0, phases)
    curve = CurveMonitor(adapter, job.stop) if job.curve else None
    hooks.monitors = MonitorList([*(make(adapter.module, job.unit) for make in job.monitors), *([curve] if curve else [])])
    if resume is not None:
        hooks.monitors.load_state(resume.core)
    adapter.set_constant_lr(job.constant_lr)
    adapter.log_name = str(job.unit.relpath().as_posix())
    reporter.unit_started(job.unit, train_from, job.stop)
    try:
        adapter.train(train_from, job.stop, hooks)
    except StopTraining:
        pass  # the adapter did not poll hooks.should_stop: evaluate the weights as they are
    finally:
        hooks.monitors.close()  # full weights back before anything reads them
        if enforcer is not None:
            enforcer.detach()
    seconds = prior_seconds + time.perf_counter() - t0
    phases.add("train", seconds)
    if hooks.pending:
        raise RunFailure(f"{job.unit.relpath()}: training ended before the rewind step {hooks.pending[0]}")
    stop = hooks.stopped_at if hooks.stopped_at is not None else job.stop
    metrics = evaluate_unit(adapter, job.unit, job.mask, phases)
    if curve is not None:
        curve.add_metrics(stop, metrics)
    return TrainResult(metrics, begin, stop, round(seconds, 3), dict(hooks.captured), curve.curve if curve else None)


def _start(
    adapter: DomainAdapter, job: TrainJob, resume: Checkpoint | None
) -> tuple[MaskEnforcer | None, RewindPoint | None]:
    """Put the start's (or the checkpoint's) weights, state and RNG in place and attach the mask
    enforcer; returns it and the point whose optimizer state the hooks restore (if any)."""
    module = adapter.module
    restore = None
    start = job.start
    if resume is not None:
        # everything, target networks included, is in the checkpoint: no hard copy
        resume.point.restore_weights(module)
        adapter.load_resume_state(resume.point.extra)
        restore = resume.point
    elif start is not None:
        start.restore_weights(module)
        if job.weights is not None:
            module.load_state_dict(dict(job.weights), strict=True)
        adapter.load_state(start.extra)
        if job.permute is not None:
            permute_within_layers(module, job.names, job.permute)
        if job.restore_optimizer:
            restore = start
    mask = job.mask
    dense = mask.num_alive == mask.numel
    enforcer = None if dense else MaskEnforcer(module, mask, grads=adapter.grad_masking).attach()
    if resume is not None:
        resume.point.restore_rng()
    else:
        hard_copy_targets(adapter)
        if start is not None:
            start.restore_rng()
    return enforcer, restore


def _checkpointing(
    hooks: LevelHooks, job: TrainJob, ckpts: CheckpointStore, seconds: Callable[[], float], phases: Phases
) -> None:
    """Let the hooks write a mid-level checkpoint every ``job.checkpoint_every`` steps."""
    adapter = hooks.adapter
    hooks.checkpoint_every, hooks.stop = job.checkpoint_every, job.stop

    def save_checkpoint(step: int) -> None:
        opts = hooks.optimizers or adapter.optimizers()
        point = RewindPoint.capture(adapter.module, step, opts, adapter.resume_state())
        spent = seconds()
        with phases.timed("checkpoint"):
            ckpts.save(Checkpoint(point, dict(hooks.captured), spent, hooks.monitors.state()))

    hooks.checkpoint = save_checkpoint
    ckpts.clear_temporaries()


def evaluate_unit(adapter: DomainAdapter, unit: Unit, mask: Mask, phases: Phases | None = None) -> dict[str, float]:
    """Check the weights in the adapter's module (exact zeros, finite) and evaluate them."""
    check_weights(adapter.module, mask, unit)
    with (phases if phases is not None else Phases()).timed("evaluate"):
        metrics = adapter.evaluate()
    if adapter.metric not in metrics:
        raise RunFailure(f"adapter returned no '{adapter.metric}' metric")
    values = {k: float(v) for k, v in metrics.items()}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:  # a record cannot hold them: the unit fails, and the report flags it as NaN
        raise RunFailure(f"non-finite evaluation: {', '.join(f'{k}={values[k]}' for k in bad)}")
    return values


@torch.no_grad()
def hard_copy_targets(adapter: DomainAdapter) -> None:
    """Target networks become copies of their online networks (pruned entries included)."""
    for online, target in adapter.target_pairs():
        target.load_state_dict(online.state_dict())


@torch.no_grad()
def permute_within_layers(module: torch.nn.Module, names: Sequence[str], gen: torch.Generator) -> None:
    """Shuffle the values of each parameter in ``names`` (Vischer et al.'s permuted controls)."""
    params = dict(module.named_parameters())
    for n in names:
        p = params[n]
        flat = p.detach().reshape(-1)
        perm = torch.randperm(flat.numel(), generator=gen).to(flat.device)
        p.copy_(flat[perm].reshape(p.shape))


def check_weights(module: torch.nn.Module, mask: Mask, unit: Unit) -> None:
    """Guard against silent failures: every pruned entry must be exactly zero, all finite."""
    params = dict(module.named_parameters())
    for n, m in mask.items():
        p = params[n].detach()
        if not bool(torch.isfinite(p).all()):
            raise RunFailure(f"{unit.relpath()}: non-finite values in '{n}' after training")
        if bool((p.cpu()[~m] != 0).any()):
            raise RunFailure(f"{unit.relpath()}: pruned entries of '{n}' are non-zero after training")

