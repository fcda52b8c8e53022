"""``--workers auto``: the CPUs this process may use (affinity, cgroup v1/v2 quota), capped by
memory; in-process at one; pool workers spread round-robin over the GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiticket.cli import build_parser, main
from multiticket.launch import backends, driver
from multiticket.launch import resources as res
from multiticket.launch.backends import LaunchOptions
from multiticket.launch.jobs import Job, RunSpec

EIGHT = lambda: set(range(8))  # noqa: E731 - a mocked affinity of 8 CPUs
GIB = res.GIB


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_affinity_alone(tmp_path: Path) -> None:
    assert res.allowed_cpus(tmp_path, EIGHT) == 8
    assert res.allowed_cpus(tmp_path, lambda: {3}) == 1


@pytest.mark.parametrize(("text", "cpus"), [("250000 100000", 2), ("50000 100000", 1), ("max 100000", 8),
                                            ("1200000 100000", 8)])
def test_cgroup_v2_quota(tmp_path: Path, text: str, cpus: int) -> None:
    _write(tmp_path, "sys/fs/cgroup/cpu.max", text)
    assert res.allowed_cpus(tmp_path, EIGHT) == cpus


@pytest.mark.parametrize(("quota", "cpus"), [("300000", 3), ("-1", 8)])
def test_cgroup_v1_quota(tmp_path: Path, quota: str, cpus: int) -> None:
    _write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", quota)
    _write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000")
    assert res.allowed_cpus(tmp_path, EIGHT) == cpus


def test_cgroup_v1_own_group_first(tmp_path: Path) -> None:
    _write(tmp_path, "proc/self/cgroup", "4:memory:/job\n2:cpu,cpuacct:/job\n0::/")
    _write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us", "200000")
    _write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us", "100000")
    _write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1")
    _write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000")
    assert res.allowed_cpus(tmp_path, EIGHT) == 2


def test_available_memory(tmp_path: Path) -> None:
    assert res.available_memory(tmp_path) is None
    _write(tmp_path, "proc/meminfo", "MemTotal: 16777216 kB\nMemAvailable: 8388608 kB")
    assert res.available_memory(tmp_path) == 8 * GIB
    _write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", str(6 * GIB))  # v1 limit, 1 GiB used
    _write(tmp_path, "sys/fs/cgroup/memory/memory.usage_in_bytes", str(GIB))
    assert res.available_memory(tmp_path) == 5 * GIB
    _write(tmp_path, "sys/fs/cgroup/memory.max", str(4 * GIB))  # v2 wins over v1
    _write(tmp_path, "sys/fs/cgroup/memory.current", str(GIB))
    assert res.available_memory(tmp_path) == 3 * GIB


def test_worker_memory_rule_and_cap() -> None:
    small = res.worker_memory(int(0.6 * GIB), 10_000, on_gpu=False)
    assert small == res.WorkerNeed(host=int(0.6 * GIB) + 320_000)
    big = res.worker_memory(int(1.5 * GIB), 125_000_000, on_gpu=False)  # a GPT-2-sized model on CPU
    assert big.host == int(1.5 * GIB) + 4_000_000_000
    assert res.memory_cap(16, [small, big], 12 * GIB, []) == 2  # the hungriest run sets the cap
    assert res.memory_cap(16, [small], 12 * GIB, []) == 16
    assert res.memory_cap(16, [big], GIB, []) == 1  # never below one
    assert res.memory_cap(16, [small], None, []) == 16  # unknown memory: no cap
    gpu = res.worker_memory(int(1.5 * GIB), 4_400_000, on_gpu=True)  # a tiny BERT on a GPU
    assert gpu.gpu == res.CUDA_CONTEXT_BYTES + 32 * 4_400_000
    assert res.memory_cap(16, [gpu], 64 * GIB, [2 * GIB, 2 * GIB]) == 6  # 3 fit on each GPU


def test_the_memory_estimate_uses_the_base_the_domain_declares() -> None:
    """A domain's adapter declares its worker's base memory; the driver's estimate starts there,
    whatever the domain is called (the built-ins declare theirs too, none is looked up by name)."""
    from types import SimpleNamespace

    import torch

    from multiticket.adapters.sb3 import SB3Adapter
    from multiticket.adapters.toy import ToyAdapter
    from multiticket.core.adapter import DomainAdapter

    class Declared:
        worker_base_bytes = 3 * GIB

        module = torch.nn.Linear(10, 10)  # 110 parameters

    run = SimpleNamespace(runner=SimpleNamespace(adapter=Declared()), task=SimpleNamespace(config=None))
    assert driver.worker_need(run) == res.WorkerNeed(host=3 * GIB + 32 * 110)
    assert ToyAdapter.worker_base_bytes < SB3Adapter.worker_base_bytes < DomainAdapter.worker_base_bytes


@pytest.mark.parametrize(("workers", "gpus", "slots"), [(4, 1, [0, 0, 0, 0]), (3, 2, [0, 1, 0]), (1, 2, [0]),
                                                        (1, 1, None), (4, 0, None)])
def test_gpu_slots(workers: int, gpus: int, slots: list[int] | None) -> None:
    assert res.gpu_slots(workers, gpus) == slots


def test_local_pool_assigns_gpus_round_robin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pool worker takes one CUDA device from the queue its initializer reads; the pool is
    no larger than the jobs there are."""
    seen = {}

    class Stop(Exception):
        pass

    def pool(size, mp_context, initializer, initargs):  # noqa: ANN001, ANN202
        seen["size"], queue = size, initargs[0]
        seen["gpus"] = [queue.get(timeout=10) for _ in range(size)]
        raise Stop

    monkeypatch.setattr(backends, "_gpu_count", lambda device: 2)
    monkeypatch.setattr(backends.cf, "ProcessPoolExecutor", pool)
    monkeypatch.setattr(backends, "worker_context", lambda modules: __import__("multiprocessing").get_context("spawn"))
    spec = RunSpec("/nowhere", {"domain": "toy"}, "t.yaml", "cuda", [])
    jobs = [Job(spec, (object(),)) for _ in range(3)]
    with pytest.raises(Stop):
        backends.run_local(jobs, LaunchOptions(workers=5), "probe", lambda job, results: None)
    assert seen == {"size": 3, "gpus": [0, 1, 0]}


def test_cli_default_is_auto() -> None:
    args = build_parser().parse_args(["run", "toy-mlp"])
    assert args.workers == "auto"
    assert build_parser().parse_args(["sweep", "s.yaml", "--workers", "3"]).workers == 3
    assert build_parser().parse_args(["transfer", "d", "--to", "t", "--workers", "AUTO"]).workers == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "toy-mlp", "--workers", "0"])


@pytest.mark.parametrize(("cpus", "memory", "pool"), [(3, 64 * GIB, 3), (3, GIB, 2), (3, GIB // 4, None),
                                                      (1, 64 * GIB, None)])
def test_auto_resolves_cpus_then_memory(tiny_toy_args, monkeypatch: pytest.MonkeyPatch, cpus: int, memory: int,
                                        pool: int | None) -> None:
    """``auto``: 3 allowed CPUs give a pool of 3, unless 1 GiB of memory fits only 2 toy workers;
    one CPU, or memory for one worker, trains in this process."""
    dispatched = []
    monkeypatch.setattr(driver, "allowed_cpus", lambda: cpus)
    monkeypatch.setattr(driver, "available_memory", lambda: memory)
    monkeypatch.setattr(driver, "dispatch", lambda runs, opts, reporter: dispatched.append(opts.workers))
    assert main([*tiny_toy_args, "--levels", "1", "--set", "controls=[]"]) == 0
    assert dispatched == ([pool] if pool else [])
    runs = Path(tiny_toy_args[tiny_toy_args.index("--out") + 1])
    finished = list(runs.glob("*/seed_0/ticket/level_*/DONE"))
    assert len(finished) == (0 if pool else 2)  # in-process: trained here
