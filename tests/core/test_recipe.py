"""The recipe of a unit (pure: no files) and the monitor list that composes a unit's watchers."""

from __future__ import annotations

import pytest
import torch

from multiticket.core.controls import CONTROLS
from multiticket.core.monitors import MonitorList
from multiticket.core.recipe import RunShape, resolve
from multiticket.core.seeding import derive_seed
from multiticket.core.store import Unit
from multiticket.errors import RunFailure

RUN = RunShape(k=3)


def test_every_control_resolves_at_every_level_and_names_only_finished_dependencies():
    from multiticket.core.units import unit_dependencies

    for control in CONTROLS:
        for level in (1, 2):
            unit = Unit(0, control, level)
            recipe = resolve(unit, RUN)
            assert recipe.unit == unit
            deps = unit_dependencies(unit)
            if recipe.source is not None:  # what a recipe reads is what the launch backends wait for
                assert recipe.source in deps, (control, level)


def test_dense_unit_captures_both_rewind_points_and_an_instability_restarts_from_k():
    dense = resolve(Unit(1, "ticket", 0), RUN)
    assert (dense.mask, dense.start, dense.captures) == ("dense", "fresh", (0, 3))
    again = resolve(Unit(1, "ticket", 0), RunShape(k=3, instability=True))
    assert (again.start, again.step, again.captures) == ("stored_rewind", 3, ())
    assert resolve(Unit(1, "ticket", 0), RunShape(k=0)).captures == (0,)


def test_chains_prune_their_own_previous_level_and_record_the_retrain_mode():
    shape = RunShape(k=3, rewind_mode="lr")
    first = resolve(Unit(2, "rewind_init", 1), shape)
    assert first.source == Unit(2, "ticket", 0) and first.step == 0 and first.retrain == "lr"
    second = resolve(Unit(2, "rewind_init", 2), shape)
    assert second.source == Unit(2, "rewind_init", 1)
    assert second.prune_draws == (2, "rewind_init", "prune", 2) and second.check_planned
    eb = resolve(Unit(2, "early_bird", 2), shape)
    assert eb.mask == "early_bird" and eb.monitors == ("early_bird",) and eb.source == Unit(2, "early_bird", 1)


def test_controls_follow_the_table_and_share_one_generator_for_mask_then_permutation():
    fresh = resolve(Unit(0, "random_mask", 2), RUN)
    assert (fresh.mask, fresh.start, fresh.retrain) == ("random_layer", "fresh", "as_is")
    assert fresh.init_seed == derive_seed(0, "random_mask", 2, "init") and fresh.match_ticket
    permuted = resolve(Unit(0, "permuted_mask", 2), RUN)
    assert permuted.draws == (0, "permuted_mask", 2) and permuted.permute and permuted.step == 3
    one_shot = resolve(Unit(0, "one_shot", 2), RunShape(k=3, rewind_mode="finetune"))
    assert one_shot.source == Unit(0, "ticket", 0) and one_shot.retrain == "finetune"
    pruned = resolve(Unit(0, "prune_dense_td", 2), RUN)
    assert (pruned.start, pruned.retrain, pruned.source) == ("trained", "none", Unit(0, "dense_td", 0))
    kept = resolve(Unit(0, "random_prune", 2), RUN)  # Chen et al.'s random pruning: rewind weights kept
    assert (kept.mask, kept.start, kept.step, kept.permute) == ("random_layer", "rewind", 3, False)
    assert resolve(Unit(0, "random_prune_global", 2), RUN).mask == "random_global"


def test_a_registered_spec_decides_the_start_and_the_role_without_its_name(monkeypatch):
    """A control rewinding to step 0 by its spec (not by being called rewind_init), and roles
    derived from mask and start for a plugin that names none."""
    from multiticket.core.controls import CONTROLS, ControlSpec

    monkeypatch.setitem(CONTROLS._entries, "scattered_zero", ControlSpec(
        "scattered_zero", "random_global", "rewind", "random positions, rewound to step 0", rewind_to="init"))
    monkeypatch.setitem(CONTROLS._entries, "chain_zero", ControlSpec(
        "chain_zero", "chain", "rewind", "an IMP chain rewound to step 0", rewind_to="init"))
    assert resolve(Unit(0, "scattered_zero", 2), RUN).step == 0
    assert resolve(Unit(0, "chain_zero", 2), RUN).step == 0 and resolve(Unit(0, "ticket", 2), RUN).step == 3
    roles = {name: spec.role for name, spec in CONTROLS.items()}
    assert roles["scattered_zero"] == "random" and roles["chain_zero"] == "ablation"
    assert {n for n, r in roles.items() if r == "random"} >= {"random_reinit", "random_mask", "random_mask_global",
                                                            "random_prune", "random_prune_global", "permuted_init",
                                                            "permuted_mask", "transfer_mask"}
    assert roles["ticket"] == "ticket" and roles["one_shot"] == roles["rewind_init"] == "ablation"


def test_targeted_dropout_and_transfer_change_recipes_not_runners():
    everywhere = RunShape(k=3, targeted_dropout="all")
    assert resolve(Unit(0, "permuted_init", 1), everywhere).monitors == ("targeted_dropout",)
    experiment = RunShape(k=3, targeted_dropout="experiment", prune_only=True)
    assert resolve(Unit(0, "ticket", 1), experiment).monitors == ()
    dense_td = resolve(Unit(0, "dense_td", 0), experiment)
    assert dense_td.monitors == ("targeted_dropout",) and dense_td.keep_state and dense_td.captures == ()
    transfer = RunShape(k=3, transfer=True)
    ticket = resolve(Unit(0, "ticket", 2), transfer)
    assert (ticket.mask, ticket.start, ticket.retrain) == ("transferred", "rewind", "as_is")
    with pytest.raises(RunFailure, match="no meaning in a transfer run"):
        resolve(Unit(0, "rewind_init", 1), transfer)


class _Recorder:
    def __init__(self, name: str, log: list[str], stop_at: int | None = None) -> None:
        self.name, self.log, self.stop_at = name, log, stop_at

    def on_start(self, step: int) -> None:
        self.log.append(f"{self.name}.start{step}")

    def before_step(self, step: int) -> None:
        self.log.append(f"{self.name}.before{step}")

    def after_step(self, step: int, module: torch.nn.Module) -> bool:
        self.log.append(f"{self.name}.after{step}")
        return step == self.stop_at

    def before_checkpoint(self) -> None:
        self.log.append(f"{self.name}.ckpt")

    def close(self) -> None:
        self.log.append(f"{self.name}.close")

    def state(self) -> int:
        return len(self.log)

    def load_state(self, state: int) -> None:
        self.log.append(f"{self.name}.load{state}")


def test_monitor_list_calls_every_monitor_in_order_and_any_may_stop():
    log: list[str] = []
    monitors = MonitorList([_Recorder("a", log), _Recorder("", log, stop_at=2)])
    monitors.on_start(0)
    assert not monitors.after_step(1, torch.nn.Linear(1, 1))
    assert monitors.after_step(2, torch.nn.Linear(1, 1))  # the second asks; the first still ran
    monitors.before_checkpoint()
    monitors.close()
    assert log == ["a.start0", ".start0", "a.after1", ".after1", "a.after2", ".after2", "a.ckpt", ".ckpt",
                   "a.close", ".close"]
    assert monitors.state() == {"a": 10}  # only named monitors keep state in checkpoints
    monitors.load_state({"a": 3, "b": 1})
    assert log[-1] == "a.load3"
