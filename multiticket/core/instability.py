"""Instability analysis (linear mode connectivity, Frankle et al. 2020) of a finished run's units.

For one unit (seed s, control c, level L) the starting point is exactly the unit's own: the
rewind point θ_k ⊙ mask for the ticket (and θ_k for the dense network, level 0), the control's
own start for a control (fresh init, or shuffled θ_k). Masks and starts are re-derived from the
same recipe that made the unit (and checked against the stored mask). From there two
copies train to T under the mask; they differ only in the data-order / environment seed given to
``adapter.build``: copy 1 uses s itself, copy 2 ``derive_seed(s, "instability", c, L)``. The
start's RNG state and init are identical. Above level 0 copy 1 therefore replays the unit; at
level 0 it does not (the dense unit trained 0 -> T without a restore at k; see
:func:`replays_unit`). ``instability.json`` records the claim per copy (``replays_unit``) and the
fact (``copy_1_equals_unit``: copy 1's weights equal the unit's ``final.safetensors`` bit for bit). The metric is then evaluated at ``points`` values of α
evenly spaced in [0, 1] on θ(α) = (1 − α)·θ₁ + α·θ₂ over the whole ``state_dict`` (pruned entries
are zero in both copies, so they stay zero; integer buffers must agree and are copied). α = 0
and α = 1 give θ₁ and θ₂ bit for bit (no ``lerp``, whose a + α(b − a) need not round to b).

Every point is evaluated the same way: a fresh ``adapter.build(s)`` with copy 1's adapter state
(counters, normalisation statistics) loaded, then the interpolated weights. For RL the metric is
the deterministic evaluation return on the eval env seeded ``s + eval_seed_offset``.

Error barrier (Frankle et al.: the largest increase in error along the path over the mean of the
endpoints' errors), with error = −metric when higher is better and = metric otherwise, reported
in the metric's own units::

    barrier        = max_α E(α) − (E(0) + E(1)) / 2            (≥ 0; ≈ 0 means linearly connected)
    barrier_linear = max_α [E(α) − ((1 − α) E(0) + α E(1))]    (vs the straight line between them)

So for accuracy or return the barrier is mean(m(0), m(1)) − min_α m(α); for a loss or perplexity
it is max_α m(α) − mean(m(0), m(1)). A positive barrier means the path dips (unstable).

Storage: ``seed_<s>/instability/<control>/level_<L>/`` holds ``instability.json``,
``endpoint_1.safetensors``, ``endpoint_2.safetensors``, ``state.safetensors`` + ``state.json``
(copy 1's adapter state, :mod:`multiticket.core.statefile`; ``state.pt`` in older directories),
``mask.safetensors`` and ``DONE`` (checksums, written last), under the unit's own lock. A rerun
skips finished units; asking for another number of points re-evaluates the path from the stored
endpoints without training.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from multiticket.core.imp import IMPRunner
from multiticket.core.mask import Mask
from multiticket.core.recipe import resolve
from multiticket.core.rewind import copy_state_dict
from multiticket.core.seeding import derive_seed
from multiticket.core.statefile import load_tree, save_tree, saved_files
from multiticket.core.store import Unit
from multiticket.core.tensorfile import load_tensors
from multiticket.core.train import Phases, TrainJob
from multiticket.core.writer import json_file, tensors_file
from multiticket.errors import RunFailure, UserError

RESULT = "instability.json"
ENDPOINTS = ("endpoint_1.safetensors", "endpoint_2.safetensors")


def alphas(points: int) -> list[float]:
    """``points`` values evenly spaced in [0, 1], with exact 0.0 and 1.0 at the ends."""
    if points < 2:
        raise UserError("--points: needs at least 2 (11 or more for a barrier worth reading)")
    return [i / (points - 1) for i in range(points)]


def interpolate(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 − α)·a + α·b for floating tensors; non-floating tensors (integer buffers) must agree."""
    out = {}
    for name, ta in a.items():
        tb = b[name]
        if ta.dtype.is_floating_point:
            out[name] = (1.0 - alpha) * ta + alpha * tb
        else:
            if not torch.equal(ta, tb):
                raise RunFailure(f"instability: the copies disagree on the non-float tensor '{name}'")
            out[name] = ta.clone()
    return out


def error_barrier(values: Sequence[float], alpha: Sequence[float], higher_is_better: bool) -> tuple[float, float]:
    """``(barrier, barrier_linear)`` of a metric along the path (see the module docstring)."""
    err = [-v if higher_is_better else v for v in values]
    e0, e1 = err[0], err[-1]
    barrier = max(err) - (e0 + e1) / 2
    linear = max(e - ((1 - a) * e0 + a * e1) for e, a in zip(err, alpha))
    return barrier, linear


def instability_dir(unit: Unit) -> str:
    return f"seed_{unit.seed}/instability/{unit.control}/level_{unit.level}"


class InstabilityRunner:
    """For a finished unit of a run, trains two copies from the unit's own start and evaluates the
    linear path between them. Composed of the run's :class:`IMPRunner` (a transfer run's too): the
    unit's recipe, inputs and training are the run's own, only the recipe's shape differs (the
    dense network starts from θ_k) and two copies are trained and written here instead of one."""

    def __init__(self, runner: IMPRunner) -> None:
        self.runner = runner
        self.store = runner.store
        self.adapter = runner.adapter
        self.reporter = runner.reporter
        self.shape = replace(runner.shape, instability=True)

    def instability(self, unit: Unit, points: int) -> dict[str, Any]:
        """Run (or resume, or re-evaluate) the instability analysis of one finished unit."""
        d = self.store.root / instability_dir(unit)
        lock = Unit(unit.seed, f"instability.{unit.control}", unit.level)
        with self.store.unit_lock(lock):
            if self.store.is_done(d):
                record = json.loads((d / RESULT).read_text())
                if record["points"] == points:
                    self.reporter.unit_finished(unit, _as_metrics(record), skipped=True)
                    return record
                return self._reevaluate(unit, record, points)
            if not self.runner.unit_done(unit):
                raise UserError(f"{unit.relpath()}: not finished in {self.store.root} (run it first)")
            self.runner.phases = Phases()
            return self._analyse(unit, points)

    def _analyse(self, unit: Unit, points: int) -> dict[str, Any]:
        """Re-derive the unit's mask and start, train the two copies, check, evaluate, save."""
        recipe = resolve(unit, self.shape)
        if recipe.retrain == "none" or "early_bird" in recipe.monitors:
            raise UserError(f"{unit.relpath()}: has no training run of its own to repeat")
        runner = self.runner
        inputs = runner.inputs.load(recipe, runner.phases)
        job = replace(runner.job(recipe, inputs)[0], curve=False)  # the copies' curves are not kept
        endpoints, state_1, copies = self._train_copies(job)
        mask = inputs.mask
        record: dict[str, Any] = {
            "task": runner.info.task, "domain": runner.info.domain, "seed": unit.seed, "control": unit.control,
            "level": unit.level, "sparsity": mask.sparsity, "alive": mask.num_alive, "prunable": mask.numel,
            "start_step": job.start.step if job.start is not None else 0, "stop_step": job.stop,
            "init_seed": job.init_seed, "copies": copies,
        }
        if recipe.retrain in ("weights", "lr", "finetune"):
            record["retrain_mode"] = recipe.retrain
        stored = self.store.unit_dir(unit) / "mask.safetensors"
        if unit.level > 0 and stored.is_file() and Mask.load(stored) != mask:
            raise RunFailure(f"{unit.relpath()}: the re-derived mask differs from the stored one")
        record.update(self._evaluate_path(unit, endpoints, state_1, points))
        record["copy_1_equals_unit"] = _equal_weights(endpoints[0], self.store.unit_dir(unit) / "final.safetensors")
        if record["copies"][0]["replays_unit"] and not record["copy_1_equals_unit"]:
            self.reporter.warn(f"{unit.relpath()}: instability copy 1 did not reproduce the unit bit for bit "
                               "(another device, thread count or library version than the run's?)")
        self._write(unit, mask, record, endpoints, state_1)
        return record

    def _train_copies(
        self, job: TrainJob
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, Any], list[dict[str, Any]]]:
        """Train the unit's job twice, differing only in the data seed (copy 1: the unit's seed;
        copy 2: a derived one), from the same start (a permuted start shuffled the same way)."""
        unit = job.unit
        seeds = (unit.seed, derive_seed(unit.seed, "instability", unit.control, unit.level))
        state = job.permute.get_state() if job.permute is not None else None
        endpoints: list[dict[str, torch.Tensor]] = []
        copies: list[dict[str, Any]] = []
        state_1: dict[str, Any] = {}
        for i, data_seed in enumerate(seeds):
            gen = None
            if state is not None:  # both copies get the same shuffled start
                gen = torch.Generator()
                gen.set_state(state)
            copy_job = replace(job, unit=Unit(data_seed, unit.control, unit.level), permute=gen)
            result = self.runner.train(copy_job, checkpoint=False)  # a copy is not the unit: no checkpoints
            endpoints.append(copy_state_dict(self.adapter.module))
            if i == 0:
                state_1 = copy.deepcopy(self.adapter.state())
            copies.append({"data_seed": data_seed, "own_metric": result.metrics[self.adapter.metric],
                           "train_seconds": result.seconds, "replays_unit": replays_unit(unit, i)})
        return endpoints, state_1, copies

    def _write(self, unit: Unit, mask: Mask, record: dict[str, Any], endpoints: list[dict[str, torch.Tensor]],
               state_1: dict[str, Any]) -> None:
        d = self.store.root / instability_dir(unit)
        self.store.begin(d)
        for name, weights in zip(ENDPOINTS, endpoints):
            self.store.write_file(d, name, tensors_file(weights))
        state_files = save_tree(d, "state", state_1)
        self.store.write_file(d, "mask.safetensors", mask.save)
        self.store.write_file(d, RESULT, json_file(record))
        self.store.finish(d, [*ENDPOINTS, *state_files, "mask.safetensors", RESULT])
        self.reporter.unit_finished(unit, _as_metrics(record), skipped=False)

    # -- the path ---------------------------------------------------------------------------------
    def _evaluate_path(
        self, unit: Unit, endpoints: list[dict[str, torch.Tensor]], extra: dict[str, Any], points: int
    ) -> dict[str, Any]:
        """Evaluate θ(α) at every α with one evaluator: fresh build of seed s + copy 1's state."""
        t0 = time.perf_counter()
        adapter = self.adapter
        adapter.build(unit.seed)
        adapter.load_state(extra)
        module = adapter.module
        grid = alphas(points)
        values = []
        for a in grid:
            with torch.no_grad():
                module.load_state_dict(interpolate(endpoints[0], endpoints[1], a), strict=True)
            metrics = adapter.evaluate()
            if adapter.metric not in metrics or not math.isfinite(metrics[adapter.metric]):
                raise RunFailure(f"{unit.relpath()}: no finite '{adapter.metric}' at alpha {a:g}")
            values.append(float(metrics[adapter.metric]))
        barrier, linear = error_barrier(values, grid, adapter.higher_is_better)
        return {
            "metric": adapter.metric, "higher_is_better": adapter.higher_is_better, "points": points,
            "alphas": grid, "values": values, "endpoint_metrics": [values[0], values[-1]],
            "barrier": barrier, "barrier_linear": linear, "eval_seconds": round(time.perf_counter() - t0, 3),
        }

    def _reevaluate(self, unit: Unit, record: dict[str, Any], points: int) -> dict[str, Any]:
        """Another number of points: evaluate the path again from the stored endpoints."""
        d = self.store.root / instability_dir(unit)
        endpoints = [load_tensors(d / name) for name in ENDPOINTS]
        extra = load_tree(d, "state")
        record = {**record, **self._evaluate_path(unit, endpoints, extra, points)}
        self.store.write_file(d, RESULT, json_file(record))
        self.store.finish(d, [*ENDPOINTS, *saved_files(d, "state"), "mask.safetensors", RESULT])
        self.reporter.unit_finished(unit, _as_metrics(record), skipped=False)
        return record


def replays_unit(unit: Unit, copy: int) -> bool:
    """Whether copy ``copy`` (0-based) re-runs the unit's own training: copy 1 above level 0, which
    starts exactly where the unit started. At level 0 the dense unit trained 0 -> T in one go,
    while the copies start at θ_k with the rewind point's RNG and adapter state, fresh data
    iterators or environments and the optimizer as ``rewind.optimizer`` says."""
    return copy == 0 and unit.level > 0


def _equal_weights(weights: dict[str, torch.Tensor], path: Any) -> bool:
    """``weights`` equal the tensors stored at ``path`` bit for bit (same names, dtypes, values)."""
    stored = load_tensors(path)
    return stored.keys() == weights.keys() and all(
        stored[n].dtype == w.dtype and torch.equal(stored[n], w.cpu()) for n, w in weights.items()
    )


def _as_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """A unit record shaped like ``metrics.json`` for progress reporters (barrier as the metric)."""
    return {**record, "metric": "barrier", "metrics": {"barrier": record["barrier"]},
            "train_seconds": sum(c["train_seconds"] for c in record["copies"])}
