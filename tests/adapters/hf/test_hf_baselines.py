"""HF baselines: the majority-class rate a constant classifier scores (and is flagged for, with
its one predicted class), and the unigram perplexity (add-one smoothing, the model's tokens),
which an untrained language model does not beat."""

from __future__ import annotations

import math

import pytest
import torch

from multiticket.adapters.hf import baselines as B
from multiticket.analysis.degenerate import unit_flags
from tests.adapters.hf.hf_testlib import make_adapter


def test_unigram_perplexity_by_hand():
    counts = B.unigram_counts([{"input_ids": [0, 1, 1, 2]}], 4)  # p = (count + 1) / (4 + 4)
    assert counts.tolist() == [1, 2, 1, 0]
    ppl = B.unigram_perplexity(counts, [{"labels": [1, 0, 3]}])  # the first token is never predicted
    assert ppl == pytest.approx(math.exp(-(math.log(2 / 8) + math.log(1 / 8)) / 2))


@torch.no_grad()
def test_constant_classifier_is_flagged(workdir):
    adapter = make_adapter(workdir, "bert", max_eval_examples=64)
    adapter.build(0)
    baselines = adapter.baselines()
    labels = [int(e["labels"]) for e in adapter._features["validation"]]
    majority = max(set(labels), key=labels.count)
    assert baselines["majority_rate"] == labels.count(majority) / len(labels)
    head = adapter.module.classifier
    head.weight.zero_()
    head.bias.fill_(-5.0)
    head.bias[majority] = 5.0
    metrics = adapter.evaluate()
    assert metrics["accuracy"] == baselines["majority_rate"] and metrics["predicted_classes"] == 1
    assert metrics["top_class_fraction"] == 1.0 and metrics["test_predicted_classes"] == 1
    checks = [f.check for f in unit_flags({"metrics": metrics}, baselines)]
    assert checks.count("majority") == (2 if metrics["test_accuracy"] <= baselines["test_majority_rate"] else 1)
    assert checks.count("one_class") == 2


def test_untrained_language_model_is_at_or_above_unigram(workdir):
    adapter = make_adapter(workdir, "gpt2")
    adapter.build(0)
    baselines = adapter.baselines()
    vocab = adapter.module.config.vocab_size
    assert 1 < baselines["unigram_perplexity"] < vocab and 1 < baselines["test_unigram_perplexity"] < vocab
    metrics = adapter.evaluate()  # an untrained model is about uniform: ~vocab
    assert [f.check for f in unit_flags({"metrics": metrics}, baselines)] == ["unigram", "unigram"]
