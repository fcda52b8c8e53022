"""Sweep expansion, unit graph, per-unit locks and the status command."""

import fcntl
import json
import shutil
import threading
import time

import pytest

from multiticket.cli import main
from multiticket.config import load_task
from multiticket.core.store import RunStore, Unit
from multiticket.core.units import unit_dependencies, unit_plan
from multiticket.errors import UserError
from multiticket.launch.jobs import Job, RunSpec, execute_job, make_jobs
from multiticket.launch.status import counts, run_status
from multiticket.launch.sweep import grid_points, load_sweep
from multiticket.paths import TASKS_DIR

TINY = ["train.steps=150", "toy.n_train=512", "toy.n_test=256", "toy.hidden=[32,16]"]


def test_grid_is_the_cartesian_product():
    points = grid_points({"a": [1, 2], "b.c": ["x", [3, 4]]})
    assert points == [["a=1", 'b.c="x"'], ["a=1", "b.c=[3, 4]"], ["a=2", 'b.c="x"'], ["a=2", "b.c=[3, 4]"]]


def test_sweep_expands_tasks_variants_grid_into_hashed_runs(tmp_path):
    shutil.copy(TASKS_DIR / "toy-mlp.yaml", tmp_path / "mine.yaml")
    (tmp_path / "s.yaml").write_text(
        "tasks: [toy-mlp, mine.yaml]\nseeds: [3, 4]\nlevels: 2\nout: here\n"
        "set: [train.steps=100]\nvariants: [[rewind.step=0], ['rewind.step=2%']]\n"
        "grid: {toy.lr: [0.01, 0.1], prune.rate: [0.2]}\n"
    )
    sweep = load_sweep(tmp_path / "s.yaml")
    assert sweep.out == tmp_path / "here"
    # toy-mlp and mine.yaml are the same config, so 2 variants x 2 lrs = 4 distinct runs
    assert len(sweep.tasks) == 4
    assert len({t.run_name for t in sweep.tasks}) == 4
    for t in sweep.tasks:
        assert t.config.seeds == [3, 4] and t.config.prune.levels == 2 and t.config.train.steps == 100
    combos = sorted((str(t.config.rewind.step), t.section.lr) for t in sweep.tasks)
    assert combos == [("0", 0.01), ("0", 0.1), ("2%", 0.01), ("2%", 0.1)]
    expected = load_task(
        TASKS_DIR / "toy-mlp.yaml",
        ["train.steps=100", "rewind.step=0", "toy.lr=0.01", "prune.rate=0.2"],
        seeds=[3, 4],
        levels=2,
    )
    assert expected.run_name in {t.run_name for t in sweep.tasks}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tasks: [toy-mlp]\ngrdi: {a: [1]}\n", "grdi: unknown key (did you mean 'grid'?)"),
        ("tasks: [nope-task]\n", "'nope-task' is neither a task file nor a shipped task"),
        ("tasks: [toy-mlp]\ngrid: {toy.lr: []}\n", "grid.toy.lr: needs at least one value"),
        ("tasks: [toy-mlp]\ngrid: {toy.lrr: [1]}\n", "s.yaml: toy.lrr=1: toy.lrr: unknown key (did you mean 'lr'?)"),
        ("tasks: [toy-mlp]\nvariants: [['controls=[]'], ['controls=[one_shot]']]\n", "make them one entry"),
    ],
)
def test_bad_sweep_is_one_line_error(tmp_path, capsys, text, message):
    (tmp_path / "s.yaml").write_text(text)
    assert main(["sweep", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_unit_graph():
    task = load_task(
        TASKS_DIR / "toy-mlp.yaml", ["controls=[random_mask,one_shot,rewind_init]"], seeds=[0, 1], levels=3
    )
    plan = unit_plan(task.config)
    assert len(plan) == 2 * (1 + 3 * 4)
    position = {p.unit: i for i, p in enumerate(plan)}
    for p in plan:
        assert all(position[d] < position[p.unit] for d in p.deps)  # topological order
    assert unit_dependencies(Unit(0, "ticket", 0)) == ()
    assert unit_dependencies(Unit(0, "ticket", 2)) == (Unit(0, "ticket", 1),)
    assert unit_dependencies(Unit(0, "rewind_init", 1)) == (Unit(0, "ticket", 0),)
    assert unit_dependencies(Unit(0, "rewind_init", 3)) == (Unit(0, "rewind_init", 2),)
    assert unit_dependencies(Unit(1, "random_mask", 2)) == (Unit(1, "ticket", 2),)
    assert set(unit_dependencies(Unit(1, "one_shot", 2))) == {Unit(1, "ticket", 2), Unit(1, "ticket", 0)}
    spec = RunSpec("x", task.resolved, "x")
    assert len(make_jobs(spec, plan, "unit")) == len(plan)
    chains = make_jobs(spec, plan, "chain")
    assert [len(j.units) for j in chains] == [13, 13] and all(not j.deps for j in chains)


@pytest.fixture
def finished_run(tmp_path):
    args = [
        "run",
        "toy-mlp",
        "--out",
        str(tmp_path / "runs"),
        "--quiet",
        "--levels",
        "2",
        "--seeds",
        "0,1",
        *[a for s in TINY for a in ("--set", s)],
    ]
    assert main(args) == 0
    (run,) = (tmp_path / "runs").iterdir()
    return run


def _hold(store: RunStore, unit: Unit):
    path = store.lock_path(unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a")  # noqa: SIM115
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    return fh


def test_status_counts_done_running_corrupt_missing(finished_run, capsys):
    run, store = finished_run, RunStore(finished_run)
    states = run_status(run)
    assert len(states) == 2 * (1 + 2 * 3) and set(states.values()) == {"done"}
    shutil.rmtree(run / "seed_1" / "random_mask" / "level_2")  # missing
    (run / "seed_0" / "ticket" / "level_2" / "final.safetensors").write_bytes(b"corrupt")  # checksum: corrupt
    (run / "seed_0" / "rewind" / "step_3" / "DONE").unlink()  # dense counts as unfinished without its rewind
    held = _hold(store, Unit(1, "random_reinit", 2))  # running (lock held by another "process")
    (run / "seed_1" / "random_reinit" / "level_2" / "DONE").unlink()
    failed = run / "seed_1" / "random_mask" / "level_1"
    (failed / "DONE").unlink()
    (failed / "FAILED").write_text('{"error": "non-finite loss (nan) at step 7"}')  # failed
    try:
        summary = counts(run_status(run))
        assert summary["total"] == {"done": 9, "running": 1, "failed": 1, "corrupt": 1, "missing": 2}
        cells = summary["by_control_level"]
        assert cells["ticket"][0] == {"done": 1, "running": 0, "failed": 0, "corrupt": 0, "missing": 1}
        assert cells["ticket"][2] == {"done": 1, "running": 0, "failed": 0, "corrupt": 1, "missing": 0}
        assert cells["random_reinit"][2] == {"done": 1, "running": 1, "failed": 0, "corrupt": 0, "missing": 0}
        assert cells["random_mask"][1] == {"done": 1, "running": 0, "failed": 1, "corrupt": 0, "missing": 0}
        assert cells["random_mask"][2] == {"done": 1, "running": 0, "failed": 0, "corrupt": 0, "missing": 1}
        assert main(["status", str(run)]) == 0
        out = capsys.readouterr().out
        assert "9 done · 1 running · 1 failed · 1 corrupt · 2 missing" in out
        assert "corrupt: seed_0/ticket/level_2: " in out and "final.safetensors: corrupt (checksum mismatch)" in out
        assert main(["status", str(run), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data[str(run)]["total"] == {"done": 9, "running": 1, "failed": 1, "corrupt": 1, "missing": 2}
    finally:
        held.close()
    assert counts(run_status(run))["total"] == {"done": 9, "running": 0, "failed": 1, "corrupt": 1, "missing": 3}


def test_status_of_a_sweep_file(finished_run, tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        f"tasks: [toy-mlp]\nseeds: [0, 1]\nlevels: 2\nset: {json.dumps(TINY)}\n"
        "grid: {toy.lr: [0.05, 0.07]}\n"
    )
    assert main(["status", str(sweep), "--out", str(finished_run.parent), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[str(finished_run)]["total"] == {"done": 14, "running": 0, "failed": 0, "corrupt": 0, "missing": 0}
    (other,) = [k for k in data if k != str(finished_run)]
    assert data[other] is None  # not started


def test_worker_waits_for_a_unit_held_by_another_process(finished_run):
    import yaml

    run, store = finished_run, RunStore(finished_run)
    unit = Unit(0, "random_mask", 2)
    shutil.rmtree(store.unit_dir(unit))
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    resolved.pop("versions")
    job = Job(RunSpec(str(run), resolved, "x", "cpu"), (unit,))
    held = _hold(store, unit)
    results = []
    worker = threading.Thread(target=lambda: results.append(execute_job(job, None, 1)))
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive() and not store.is_done(store.unit_dir(unit))  # blocked on the lock
    held.close()
    worker.join(60)
    assert results[0][0]["skipped"] is False and store.is_done(store.unit_dir(unit))


def test_status_of_nonsense_is_a_user_error(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UserError):
        main(["--debug", "status", str(tmp_path / "x.txt")])
    assert main(["status", str(tmp_path)]) == 2
