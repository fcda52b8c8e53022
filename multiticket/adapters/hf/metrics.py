"""Evaluation of the three task kinds on the validation and test splits.

Primary metrics (validation split; the test split is reported beside them with a ``test_`` prefix):
accuracy (classification, higher is better), perplexity (causal LM, lower is better), BLEU on
generated text with sacrebleu (translation, higher is better). Classification also records
``predicted_classes`` and ``top_class_fraction``, which the report's degenerate-result checks read.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, cast

import torch
from transformers import GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase

PRIMARY = {
    "classification": ("accuracy", True),
    "causal_lm": ("perplexity", False),
    "translation": ("bleu", True),
}


def _batches(
    examples: list[dict[str, Any]], size: int, collate: Callable[[list[dict[str, Any]]], Any]
) -> Iterator[Any]:
    for i in range(0, len(examples), size):
        yield collate(examples[i : i + size])


def _autocast(device: str, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


def f1_macro(pred: list[int], gold: list[int], num_labels: int) -> float:
    """Unweighted mean over classes of F1 (a class absent from both gold and pred scores 0)."""
    scores = []
    for c in range(num_labels):
        tp = sum(1 for p, g in zip(pred, gold) if p == c and g == c)
        fp = sum(1 for p, g in zip(pred, gold) if p == c and g != c)
        fn = sum(1 for p, g in zip(pred, gold) if p != c and g == c)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / num_labels if num_labels else 0.0


@torch.no_grad()
def classification_metrics(
    model: PreTrainedModel, examples: list[dict[str, Any]], collate: Any, batch: int, device: str, bf16: bool
) -> dict[str, float]:
    preds: list[int] = []
    gold: list[int] = []
    loss_sum = 0.0
    for b in _batches(examples, batch, collate):
        b = {k: v.to(device) for k, v in b.items()}
        with _autocast(device, bf16):
            out = model(**b)
        loss_sum += float(out.loss) * len(b["labels"])
        preds += out.logits.argmax(-1).tolist()
        gold += b["labels"].tolist()
    n = len(gold)
    acc = sum(p == g for p, g in zip(preds, gold)) / n
    num_labels = model.config.num_labels
    assert num_labels is not None  # a classification model's config has id2label
    return {"accuracy": acc, "f1_macro": f1_macro(preds, gold, num_labels), "loss": loss_sum / n,
            **prediction_spread(preds)}


def prediction_spread(preds: list[int]) -> dict[str, float]:
    """How many distinct classes were predicted and the largest share one class got: a model
    that predicts one class (``predicted_classes`` 1) is a constant, whatever its accuracy."""
    counts = Counter(preds)
    return {"predicted_classes": float(len(counts)), "top_class_fraction": max(counts.values()) / len(preds)}


@torch.no_grad()
def lm_metrics(
    model: PreTrainedModel, examples: list[dict[str, Any]], collate: Any, batch: int, device: str, bf16: bool
) -> dict[str, float]:
    """Token-weighted mean next-token loss over all blocks; perplexity = exp(loss)."""
    loss_sum, tokens = 0.0, 0
    for b in _batches(examples, batch, collate):
        b = {k: v.to(device) for k, v in b.items()}
        with _autocast(device, bf16):
            out = model(**b)
        n = int((b["labels"][:, 1:] != -100).sum())
        loss_sum += float(out.loss) * n
        tokens += n
    loss = loss_sum / max(tokens, 1)
    return {"perplexity": math.exp(min(loss, 50.0)), "loss": loss}


@torch.no_grad()
def translation_metrics(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    examples: list[dict[str, Any]],
    references: list[str],
    collate: Any,
    batch: int,
    device: str,
    bf16: bool,
    max_new_tokens: int,
    num_beams: int,
) -> dict[str, float]:
    """Teacher-forced loss, then greedy/beam generation scored with sacrebleu's corpus BLEU."""
    import sacrebleu

    loss_sum, count = 0.0, 0
    hyps: list[str] = []
    for b in _batches(examples, batch, collate):
        b = {k: v.to(device) for k, v in b.items()}
        with _autocast(device, bf16):
            out = model(**b)
            # a seq2seq model class mixes GenerationMixin in (PreTrainedModel itself does not)
            gen = cast(GenerationMixin, model).generate(
                input_ids=b["input_ids"],
                attention_mask=b["attention_mask"],
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                do_sample=False,
            )
        n = int((b["labels"] != -100).sum())
        loss_sum += float(out.loss) * n
        count += n
        hyps += [h.strip() for h in tok.batch_decode(gen, skip_special_tokens=True)]
    bleu = sacrebleu.corpus_bleu(hyps, [references]).score
    return {"bleu": bleu, "loss": loss_sum / max(count, 1)}
