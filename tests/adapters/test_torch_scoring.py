"""The torch domain gives the data and all-ones forward that SNIP, GraSP and SynFlow score with:
a tiny run of the digits CNN example with each criterion and the pruning-at-init baselines keeps
the counting rule's exact count, and the scoring batches are the module's own first batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from multiticket.cli import main
from multiticket.core.mask import Mask

pytest.importorskip("sklearn")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits_cnn" / "task.yaml"
TINY = ["--quiet", "--workers", "1", "--set", "train.steps=30", "--set", "torch.args={channels: 4, hidden: 16, batch_size: 16}"]


def _run(tmp_path: Path, *sets: str) -> Path:
    args = ["run", str(EXAMPLE), "--out", str(tmp_path), "--levels", "2", *TINY]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    (run,) = list(tmp_path.iterdir())
    return run


@pytest.mark.parametrize("criterion", ["snip", "grasp", "synflow"])
def test_each_data_criterion_runs_in_the_torch_domain_at_the_tickets_count(tmp_path, criterion):
    run = _run(tmp_path, f"prune.criterion={criterion}", "controls=[one_shot]")
    for level in (1, 2):
        ticket = Mask.load(run / "seed_0" / "ticket" / f"level_{level}" / "mask.safetensors")
        one_shot = Mask.load(run / "seed_0" / "one_shot" / f"level_{level}" / "mask.safetensors")
        assert ticket.num_alive == one_shot.num_alive < ticket.numel


def test_the_pai_baselines_run_in_the_torch_domain(tmp_path):
    run = _run(tmp_path, "controls=[snip_init,synflow_init]", "rewind.step=3")
    ticket = Mask.load(run / "seed_0" / "ticket" / "level_2" / "mask.safetensors")
    for control in ("snip_init", "synflow_init"):
        mask = Mask.load(run / "seed_0" / control / "level_2" / "mask.safetensors")
        assert mask.num_alive == ticket.num_alive and mask != ticket, control


def test_scoring_batches_are_the_modules_first_batches(tmp_path):
    from multiticket.adapters.torch import TorchAdapter
    from multiticket.config import load_task

    task = load_task(EXAMPLE, TINY[4::2])
    adapter = TorchAdapter(task.config, task.section, tmp_path)
    adapter.build(0)
    scored = adapter.scoring_batches(0, 2)
    first = [b for _, b in zip(range(2), adapter.user.batches(0, 0, task.section.args))]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(scored, first, strict=True))
    assert adapter.scoring_loss(scored[0]).ndim == 0
    assert adapter.scoring_ones_output().shape[0] == 1
