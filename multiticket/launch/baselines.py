"""Measuring a run's baselines once: what trivial predictors score on its task.

The report flags degenerate units (a classifier at the majority-class rate, an LM at the unigram
perplexity, an RL return within noise of a random policy's) but loads no data and no environment,
so the driver asks the validated adapter (:meth:`DomainAdapter.baselines`) once per run directory
and stores the numbers in ``baselines.json``. A present file is never measured again (only
validated); the global RNGs are put back afterwards, so measuring changes no unit's training.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multiticket.core.adapter import DomainAdapter
from multiticket.core.store import atomic_write_text
from multiticket.rundir import BASELINES, baselines_record, read_baselines


@contextlib.contextmanager
def rng_untouched() -> Iterator[None]:
    """Restore torch's (CPU and CUDA), numpy's and Python's global RNG states after the block."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(state[0])
        np.random.set_state(state[1])
        random.setstate(state[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def measure_baselines(run_dir: Path, adapter: DomainAdapter, domain: str) -> dict[str, Any] | None:
    """The record to write into ``run_dir/baselines.json``, measured with the validated ``adapter``
    (UserError if it returns something else than finite numbers); None when the run directory
    already has a (valid) one, which is never measured again."""
    if read_baselines(run_dir) is not None:
        return None
    with rng_untouched():
        values = adapter.baselines()
    return baselines_record(domain, values)


def write_baselines(run_dir: Path, record: dict[str, Any] | None) -> None:
    """Write what :func:`measure_baselines` returned (atomically; nothing for None)."""
    if record is not None:
        atomic_write_text(Path(run_dir) / BASELINES, json.dumps(record, indent=1, sort_keys=True) + "\n")


def ensure_baselines(run_dir: Path, adapter: DomainAdapter, domain: str) -> dict[str, Any]:
    """The run's baselines: read from ``baselines.json``, or measured and written there."""
    write_baselines(run_dir, measure_baselines(run_dir, adapter, domain))
    found = read_baselines(run_dir)
    assert found is not None
    return found
