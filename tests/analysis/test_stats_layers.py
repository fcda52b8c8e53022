"""Statistics and layer roles used by the report."""

from __future__ import annotations

import math

import pytest
import torch

from multiticket.analysis.layers import (
    jaccard_across_seeds,
    position_roles,
    pruned_inputs,
    random_jaccard,
    remaining_per_role,
)
from multiticket.analysis.rundata import _ranges
from multiticket.analysis.stats import anchor, matches, mean_std, normalise
from multiticket.core.mask import Mask
from multiticket.core.name_roles import name_role


def test_mean_std_of_one_value():
    assert mean_std([2.0]) == (2.0, 0.0, 1)


def test_normalise_and_matching_follow_the_metric_direction():
    assert normalise(0.45, 0.9, True) == pytest.approx(0.5)
    assert normalise(40.0, 20.0, False) == pytest.approx(0.5)  # perplexity doubled: half as good
    assert normalise(-200.0, -100.0, True) == pytest.approx(0.0)  # negative returns: worse is lower
    assert normalise(-50.0, -100.0, True) == pytest.approx(1.5)
    assert matches(0.895, 0.9, 0.01, True) and not matches(0.88, 0.9, 0.01, True)
    assert matches(20.1, 20.0, 0.01, False) and not matches(20.5, 20.0, 0.01, False)
    assert matches(0.95, 0.9, 0.0, True)  # better than dense always matches


def test_anchor_puts_the_trivial_baseline_at_0_and_dense_at_1_in_either_direction():
    # Acrobot: dense −96, random policy −500; a return of −88 keeps more than all of the gap
    assert anchor(-96.0, -96.0, -500.0, True) == 1.0 and anchor(-500.0, -96.0, -500.0, True) == 0.0
    assert anchor(-88.0, -96.0, -500.0, True) == pytest.approx(412 / 404)
    assert anchor(0.7, 0.8, 0.6, True) == pytest.approx(0.5)  # accuracy halfway from the majority rate
    assert anchor(0.5, 0.8, 0.6, True) == pytest.approx(-0.5)  # below the baseline: negative
    # perplexity (lower is better) on logs: sqrt(546 · 390) is halfway in nats
    mid = math.sqrt(546.0 * 390.0)
    assert anchor(mid, 390.0, 546.0, False, log_scale=True) == pytest.approx(0.5)
    assert anchor(300.0, 390.0, 546.0, False, log_scale=True) > 1.0  # better than dense
    # undefined: dense no better than the baseline (equal, or worse: the scale would flip), a log
    # of a non-positive value, NaN in
    assert math.isnan(anchor(0.6, 0.59, 0.59, True))
    assert math.isnan(anchor(0.7, 0.55, 0.59, True))  # a dense classifier below the majority rate
    assert math.isnan(anchor(400.0, 600.0, 546.0, False, log_scale=True))  # dense above the unigram
    assert math.isnan(anchor(1.0, 0.5, 0.0, False, log_scale=True))  # log of 0
    assert math.isnan(anchor(math.nan, 0.8, 0.6, True))


@pytest.mark.parametrize(("name", "role"), [
    ("bert.embeddings.word_embeddings.weight", "embeddings"),
    ("bert.encoder.layer.3.attention.self.query.weight", "attention.query"),
    ("bert.encoder.layer.3.attention.output.dense.weight", "attention.output"),
    ("bert.encoder.layer.3.intermediate.dense.weight", "ffn.intermediate"),
    ("bert.encoder.layer.3.output.dense.weight", "ffn.output"),
    ("bert.pooler.dense.weight", "pooler"),
    ("classifier.weight", "head"),
    ("transformer.wte.weight", "embeddings"),
    ("transformer.h.0.attn.c_attn.weight", "attention.qkv"),
    ("transformer.h.0.mlp.c_proj.weight", "ffn.output"),
    ("model.encoder.layers.0.self_attn.k_proj.weight", "attention.key"),
    ("model.decoder.layers.1.fc2.weight", "ffn.output"),
    ("lstm_model.lstm.weight_ih_l0", "lstm.ih"),
    ("lstm_model.lstm.weight_hh_l1", "lstm.hh"),
    ("rnn.weight_hh_l0", "lstm.hh"),
    ("encoder.block.0.layer.0.SelfAttention.q.weight", "attention.query"),
    ("encoder.block.0.layer.1.DenseReluDense.wi.weight", "ffn.intermediate"),
    ("model.layers.0.mlp.down_proj.weight", "ffn.output"),
    ("distilbert.transformer.layer.0.attention.out_lin.weight", "attention.output"),
    ("distilbert.transformer.layer.0.ffn.lin1.weight", "ffn.intermediate"),
    ("lm_head.weight", "head"),
])
def test_nlp_roles_from_names(name, role):
    assert name_role(name) == role


def test_positional_roles_from_shapes():
    toy = {"0.weight": (128, 32), "0.bias": (128,), "2.weight": (64, 128), "4.weight": (4, 64)}
    assert position_roles(toy) == {"0.weight": "input", "0.bias": "input", "2.weight": "hidden", "4.weight": "output"}
    ppo = {"action_net.weight": (2, 64), "mlp_extractor.policy_net.0.weight": (64, 4),
           "mlp_extractor.policy_net.2.weight": (64, 64), "mlp_extractor.value_net.0.weight": (64, 4),
           "value_net.weight": (1, 64)}
    assert position_roles(ppo) == {"action_net.weight": "output", "mlp_extractor.policy_net.0.weight": "input",
                                   "mlp_extractor.policy_net.2.weight": "hidden",
                                   "mlp_extractor.value_net.0.weight": "input", "value_net.weight": "output"}
    cnn = {"cnn.0.weight": (32, 4, 8, 8), "cnn.2.weight": (64, 32, 4, 4), "linear.0.weight": (512, 3136),
           "action_net.weight": (6, 512)}
    assert position_roles(cnn) == {"cnn.0.weight": "input", "cnn.2.weight": "hidden", "linear.0.weight": "hidden",
                                   "action_net.weight": "output"}
    square = {"a.weight": (8, 8), "b.weight": (8, 8), "c.weight": (8, 8)}
    assert position_roles(square) == {"a.weight": "input", "b.weight": "hidden", "c.weight": "output"}
    assert name_role("proj.weight") is None  # a name that tells nothing falls back to position


def test_layer_statistics():
    a = Mask({"w0": torch.tensor([[1, 1, 0], [1, 0, 0]]), "w1": torch.tensor([[1, 0], [0, 0]])})
    b = Mask({"w0": torch.tensor([[1, 0, 0], [1, 1, 0]]), "w1": torch.tensor([[1, 0], [0, 1]])})
    assert remaining_per_role(a) == {"input": 0.5, "output": 0.25}
    jac = jaccard_across_seeds({1: {0: a, 1: b}, 2: {0: a}})
    assert list(jac) == [1]
    assert jac[1]["w0"] == pytest.approx(2 / 4) and jac[1]["w1"] == pytest.approx(1 / 2)
    assert jac[1]["(all)"] == pytest.approx(3 / 6)
    name, dead = pruned_inputs({1: {0: a, 1: b}})
    assert name == ["w0"] and dead == {1: {0: [2], 1: [2]}}
    assert random_jaccard(1.0) == 1.0 and random_jaccard(0.5) == pytest.approx(1 / 3)
    assert _ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"


def test_sparsity_ticks_skip_near_equal_levels_of_several_runs():
    from multiticket.analysis.plots import spread_ticks

    even = [0.8**k for k in range(11)]  # one run, 10 levels: every other tick, as before
    assert spread_ticks(even) == even[::2]
    assert spread_ticks([0.8**k for k in range(5)]) == [0.8**k for k in range(5)]
    # RL runs at 35.9 %, NLP runs at 36.0 % sparsity: one label for the pair, none overlapping
    mixed = [1.0, 0.801, 0.8, 0.642, 0.641, 0.64, 0.51, 0.41, 0.263, 0.168, 0.109, 0.107]
    ticks = spread_ticks(mixed)
    assert ticks[0] == 1.0 and 0.109 in ticks and 0.107 not in ticks
    assert all(math.log(a / b) > 0.2 for a, b in zip(ticks, ticks[1:]))
    assert spread_ticks([0.5]) == [0.5] and spread_ticks([]) == []
