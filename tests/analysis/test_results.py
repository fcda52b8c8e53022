"""``Run.ticket``'s start weights are where the core's recipe started each unit (multiticket/analysis/
results.py reads :func:`multiticket.core.recipe.resolve`, it does not decide again): under
``rewind.mode: lr`` a pruned level continues from the weights it was pruned from, not from θ_k."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import multiticket
from multiticket.errors import UserError

TASK = {
    "name": "toy-starts", "domain": "toy", "seeds": [0], "train": {"steps": 40}, "rewind": {"step": 4, "mode": "lr"},
    "prune": {"levels": 2}, "controls": ["random_reinit", "one_shot", "permuted_init"],
    "toy": {"n_train": 128, "n_test": 64, "hidden": [16, 8], "lr": 0.05},
}


def _same(a: dict[str, torch.Tensor] | None, b: dict[str, torch.Tensor]) -> bool:
    return a is not None and a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_start_weights_follow_the_recipe(tmp_path: Path) -> None:
    run = multiticket.run(TASK, out=tmp_path)
    assert _same(run.ticket(0, 0).start, run.rewind_weights(0, 0))  # the dense run's captured init
    assert _same(run.ticket(0, 1).start, run.final_weights(0, 0))  # lr: the weights level 1 was pruned from
    assert _same(run.ticket(0, 2).start, run.final_weights(0, 1))
    assert _same(run.ticket(0, 2, "one_shot").start, run.final_weights(0, 0))  # pruned from the dense run
    assert run.ticket(0, 2, "random_reinit").start is None  # a fresh initialisation
    assert not _same(run.ticket(0, 2).start, run.rewind_weights(0))  # not θ_k, as under rewind.mode weights
    with pytest.raises(UserError, match="'permuted_init' were shuffled"):
        run.ticket(0, 1, "permuted_init")
