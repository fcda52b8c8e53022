"""The rules that relate two keys of a task file, and :class:`TaskConfig`, the model that enforces them.

Every rule is a model validator of :class:`TaskConfig`, so every way of building one (a task file,
``config.yaml`` in a worker, a transfer task) agrees. Each rule raises
``ValueError("<field>: <why>")``, reported naming that field; they run in :data:`CROSS_FIELD_RULES`'
order, and the collecting pass (:mod:`multiticket.config.collect`) runs each one apart to report
every failing rule at once.
"""

from __future__ import annotations

from pydantic import ValidationInfo, model_validator

from multiticket.config.sections import TaskFields
from multiticket.core.controls import CONTROLS as CONTROL_SPECS
from multiticket.core.criteria import DEFAULT as DEFAULT_CRITERION
from multiticket.core.registry import allocators, criteria

#: the most units a plan may hold (no real run reaches it; it keeps planning and reading one cheap)
MAX_UNITS = 100_000


def _plan_rules(config: TaskFields) -> None:
    """A plan stays cheap to build and to read back (a run directory's config.yaml is input)."""
    units = len(config.seeds) * (1 + config.prune.levels * (1 + len(config.controls)))
    if units > MAX_UNITS:
        raise ValueError(f"seeds: {len(config.seeds)} seeds x {config.prune.levels} levels x {len(config.controls)} "
                         f"controls plan {units} units, more than {MAX_UNITS}")


def _rewind_rules(config: TaskFields) -> None:
    """The rewind step lies inside training; ``rewind.finetune_lr`` goes with mode finetune only."""
    if config.rewind_step() >= config.train.steps:
        raise ValueError(f"rewind.step: must be below train.steps ({config.train.steps})")
    rw = config.rewind
    if rw.mode == "finetune" and rw.finetune_lr is None:
        raise ValueError("rewind.finetune_lr: required when rewind.mode is finetune")
    if rw.mode != "finetune" and rw.finetune_lr is not None:
        raise ValueError(f"rewind.finetune_lr: only used with rewind.mode finetune (mode is {rw.mode})")


def _early_bird_rules(config: TaskFields) -> None:
    """Early-bird masks need a magnitude strategy and an interval inside training."""
    if not config.runs_early_bird():
        return
    if config.prune.strategy == "random":
        raise ValueError("early_bird: needs a magnitude strategy (prune.strategy is random: "
                         "random masks never stabilise)")
    interval = config.early_bird_interval()
    if not 1 <= interval < config.train.steps:
        raise ValueError(f"early_bird.interval: must be 1 to {config.train.steps - 1} steps, got {interval}")


def _targeted_dropout_rules(config: TaskFields) -> None:
    """A targeted-dropout control needs the section, and the section must be used by something."""
    td_controls = [c for c in config.controls if CONTROL_SPECS[c].source == "dense_td"]
    td = config.targeted_dropout
    if td_controls and td is None:
        raise ValueError(f"controls: '{td_controls[0]}' needs a targeted_dropout section")
    if td is not None and td.apply_to == "experiment" and not td_controls:
        raise ValueError("targeted_dropout.apply_to: 'experiment' trains only the dense_td unit of the "
                         "control prune_dense_td, which controls does not list (add it, or use apply_to: all)")


def _criterion_rules(config: TaskFields) -> None:
    """A criterion ranks a magnitude strategy's scope; one that reads the initial (rewind-point)
    weights needs a unit that has them: not the early-bird search before k, not ``dense_td``."""
    name = config.prune.criterion
    if name == DEFAULT_CRITERION:
        return
    if config.prune.strategy == "random":
        raise ValueError(f"prune.criterion: the random strategy ranks at random; '{name}' needs a magnitude strategy")
    if criteria[name].needs_model and config.runs_early_bird():
        raise ValueError(f"prune.criterion: '{name}' scores with the model's batches or gradients, which the "
                         "early-bird search's mask checks inside training do not have")
    if not criteria[name].needs_init:
        return
    if config.runs_early_bird() and config.rewind_step() > 0:
        raise ValueError(f"prune.criterion: '{name}' reads the rewind-point weights, which the early-bird search "
                         "does not have when it checks masks before the rewind step (use rewind.step 0)")
    if any(CONTROL_SPECS[c].source == "dense_td" for c in config.controls):
        raise ValueError(f"prune.criterion: '{name}' reads the rewind-point weights, which the dense_td unit "
                         "pruned by prune_dense_td does not record")


def _allocator_rules(config: TaskFields) -> None:
    """An allocator splits the budget itself: the layerwise strategy already says per layer."""
    allocator = config.prune.allocator
    if allocator is not None and config.prune.strategy == "layerwise_magnitude" and allocator != "layerwise":
        raise ValueError(f"prune.allocator: '{allocator}' contradicts prune.strategy layerwise_magnitude (a uniform "
                         "rate per layer); use strategy global_magnitude with it")


def _structure_rules(config: TaskFields) -> None:
    """A structure counts neurons: an allocator that splits a weight budget by layer shape (ERK)
    has no meaning there."""
    p = config.prune
    if p.structure != "weights" and p.allocator is not None and allocators[p.allocator].split is not None:
        raise ValueError(f"prune.allocator: '{p.allocator}' splits a budget of weights by layer shape; with "
                         f"prune.structure: {p.structure} use global or layerwise")


def _transfer_rules(config: TaskFields) -> None:
    """The transfer control exists only where ``multiticket transfer`` wrote a ``transfer:`` section."""
    if "transfer_mask" in config.controls and config.transfer is None:
        raise ValueError("controls: transfer_mask exists only in runs made by 'multiticket transfer'")


#: every cross-field rule, in the order a failing one is reported
CROSS_FIELD_RULES = (_plan_rules, _rewind_rules, _early_bird_rules, _targeted_dropout_rules, _criterion_rules,
                     _allocator_rules, _structure_rules, _transfer_rules)


class TaskConfig(TaskFields):
    """The common keys of a task file (:class:`~multiticket.config.sections.TaskFields`) with every
    cross-field rule checked: the validated task that the core, launch and analysis read."""

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> TaskConfig:
        if not (info.context or {}).get("rules_apart"):  # the collecting pass runs each one itself
            for check in CROSS_FIELD_RULES:
                check(self)
        return self
