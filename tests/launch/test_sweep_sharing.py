"""Runs of a sweep that differ only in what the dense unit never reads train it once (issue 32):
the other runs get a link-free, checksum-verified copy with ``shared_from.json``, byte-identical
to what training it again would have written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from multiticket.cli import main
from multiticket.config import load_task
from multiticket.core.store import RunStore, Unit
from multiticket.core.units import unit_finished
from multiticket.launch import LaunchOptions, run_tasks
from multiticket.launch.sweep import SHARED_FROM, dense_key, share_dense
from multiticket.paths import TASKS_DIR

TINY = ["train.steps=100", "toy.n_train=256", "toy.n_test=128", "toy.hidden=[16]", "controls=[random_mask]"]
CRITERIA = ["large_final", "movement", "magnitude_increase"]


def task(*sets: str, levels: int = 1) -> Any:
    return load_task(TASKS_DIR / "toy-mlp.yaml", [*TINY, *sets], seeds=[0], levels=levels)


class Counting:
    """A reporter that counts the units trained (``unit_started``) and collects warnings."""

    def __init__(self) -> None:
        self.started: list[Unit] = []
        self.warnings: list[str] = []

    def unit_started(self, unit: Unit, start: int, stop: int) -> None:
        self.started.append(unit)

    def step(self, step: int) -> None:
        pass

    def unit_finished(self, unit: Unit, record: dict[str, Any] | None, skipped: bool) -> None:
        pass

    def warn(self, text: str) -> None:
        self.warnings.append(text)


@pytest.mark.parametrize("other", [
    "prune.criterion=movement", "prune.rate=0.5", "prune.rate_of=original", "prune.strategy=layerwise_magnitude",
    "prune.allocator=erk", "prune.rates={'net.0.*': 0.5}", "rewind.optimizer=restore", "rewind.mode=lr",
    "report.tolerance=0.05", "controls=[random_reinit,one_shot]", "rewind.step=2",
])  # fmt: skip
def test_keys_level_0_never_reads_share_it(other):
    """rewind.step=2 is 2% of 100 steps: the same rewind point as the task's own '2%'."""
    assert dense_key(task(other)) == dense_key(task())


@pytest.mark.parametrize("other", [
    "rewind.step=5", "train.steps=120", "toy.lr=0.01", "toy.eval_every=50", "prune.include=['net.0.*']",
    "prune.exclude=['net.0.*']", "prune.biases=true", "controls=[prune_dense]",
])  # fmt: skip
def test_keys_level_0_reads_keep_it_apart(other):
    """Another rewind step is another point captured during the dense run; the scope is written
    into level 0's mask; eval_every (not hashed) shapes its curve; prune_dense keeps its state."""
    assert dense_key(task(other)) != dense_key(task())


def test_another_evaluation_method_never_shares():
    assert dense_key(task(), "a") != dense_key(task(), "b")


def content(run_dir: Path, rel: str) -> dict[str, bytes]:
    """The files of a finished unit or rewind point, by name (their DONE and provenance aside)."""
    d = run_dir / rel
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name not in ("DONE", SHARED_FROM)}


def same_as_trained(shared: dict[str, bytes], trained: dict[str, bytes]) -> None:
    """Byte for byte, but for what differs between any two trainings: the seconds a unit took, and
    the global numpy/Python RNG states a rewind point records (the toy adapter never draws from them)."""
    assert shared.keys() == trained.keys()
    for name in shared:
        if name == "metrics.json":
            a, b = json.loads(shared[name]), json.loads(trained[name])
            a.pop("train_seconds"), b.pop("train_seconds")
            assert a == b
        elif name in ("state.json", "state.safetensors"):
            continue  # compared below, tensor by tensor
        else:
            assert shared[name] == trained[name], name
    if "state.json" in shared:
        tree_a, tree_b = (json.loads(x["state.json"])["tree"] for x in (shared, trained))
        rng_a, rng_b = tree_a.pop("rng"), tree_b.pop("rng")
        assert tree_a == tree_b and rng_a["torch"] == rng_b["torch"]


def test_a_three_criterion_sweep_trains_the_dense_unit_once_and_copies_it_exactly(tmp_path, capsys):
    tasks = [task(f"prune.criterion={c}") for c in CRITERIA]
    reporter = Counting()
    runs = run_tasks(tasks, tmp_path / "shared", LaunchOptions(workers=1), reporter)
    dense = [u for u in reporter.started if u.level == 0]
    assert dense == [Unit(0, "ticket", 0)], "the dense unit is trained once for the three runs"
    assert len(reporter.started) == 1 + 3 * 2  # and every other unit of every run
    assert "note: 2 dense unit(s) copied" in capsys.readouterr().err  # two copies, noted once
    donor = runs[0]
    for run in runs[1:]:
        for rel in ("seed_0/ticket/level_0", "seed_0/rewind/step_0", "seed_0/rewind/step_2"):
            record = json.loads((run / rel / SHARED_FROM).read_text())
            assert record["donor_run"] == donor.name and record["path"] == rel
            assert not any(p.is_symlink() for p in (run / rel).iterdir())
            assert RunStore(run).is_done(run / rel)
            assert SHARED_FROM in (RunStore(run).done_files(run / rel) or {})
            assert content(run, rel) == content(donor, rel)
        assert unit_finished(RunStore(run), Unit(0, "ticket", 0), 2)
    assert not (donor / "seed_0/ticket/level_0" / SHARED_FROM).exists()

    # the same tasks trained each on its own: every file the sharing wrote is what training writes
    for t in tasks:
        run_tasks([t], tmp_path / "alone", LaunchOptions(workers=1))
    for run in runs:
        alone = tmp_path / "alone" / run.name
        for rel in ("seed_0/ticket/level_0", "seed_0/rewind/step_0", "seed_0/rewind/step_2",
                    "seed_0/ticket/level_1", "seed_0/random_mask/level_1"):
            same_as_trained(content(run, rel), content(alone, rel))


def test_another_rewind_step_shares_nothing_though_the_dense_weights_agree(tmp_path):
    """The dense run is the same for k = 2 and k = 5 (capturing does not change training), but
    each needs its own rewind point, saved during that run: no copy, two trainings."""
    tasks = [task("rewind.step=2"), task("rewind.step=5")]
    reporter = Counting()
    a, b = run_tasks(tasks, tmp_path, LaunchOptions(workers=1), reporter)
    assert [u for u in reporter.started if u.level == 0] == [Unit(0, "ticket", 0)] * 2
    assert not list(tmp_path.rglob(SHARED_FROM))
    rel = "seed_0/ticket/level_0/final.safetensors"
    assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_the_sweep_command_shares_and_a_rerun_does_nothing(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"tasks: [toy-mlp]\nlevels: 1\nset: {json.dumps(TINY)}\ngrid: {{prune.criterion: {CRITERIA}}}\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "2 dense unit(s) copied from a run with the same dense training" in err
    assert len(list((tmp_path / "runs").rglob(f"level_0/{SHARED_FROM}"))) == 2
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    assert "dense unit(s) copied" not in capsys.readouterr().err


def test_a_pool_trains_the_shared_dense_unit_first_then_the_rest(tmp_path):
    tasks = [task(f"prune.criterion={c}") for c in CRITERIA[:2]]
    runs = run_tasks(tasks, tmp_path / "pool", LaunchOptions(workers=2))
    assert (runs[1] / "seed_0/ticket/level_0" / SHARED_FROM).is_file()
    for run in runs:
        for unit in (Unit(0, "ticket", 0), Unit(0, "ticket", 1), Unit(0, "random_mask", 1)):
            assert unit_finished(RunStore(run), unit, 2)


def test_share_dense_copies_only_a_finished_unit_and_never_over_a_finished_one(tmp_path):
    a, b = run_tasks([task()], tmp_path / "a", LaunchOptions(workers=1))[0], tmp_path / "b" / "x"
    donor, member = RunStore(a), RunStore(b)
    assert share_dense(donor, member, 0, 2) is not None
    assert share_dense(donor, member, 0, 2) is None  # finished there now
    assert share_dense(member, RunStore(tmp_path / "c"), 1, 2) is None  # no seed 1 anywhere
    (a / "seed_0/ticket/level_0/final.safetensors").write_bytes(b"tampered")
    assert share_dense(donor, RunStore(tmp_path / "d"), 0, 2) is None  # a corrupt donor is no donor
    assert not (tmp_path / "d").exists()
    assert load_file(str(b / "seed_0/ticket/level_0/final.safetensors"))  # the copy made before is intact


@pytest.mark.parametrize("workers", [1, 2])
def test_extending_a_finished_sweep_by_a_criterion_trains_no_dense_unit(tmp_path, workers):
    run_tasks([task()], tmp_path, LaunchOptions(workers=1))
    reporter = Counting()
    old, new = run_tasks([task(), task("prune.criterion=movement")], tmp_path, LaunchOptions(workers=workers), reporter)
    if workers == 1:  # a pool's units start in its workers
        assert reporter.started == [Unit(0, "ticket", 1), Unit(0, "random_mask", 1)]
    assert json.loads((new / "seed_0/ticket/level_0" / SHARED_FROM).read_text())["donor_run"] == old.name
