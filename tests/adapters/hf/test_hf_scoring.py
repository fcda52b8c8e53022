"""The Hugging Face domain gives SNIP, GraSP and SynFlow their data and their all-ones forward:
tiny runs of rotten-tomatoes-bert with each criterion and each pruning-at-init baseline keep the
counting rule's exact count; the scoring batches are training examples drawn by a generator of the
seed (the same list from two adapters), collated as the Trainer feeds them, leaving every global
RNG as it was; every model kind (the LSTM included) takes the all-ones input embeddings."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hf_testlib import COMMON, TINY, make_adapter

from multiticket.cli import main
from tests.runsnap import planned_count, unit_mask

SETS = ["train.steps=8", "rewind.step=2", "nlp.model_args={hidden_size: 32, num_hidden_layers: 1, "
        "num_attention_heads: 2, intermediate_size: 64}",
        *(f"nlp.{k}={v}" for k, v in COMMON.items())]


def _run(tmp_path: Path, levels: int, *sets: str) -> Path:
    args = ["run", "rotten-tomatoes-bert", "--out", str(tmp_path), "--quiet", "--workers", "1", "--levels",
            str(levels)]
    for s in [*SETS, *sets]:
        args += ["--set", s]
    assert main(args) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return run




@pytest.mark.parametrize("criterion", ["snip", "grasp", "synflow"])
def test_each_data_criterion_prunes_a_bert_ticket_to_the_planned_count(tmp_path, criterion):
    run = _run(tmp_path, 2, f"prune.criterion={criterion}", "controls=[]")
    for level in (1, 2):
        mask = unit_mask(run, "ticket", level)
        assert mask.num_alive == planned_count(mask, level) < mask.numel, level


def test_the_pai_baselines_run_in_the_nlp_domain_at_the_tickets_count(tmp_path):
    run = _run(tmp_path, 1, "controls=[snip_init,grasp_init,synflow_init]")
    ticket = unit_mask(run, "ticket", 1)
    masks = {c: unit_mask(run, c, 1) for c in ("snip_init", "grasp_init", "synflow_init")}
    for control, mask in masks.items():
        assert mask.num_alive == ticket.num_alive == planned_count(ticket, 1) and mask != ticket, control
        record = json.loads((run / "seed_0" / control / "level_1" / "metrics.json").read_text())
        assert record["role"] == "baseline" and record["start_step"] == 2, control
    assert masks["snip_init"] != masks["synflow_init"]


def _rng_state() -> tuple[Any, ...]:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _same_rng(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return (torch.equal(a[0], b[0]) and a[1][0] == b[1][0] and np.array_equal(a[1][1], b[1][1])
            and a[1][2:] == b[1][2:] and a[2] == b[2])


def _same(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b, strict=True))


def test_scoring_batches_are_a_function_of_the_seed_and_leave_the_global_rngs(tmp_path):
    first, second = make_adapter(tmp_path / "a"), make_adapter(tmp_path / "b")
    first.build(0)
    second.build(1)  # other weights: the batches are the data's, not the model's
    first.module.eval()
    before = _rng_state()
    batches = first.scoring_batches(7, 3)
    first.scoring_loss(batches[0]).backward()
    first.scoring_ones_output().sum().backward()
    assert _same_rng(before, _rng_state())
    assert _same(batches, second.scoring_batches(7, 3)) and not _same(batches, first.scoring_batches(8, 3))
    assert [len(b["labels"]) for b in batches] == [COMMON["batch_size"]] * 3
    assert set(batches[0]) == {"input_ids", "attention_mask", "labels"}  # padded by the Trainer's collator
    rows = torch.cat([b["input_ids"][:, 0:4] for b in batches])
    assert len({tuple(r.tolist()) for r in rows}) > 1  # examples drawn, not one repeated


@pytest.mark.parametrize("kind", list(TINY))
def test_every_model_kind_scores_a_loss_and_an_all_ones_output(tmp_path, kind):
    adapter = make_adapter(tmp_path, kind)
    adapter.build(0)
    adapter.module.eval()
    loss = adapter.scoring_loss(adapter.scoring_batches(0, 1)[0])
    assert loss.ndim == 0 and torch.isfinite(loss)
    output = adapter.scoring_ones_output()
    assert output.shape[0] == 1 and (output.ndim == 2 if kind == "bert" else output.shape[1] == 8)  # logits
    params = dict(adapter.module.named_parameters())
    names = adapter.default_prunable()
    grads = torch.autograd.grad(output.sum(), [params[n] for n in names], allow_unused=True)
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


def test_the_lstm_takes_input_embeddings_as_its_embedding_of_the_ids(tmp_path):
    adapter = make_adapter(tmp_path, "lstm")
    adapter.build(0)
    model = adapter.module.eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        by_ids = model(input_ids=ids).logits
        by_embeds = model(inputs_embeds=model.get_input_embeddings()(ids)).logits
    assert torch.equal(by_ids, by_embeds)
