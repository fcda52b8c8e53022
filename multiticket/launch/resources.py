"""``--workers auto``: how many units to run at once on this machine (docs/scale.md).

The count is the number of CPUs this process may use -- its CPU affinity, lowered by a cgroup
CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; containers and Slurm
jobs often get fewer CPUs than the host has) -- then capped so that the workers fit in the
available memory (:func:`worker_memory`, from the base memory each domain's adapter declares; on
a GPU, also in each GPU's free memory), and never more than the units there are to run. One means training in this process, as ``--workers 1``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

AUTO = "auto"
GIB = 1 << 30

#: per parameter of the trained module: fp32 weights, gradients, Adam's two moments, and the
#: copies a unit holds (initial weights, rewind point, final weights, mask): 8 copies of 4 bytes
BYTES_PER_PARAM = 32
#: a CUDA context in each worker that trains on a GPU
CUDA_CONTEXT_BYTES = int(0.5 * GIB)
#: submitit's default Slurm array parallelism: what ``auto`` leaves to the cluster's scheduler
SLURM_AUTO_PARALLELISM = 256


@dataclass(frozen=True)
class WorkerNeed:
    """What one worker of a run needs: host bytes, and GPU bytes when it trains on a GPU."""

    host: int
    gpu: int = 0


def worker_memory(base: int, n_params: int, on_gpu: bool) -> WorkerNeed:
    """The estimate of one worker's memory: ``base``, the resident memory its domain declares
    before the model (:attr:`~multiticket.core.adapter.DomainAdapter.worker_base_bytes`), plus 32
    bytes per parameter, on the host; on a GPU, the CUDA context plus 32 bytes per parameter there
    (activations of a batch are not counted: keep the batch size moderate or pass ``--workers``
    explicitly)."""
    model = BYTES_PER_PARAM * n_params
    if on_gpu:
        return WorkerNeed(host=base, gpu=CUDA_CONTEXT_BYTES + model)
    return WorkerNeed(host=base + model)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_dirs(root: Path, controller: str) -> list[Path]:
    """Where ``controller``'s files may be, this process's own cgroup first (v1 layout)."""
    mount = root / "sys/fs/cgroup" / controller
    dirs = []
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        _, _, rest = line.partition(":")
        names, _, rel = rest.partition(":")
        if controller.split(",")[0] in names.split(",") and rel.strip("/"):
            dirs.append(mount / rel.strip("/"))
    return [*dirs, mount]


def cgroup_cpu_quota(root: Path = Path("/")) -> float | None:
    """CPUs allowed by the cgroup quota (may be fractional); None when unlimited or unknown."""
    v2 = _read(root / "sys/fs/cgroup/cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100000)
    for d in _cgroup_dirs(root, "cpu") + _cgroup_dirs(root, "cpu,cpuacct"):
        quota_s, period_s = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        if quota_s is not None and period_s:
            return None if int(quota_s) <= 0 else int(quota_s) / int(period_s)
    return None


def allowed_cpus(root: Path = Path("/"), affinity: Callable[[], set[int]] | None = None) -> int:
    """CPUs this process may run on: its affinity, lowered by the cgroup quota (rounded down, >= 1)."""
    if affinity is None:
        affinity = (lambda: os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpus = len(affinity()) if affinity is not None else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, math.floor(quota))
    return max(1, cpus)


def available_memory(root: Path = Path("/")) -> int | None:
    """Bytes this process can still use: ``MemAvailable``, lowered by a cgroup memory limit
    minus what the cgroup uses (v2 ``memory.max``/``memory.current``, v1 ``memory.limit_in_bytes``/
    ``memory.usage_in_bytes``); None when unknown."""
    found = []
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            found.append(int(line.split()[1]) * 1024)
    pairs = [(root / "sys/fs/cgroup", "memory.max", "memory.current")]
    pairs += [(d, "memory.limit_in_bytes", "memory.usage_in_bytes") for d in _cgroup_dirs(root, "memory")]
    for d, limit_name, usage_name in pairs:
        limit, usage = _read(d / limit_name), _read(d / usage_name)
        if limit and usage and limit.isdigit() and usage.isdigit() and int(limit) < 1 << 60:
            found.append(max(0, int(limit) - int(usage)))
            break
    return min(found) if found else None


def gpu_free_memory() -> list[int]:
    """Free bytes on each visible GPU (none without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]


def memory_cap(workers: int, needs: Sequence[WorkerNeed], host_free: int | None, gpu_free: Sequence[int]) -> int:
    """``workers`` lowered so that that many workers of the hungriest run fit: in the host's
    free memory, and (for runs on a GPU) in the GPUs' free memory, workers spread round-robin."""
    if not needs:
        return workers
    host = max(n.host for n in needs)
    if host_free is not None and host > 0:
        workers = min(workers, host_free // host)
    gpu = max(n.gpu for n in needs)
    if gpu > 0 and gpu_free:
        workers = min(workers, sum(free // gpu for free in gpu_free))
    return max(1, workers)


def gpu_slots(workers: int, n_gpus: int) -> list[int] | None:
    """The CUDA device of each local pool worker: round-robin over the GPUs, so with more workers
    than GPUs several share one; None (every worker sees every GPU) without a GPU, or with one
    GPU and one worker."""
    if n_gpus == 0 or (n_gpus == 1 and workers == 1):
        return None
    return [i % n_gpus for i in range(workers)]

