"""Unit -> recipe: which mask a unit trains, where it starts, how it retrains, what watches it.

:func:`resolve` is pure: it reads the controls table (:mod:`multiticket.core.controls`) and the
run's shape (:class:`RunShape`) and names the unit's inputs without loading any of them, so the
whole path of a unit can be read (and tested) here: the level loop (:mod:`multiticket.core.imp`)
loads what the recipe names, trains it (:func:`multiticket.core.train.train_unit`) and writes the
result (:mod:`multiticket.core.writer`). Variants of a run change recipes, not runners: a transfer
run's ticket takes the source's mask and start (``transferred``); an instability analysis starts
the dense network from its rewind point; early-bird and targeted dropout are monitors.

A new control is one row of the controls table whose ``mask``/``start`` values this module knows;
a new kind of mask or start is one branch here plus its loader in :mod:`multiticket.core.inputs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from multiticket.core.controls import CONTROLS, ControlSpec
from multiticket.core.seeding import derive_seed
from multiticket.core.store import Unit
from multiticket.errors import RunFailure

#: "dense": all ones; "prune": prune ``source``'s final weights under its mask (an IMP level);
#: "early_bird": prune the weights where the previous early-bird search stopped; "ticket": the
#: ticket's mask at this level (``source``); "random_layer"/"random_global": random positions at
#: the ticket's per-layer / total counts; "one_shot": ``source``'s final weights pruned straight to
#: this level's count; "transferred": the transfer source's ticket mask at this level; "pai": the
#: start point pruned by ``criterion`` straight to this level's count (pruning at initialization)
MaskKind = Literal["dense", "prune", "early_bird", "ticket", "random_layer", "random_global", "one_shot",
                   "transferred", "pai"]
#: "fresh": a new build (``init_seed``); "rewind": the run's rewind point at ``step`` (a transfer
#: run's transferred θ_k); "stored_rewind": the run's own stored rewind point, even in a transfer
#: run; "trained": the mask source's final weights as they are (evaluated, not trained)
StartKind = Literal["fresh", "rewind", "stored_rewind", "trained"]
#: how a pruned level retrains (Renda et al. 2020: ``rewind.mode``); "as_is": from its start, no
#: mode recorded (controls and transfer tickets); "none": not trained at all (prune-only controls)
Retrain = Literal["weights", "lr", "finetune", "as_is", "none"]


@dataclass(frozen=True)
class RunShape:
    """What of a run's configuration decides recipes."""

    k: int
    rewind_mode: Literal["weights", "lr", "finetune"] = "weights"
    #: targeted dropout's ``apply_to`` ("experiment": the dense_td unit only; "all": every unit), or None
    targeted_dropout: str | None = None
    transfer: bool = False
    #: an instability analysis: the dense network restarts from θ_k and captures nothing
    instability: bool = False
    #: the run has prune-only controls, which evaluate a dense unit's weights with its adapter state
    prune_only: bool = False


@dataclass(frozen=True)
class Recipe:
    """How to produce one unit. ``source``: the unit whose files the mask (and a ``trained``
    start) is read from; ``prune_draws``: the parts of the generator each pruning call draws ties
    from; ``draws``: the parts of the one generator a random mask and then a permuted start draw
    from, in that order (the order the pinned runs depend on)."""

    unit: Unit
    mask: MaskKind
    start: StartKind
    retrain: Retrain
    source: Unit | None = None
    prune_draws: tuple[Any, ...] = ()
    draws: tuple[Any, ...] | None = None
    step: int = 0
    init_seed: int | None = None
    permute: bool = False
    #: the step of the rewind point whose weights init-reading mask criteria rank against (the
    #: chain's own rewind point; Zhou et al.'s "initial" weights), None where the chain has none
    init_step: int | None = None
    #: rewind points to capture while training (the dense run: steps 0 and k)
    captures: tuple[int, ...] = ()
    #: monitors by name, in call order: "targeted_dropout", "early_bird"
    monitors: tuple[str, ...] = ()
    #: the mask must keep exactly the planned count / exactly the ticket's count at this level
    check_planned: bool = False
    match_ticket: bool = False
    #: keep the adapter's state next to the final weights (``final_state``): what evaluating
    #: them later needs besides them (e.g. VecNormalize statistics), for prune-only controls
    keep_state: bool = False
    #: a "pai" mask's criterion and allocator (None: the task's allocator)
    criterion: str | None = None
    allocator: str | None = None


def resolve(unit: Unit, run: RunShape) -> Recipe:
    """The recipe of ``unit`` in a run of shape ``run`` (pure: reads no files)."""
    if unit.level == 0:
        return _dense(unit, run)
    spec = CONTROLS.get(unit.control)
    if spec is None:
        raise RunFailure(f"{unit.relpath()}: unknown control '{unit.control}'")
    if spec.is_chain:
        return _chain(unit, run, spec)
    if spec.start == "none":
        return _prune_only(unit, run, spec)
    return _control(unit, run, spec)


def _dropout(unit: Unit, run: RunShape) -> tuple[str, ...]:
    """Targeted dropout trains every unit (``apply_to: all``) or only ``dense_td`` (``experiment``)."""
    td = run.targeted_dropout
    return ("targeted_dropout",) if td == "all" or (td is not None and unit.control == "dense_td") else ()


def _dense(unit: Unit, run: RunShape) -> Recipe:
    """Level 0: the dense network from step 0 (capturing θ_0 and θ_k on its way), or, for an
    instability analysis, from its rewind point θ_k (Frankle et al. 2020's level 0)."""
    monitors = _dropout(unit, run)
    if run.instability:
        return Recipe(unit, "dense", "stored_rewind", "as_is", step=run.k, monitors=monitors)
    captures = tuple(sorted({0, run.k})) if unit.control == "ticket" else ()
    keep = unit.control == "dense_td" or run.prune_only
    return Recipe(unit, "dense", "fresh", "as_is", captures=captures, monitors=monitors, keep_state=keep)


def _chain(unit: Unit, run: RunShape, spec: ControlSpec) -> Recipe:
    """An IMP level of ``ticket``, ``rewind_init`` or ``early_bird``: pruned from its previous
    level (level 1 from the dense run), retrained as ``rewind.mode`` says; a transfer run's
    ticket instead takes the source's mask and starts from the transferred θ_k."""
    seed, chain, level = unit.seed, unit.control, unit.level
    if run.transfer:
        if spec.role != "ticket":
            raise RunFailure(f"control '{chain}' has no meaning in a transfer run")
        return Recipe(unit, "transferred", "rewind", "as_is", step=run.k, monitors=_dropout(unit, run))
    draws = (seed, chain, "prune", level)
    if chain == "early_bird":
        prev = Unit(seed, chain, level - 1) if level > 1 else None
        return Recipe(unit, "early_bird", "rewind", run.rewind_mode, source=prev, prune_draws=draws, step=run.k,
                      init_step=run.k, monitors=(*_dropout(unit, run), "early_bird"), check_planned=True)
    prev = Unit(seed, chain if level > 1 else "ticket", level - 1)
    step = run.k if spec.rewind_to == "k" else 0
    return Recipe(unit, "prune", "rewind", run.rewind_mode, source=prev, prune_draws=draws, step=step,
                  init_step=step, monitors=_dropout(unit, run), check_planned=True)


def _prune_only(unit: Unit, run: RunShape, spec: ControlSpec) -> Recipe:
    """``prune_dense``/``prune_dense_td``: a dense unit's final weights pruned one-shot to this
    level's count and evaluated without retraining. Init-reading criteria read the dense run's
    rewind point (``dense_td`` records none: the config refuses such criteria there)."""
    return Recipe(unit, "one_shot", "trained", "none", source=Unit(unit.seed, spec.source, 0),
                  prune_draws=(unit.seed, unit.control, "prune", unit.level),
                  init_step=run.k if spec.source == "ticket" else None, check_planned=True)


def _control(unit: Unit, run: RunShape, spec: ControlSpec) -> Recipe:
    """A control at the ticket's sparsity: its mask from the ticket's (or, ``one_shot``, from the
    dense run's final weights; ``pai``, from its start point), its start fresh, rewound, or
    rewound and shuffled."""
    seed, control, level = unit.seed, unit.control, unit.level
    monitors = _dropout(unit, run)
    if spec.mask == "one_shot":  # a pruned trained network: retrained as rewind.mode says
        return Recipe(unit, "one_shot", "rewind", run.rewind_mode, source=Unit(seed, "ticket", 0),
                      prune_draws=(seed, control, "prune", level), step=run.k, init_step=run.k, monitors=monitors,
                      check_planned=True, match_ticket=True)
    if spec.mask == "pai":  # the start point itself pruned, at the ticket's count
        step = run.k if spec.rewind_to == "k" else 0
        return Recipe(unit, "pai", "rewind", "as_is", source=Unit(seed, "ticket", level),
                      prune_draws=(seed, control, "prune", level), step=step, init_step=step, monitors=monitors,
                      check_planned=True, match_ticket=True, criterion=spec.criterion, allocator=spec.allocator)
    if spec.mask not in ("ticket", "random_layer", "random_global"):
        raise RunFailure(f"control '{control}' has no per-level mask rule")
    ticket = Unit(seed, "ticket", level)
    draws = (seed, control, level)
    if spec.start == "fresh":
        return Recipe(unit, spec.mask, "fresh", "as_is", source=ticket, draws=draws,
                      init_seed=derive_seed(seed, control, level, "init"), monitors=monitors, match_ticket=True)
    return Recipe(unit, spec.mask, "rewind", "as_is", source=ticket, draws=draws,
                  step=run.k if spec.rewind_to == "k" else 0,
                  permute=spec.start == "rewind_permuted", monitors=monitors, match_ticket=True)
