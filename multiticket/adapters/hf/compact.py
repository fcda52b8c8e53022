"""Attention heads and feed-forward neurons of BERT-like encoders: found for ``prune.structure:
heads``, and removed for ``multiticket export --compact``.

**Units** (:func:`units`). Found by module layout, not by names: an attention block with
``self.query/key/value`` Linear layers and ``output.dense`` gives a family of
``num_attention_heads`` heads (rows of query, key and value and their biases, ``head size`` wide;
the matching input columns of ``output.dense``), a layer with ``intermediate.dense`` and
``output.dense`` a family of ``intermediate_size`` FFN neurons (a row of ``intermediate.dense``
and its bias, a column of ``output.dense``). BERT, MiniLM, RoBERTa, ELECTRA have both; GPT-2
(fused ``c_attn``), Marian and the LSTM have none (the structure is refused in one line).

**Compact export** (:func:`export_folder`; the LSTM LM's hidden units: :mod:`.lstm_compact`). A
removed unit's consumer columns are pruned too, so it adds exactly nothing to the residual stream:
cutting it out changes no output beyond float reassociation (no bias folding is needed, biases in
the scope or not). What plain ``transformers`` (>= 5, which
this project needs) can rebuild from a config decides what goes:

- *FFN neurons*: ``BertConfig`` has one ``intermediate_size`` for every layer. The export sets it to
  the widest layer's live count and keeps, in each narrower layer, that many neurons: its live ones,
  then pruned ones (lowest index first) whose ``output.dense`` columns are zero, so they add
  exactly 0. Under ``prune.allocator: layerwise`` every layer keeps the same count and every pruned
  neuron goes; under a global ranking the saving is the widest layer's.
- *Heads* stay in the folder as exact zeros: transformers 5 dropped ``prune_heads`` and
  ``config.pruned_heads``, and ``num_attention_heads`` also fixes the head size (``hidden_size /
  num_attention_heads``), so no config of the plain classes holds fewer heads of the same size. The
  summary counts them (``dead_heads``).

The folder is checked before it is kept: reloaded by ``from_pretrained`` and run on a probe batch,
its logits must be within :data:`TOLERANCE` of the masked model's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from multiticket.core.structure_units import Family, Member
from multiticket.errors import UserError

#: largest difference between the masked and the exported model's logits that counts as equal
TOLERANCE = 1e-5


def _linear(module: nn.Module, path: str) -> nn.Linear | None:
    """The Linear layer at dotted ``path`` below ``module`` (None if absent or no Linear)."""
    for part in path.split("."):
        module = getattr(module, part, None)  # type: ignore[assignment]
        if module is None:
            return None
    return module if isinstance(module, nn.Linear) else None


def _members(prefix: str, parts: list[tuple[str, int]], width: int, module: nn.Module) -> tuple[Member, ...]:
    """Members ``prefix.part.weight`` (and ``.bias`` where the layer has one) along each part's dim."""
    out = []
    for part, dim in parts:
        layer = _linear(module, part)
        assert layer is not None
        out.append(Member(f"{prefix}{part}.weight", dim, width))
        if dim == 0 and layer.bias is not None:
            out.append(Member(f"{prefix}{part}.bias", 0, width))
    return tuple(out)


def units(model: nn.Module) -> list[Family]:
    """Every attention block's heads, then every layer's FFN neurons, of ``model`` in module order."""
    heads: list[Family] = []
    ffn: list[Family] = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        count = getattr(getattr(module, "self", None), "num_attention_heads", None)
        if isinstance(count, int) and all(_linear(module, p) for p in ("self.query", "self.key", "self.value",
                                                                        "output.dense")):
            width = int(getattr(module.get_submodule("self"), "attention_head_size", 0))
            parts = [("self.query", 0), ("self.key", 0), ("self.value", 0), ("output.dense", 1)]
            heads.append(Family("head", count, _members(prefix, parts, width, module)))
        inner = _linear(module, "intermediate.dense")
        if inner is not None and _linear(module, "output.dense") is not None:
            parts = [("intermediate.dense", 0), ("output.dense", 1)]
            ffn.append(Family("ffn", inner.out_features, _members(prefix, parts, 1, module)))
    return heads + ffn


def _dead_columns(layer: nn.Linear) -> torch.Tensor:
    """Which inputs of ``layer`` it ignores: all-zero weight columns (a removed unit's)."""
    return (layer.weight.detach() == 0).all(0).cpu()


def _narrow(inner: nn.Linear, outer: nn.Linear, keep: torch.Tensor) -> tuple[nn.Linear, nn.Linear]:
    """``inner`` with only the rows ``keep`` and ``outer`` with only those input columns."""
    idx = keep.nonzero().squeeze(1).to(inner.weight.device)
    new_in = nn.Linear(inner.in_features, idx.numel(), bias=inner.bias is not None).to(inner.weight)
    new_out = nn.Linear(idx.numel(), outer.out_features, bias=outer.bias is not None).to(outer.weight)
    with torch.no_grad():
        new_in.weight.copy_(inner.weight[idx])
        if inner.bias is not None:
            new_in.bias.copy_(inner.bias[idx])
        new_out.weight.copy_(outer.weight[:, idx])
        if outer.bias is not None:
            new_out.bias.copy_(outer.bias)
    return new_in, new_out


def _ffn_layers(model: nn.Module) -> list[nn.Module]:
    return [m for _, m in model.named_modules()
            if _linear(m, "intermediate.dense") is not None and _linear(m, "output.dense") is not None]


def narrow_ffn(model: PreTrainedModel) -> dict[str, Any]:
    """Remove the FFN neurons whose ``output.dense`` columns are zero, down to one width for every
    layer (the widest layer's live count; see the module docstring); sets ``intermediate_size``."""
    layers = _ffn_layers(model)
    if not layers:
        raise UserError("export --compact: the model has no BERT-like feed-forward layers to narrow")
    dead = [_dead_columns(_linear(m, "output.dense")) for m in layers]  # type: ignore[arg-type]
    width = max(1, max(int((~d).sum()) for d in dead))
    removed = 0
    for m, d in zip(layers, dead):
        keep = ~d
        pad = d.nonzero().squeeze(1)[:width - int(keep.sum())]
        keep[pad] = True
        removed += int((~keep).sum())
        inner, outer = _linear(m, "intermediate.dense"), _linear(m, "output.dense")
        assert inner is not None and outer is not None
        m.get_submodule("intermediate").dense, m.get_submodule("output").dense = _narrow(inner, outer, keep)
    model.config.intermediate_size = width
    return {"intermediate_size": width, "neurons_removed": removed,
            "dead_neurons_kept": sum(int(d.sum()) for d in dead) - removed}


def dead_heads(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> int:
    """Heads whose query, key, value rows and output columns the mask prunes whole."""
    count = 0
    for fam in units(model):
        members = [m for m in fam.members if m.name in mask]
        if fam.kind != "head" or not members:
            continue
        live = torch.zeros(fam.count, dtype=torch.bool)
        for m in members:
            t = mask[m.name].movedim(m.dim, 0).reshape(mask[m.name].shape[m.dim], -1)[:fam.count * m.width]
            live |= t.reshape(fam.count, -1).any(1).cpu()
        count += int((~live).sum())
    return count


def probe_inputs(model: PreTrainedModel, n: int = 4, length: int = 16) -> dict[str, torch.Tensor]:
    """A fixed batch of token ids with some padding: what the masked and the exported model answer."""
    gen = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    length = min(length, int(getattr(model.config, "max_position_embeddings", length)))
    ids = torch.randint(0, vocab, (n, length), generator=gen)
    attention = torch.ones(n, length, dtype=torch.long)
    attention[1:, length // 2:] = 0
    return {"input_ids": ids, "attention_mask": attention}


def logits(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(**{k: v.to(device) for k, v in inputs.items()}).logits.detach().float().cpu()


def export_folder(model: PreTrainedModel, tokenizer: Any, mask: Mapping[str, torch.Tensor], path: Path,
                  compact_it: bool, auto: Any = AutoModelForSequenceClassification) -> dict[str, Any]:
    """Write ``model`` (the masked ticket) and ``tokenizer`` to the folder ``path`` atomically;
    ``compact_it``: its removable FFN neurons cut out first, and the folder, reloaded, checked
    against the masked model's logits (see the module docstring). Returns the summary
    ``multiticket export`` prints."""
    path = Path(path)
    if path.exists():
        raise UserError(f"--out: {path} exists; name a new folder to write")
    dense = sum(p.numel() for p in model.parameters())
    summary: dict[str, Any] = {"dense_parameters": dense, "parameters": dense}
    checked = None
    if compact_it:
        inputs = probe_inputs(model)
        checked = (inputs, logits(model, inputs))
        model, narrowed = _compact_model(model, mask)
        summary.update(narrowed)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if checked is not None:
            summary.update(_check(auto, tmp, checked[1], checked[0]))
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"path": str(path), **summary}


def _compact_model(model: PreTrainedModel, mask: Mapping[str, torch.Tensor]) -> tuple[PreTrainedModel, dict[str, Any]]:
    """The compact model and its summary: the LSTM LM's removed hidden units cut out
    (:mod:`.lstm_compact`), else a BERT-like encoder's FFN neurons (its dead heads counted)."""
    from multiticket.adapters.hf.lstm_compact import narrow as narrow_lstm
    from multiticket.adapters.hf.lstm_compact import units as lstm_units

    if lstm_units(model):
        return narrow_lstm(model, mask)  # type: ignore[arg-type]
    summary = {**narrow_ffn(model), "dead_heads": dead_heads(model, mask)}
    summary["net_arch"] = {"intermediate_size": int(model.config.intermediate_size),
                           "num_attention_heads": int(model.config.num_attention_heads)}
    return model, summary


def _check(auto: Any, folder: Path, before: torch.Tensor, inputs: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Reload ``folder`` as plain transformers does (``auto``: the task's Auto class) and compare
    its logits with ``before``."""
    loaded = auto.from_pretrained(str(folder))
    after = logits(loaded, inputs)
    diff = float((after - before).abs().max()) if after.shape == before.shape else float("inf")
    if not diff <= TOLERANCE:
        raise RuntimeError(f"export: the written model's logits differ from the ticket's by {diff:.3g}")
    return {"parameters": sum(p.numel() for p in loaded.parameters()), "max_abs_diff": diff}
