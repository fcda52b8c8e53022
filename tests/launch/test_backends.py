"""Every backend produces the same run directory; duplicated units are harmless."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from multiticket.cli import main
from multiticket.core.store import Unit
from multiticket.errors import RunFailure
from multiticket.launch.jobs import Job, JobCall, RunSpec, execute_job

TINY = [
    "train.steps=150",
    "toy.n_train=512",
    "toy.n_test=256",
    "toy.hidden=[32,16]",
    "controls=[random_reinit,rewind_init]",
]


def write_sweep(path: Path) -> Path:
    path.write_text(f"tasks: [toy-mlp]\nseeds: [0, 1]\nlevels: 2\nset: {json.dumps(TINY)}\n")
    return path


def content(run: Path) -> dict[str, object]:
    """What must not depend on the backend: masks, final weights, metrics minus timings, the file
    list of every unit. (Rewind ``state.safetensors`` holds Python's and numpy's global RNG states,
    which the toy adapter never seeds, so their bytes differ between processes; weights do not.)"""
    out: dict[str, object] = {}
    for p in sorted(run.rglob("*")):
        rel = str(p.relative_to(run))
        if not p.is_file() or rel.startswith(".") or rel == "summary.csv":
            continue
        if p.suffix == ".safetensors" and not p.with_suffix(".json").is_file():
            out[rel] = {k: v.tolist() for k, v in load_file(str(p)).items()}
        elif p.name == "metrics.json":
            record = json.loads(p.read_text())
            record.pop("train_seconds")
            out[rel] = record
        elif p.name == "config.yaml":
            out[rel] = "\n".join(line for line in p.read_text().splitlines() if not line.startswith("  "))
        else:
            out[rel] = "present"
    return out


def only_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep run in this process (--workers 1), the behaviour every backend must match."""
    tmp = tmp_path_factory.mktemp("ref")
    assert main(["sweep", str(write_sweep(tmp / "s.yaml")), "--out", str(tmp / "runs"), "--quiet"]) == 0
    return only_run(tmp / "runs")


def test_local_pool_matches_in_process(reference, tmp_path):
    sweep = write_sweep(tmp_path / "s.yaml")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "runs"), "--quiet", "--workers", "2"]) == 0
    run = only_run(tmp_path / "runs")
    assert run.name == reference.name
    assert content(run) == content(reference)
    assert not (run / ".probes").exists()


def test_ray_matches_local(reference, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sweep = write_sweep(tmp_path / "s.yaml")
        assert main(["sweep", str(sweep), "--out", str(tmp_path / "runs"), "--quiet", "--backend", "ray"]) == 0
    finally:
        ray.shutdown()
    assert content(only_run(tmp_path / "runs")) == content(reference)


def test_submitit_local_executor_matches_local(reference, tmp_path):
    pytest.importorskip("submitit")
    sweep = write_sweep(tmp_path / "s.yaml")
    args = [
        "sweep",
        str(sweep),
        "--out",
        str(tmp_path / "runs"),
        "--quiet",
        "--backend",
        "slurm",
        "--slurm-cluster",
        "local",
        "--workers",
        "2",
    ]
    assert main(args) == 0
    assert content(only_run(tmp_path / "runs")) == content(reference)
    assert list((tmp_path / "runs" / ".submitit").iterdir())  # the jobs' logs


def test_submitit_unit_granularity_debug_executor(reference, tmp_path):
    pytest.importorskip("submitit")
    sweep = write_sweep(tmp_path / "s.yaml")
    args = [
        "sweep",
        str(sweep),
        "--out",
        str(tmp_path / "runs"),
        "--quiet",
        "--backend",
        "slurm",
        "--slurm-cluster",
        "debug",
        "--granularity",
        "unit",
    ]
    assert main(args) == 0
    assert content(only_run(tmp_path / "runs")) == content(reference)


def test_slurm_without_slurm_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    sweep = write_sweep(tmp_path / "s.yaml")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "runs"), "--quiet", "--backend", "slurm"]) == 2
    assert "Slurm not found" in capsys.readouterr().err


def test_preempted_job_requeues_itself_with_the_same_arguments():
    submitit = pytest.importorskip("submitit")
    call = JobCall()
    delayed = call.checkpoint("job", "probe", 1)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is call and delayed.args == ("job", "probe", 1)


def _spec(run: Path) -> RunSpec:
    import yaml

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    resolved.pop("versions")
    return RunSpec(str(run), resolved, str(run / "config.yaml"), "cpu")


def test_duplicated_unit_is_trained_once_and_changes_nothing(reference, tmp_path):
    """Two processes given the same unit at once (a duplicated array task): one trains, the other
    waits on the unit's lock, then skips it; a third run later changes no byte."""
    import concurrent.futures as cf
    import multiprocessing as mp
    import shutil

    run = tmp_path / reference.name
    shutil.copytree(reference, run, ignore=shutil.ignore_patterns("seed_1", "summary.csv"))
    victim = run / "seed_0" / "rewind_init" / "level_2"
    shutil.rmtree(victim)
    job = Job(_spec(run), (Unit(0, "rewind_init", 2),))
    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        results = [f.result() for f in [pool.submit(execute_job, job, None, 1) for _ in range(2)]]
    assert sorted(r[0]["skipped"] for r in results) == [False, True]
    assert content(run) == {k: v for k, v in content(reference).items() if not k.startswith("seed_1")}
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    (again,) = execute_job(job, None, 1)
    assert again["skipped"]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_unit_with_a_missing_dependency_fails_clearly(reference, tmp_path):
    import shutil

    run = tmp_path / reference.name
    shutil.copytree(reference, run, ignore=shutil.ignore_patterns("seed_1"))
    for unit in ("ticket", "random_reinit"):
        shutil.rmtree(run / "seed_0" / unit / "level_1")
    with pytest.raises(RunFailure, match="needs seed_0/ticket/level_1"):
        execute_job(Job(_spec(run), (Unit(0, "random_reinit", 1),)), None, 1)
    assert not (run / "seed_0" / "random_reinit" / "level_1").exists()


def test_worker_that_cannot_see_the_run_directory_fails_clearly(reference, tmp_path):
    with pytest.raises(RunFailure, match="shared by the driver and every worker"):
        execute_job(Job(_spec(reference), (Unit(0, "ticket", 0),)), "no-such-probe", 1)


def test_pool_workers_start_with_torch_dynamo_and_the_adapters_already_imported():
    """What the fork server preloads for the local pool: without torch._dynamo every worker spends
    ~2 s importing it when it builds its first optimizer; without the adapter, SB3/transformers."""

    from multiticket.launch.backends import worker_context, worker_modules

    assert worker_modules(["rl", "toy", "rl"]) == [
        "multiticket.launch.jobs",
        "torch._dynamo",
        "multiticket.adapters.sb3",
        "multiticket.adapters.toy",
    ]
    # the light HF package (validation) and, by its WORKER_PRELOAD, the adapter with transformers
    assert worker_modules(["nlp"])[-2:] == ["multiticket.adapters.hf", "multiticket.adapters.hf.adapter"]
    ctx = worker_context(["multiticket.launch.jobs", "torch._dynamo"])
    if ctx.get_start_method() != "forkserver":
        pytest.skip("no forkserver on this platform")
    with ctx.Pool(1) as pool:
        loaded = pool.apply(_loaded_modules)
    assert {"torch", "torch._dynamo", "multiticket.launch.jobs"} <= loaded


def _loaded_modules() -> set[str]:
    import sys

    return set(sys.modules)


def test_a_stopped_pool_leaves_no_management_thread_to_race_the_exit_hook():
    """After a failure the local pool is stopped at once; its management thread must be joined,
    not forgotten, or the interpreter's exit hook writes to a wake-up pipe that thread closes
    (EBADF and a traceback after the one-line error; seen under ``ulimit -f``)."""
    import concurrent.futures as cf
    import multiprocessing as mp
    import time
    from concurrent.futures import process

    from multiticket.launch.backends import stop_pool

    pool = cf.ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"))
    assert pool.submit(abs, -1).result(timeout=120) == 1  # the workers are up
    busy = [pool.submit(time.sleep, 60) for _ in range(3)]
    manager = pool._executor_manager_thread
    assert manager is not None and manager.is_alive()
    started = time.monotonic()
    stop_pool(pool)
    assert not manager.is_alive() and time.monotonic() - started < 30
    wakeup = process._threads_wakeups.get(manager)  # this pool's pipe only: other tests' pools may live
    assert wakeup is None or wakeup._closed
    assert all(f.cancelled() or f.done() for f in busy)


def test_an_in_process_run_imports_the_worker_modules_with_the_collector_paused(monkeypatch):
    """``--workers 1`` is its own worker: the driver's warm-up imports what a pool worker preloads
    (torch._dynamo, the adapters), each with the cyclic collector off, which is on again after;
    a module that fails to import is left to the unit that needs it; the user's modules are not
    imported here (the adapter imports them its own way, with its one-line errors)."""
    import gc
    import importlib

    from multiticket.launch import backends

    expected = backends.worker_modules(["rl", "toy"])
    seen: list[tuple[str, bool]] = []

    def record(name: str):
        seen.append((name, gc.isenabled()))
        if name == "multiticket.adapters.toy":
            raise ImportError("a broken adapter")

    monkeypatch.setattr(importlib, "import_module", record)
    assert gc.isenabled()
    backends.warm_up_workers(backends.LaunchOptions(workers=1), ["rl", "toy"], ["a_users_module"])
    assert [name for name, _ in seen][-len(expected) :] == expected  # (after worker_modules' own look-ups)
    assert "a_users_module" not in [name for name, _ in seen]
    assert all(enabled is False for _, enabled in seen)
    assert gc.isenabled()


def test_the_collector_pause_restores_the_state_it_found_even_on_an_error():
    import gc

    from multiticket.runtime import collector_paused

    with pytest.raises(ValueError), collector_paused():
        assert not gc.isenabled()
        raise ValueError("an import failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()
