"""LSTM hidden units of the LSTM language model: found for ``prune.structure: units``, and removed
for ``multiticket export --compact``.

**Units** (:func:`units`). Unit ``j`` of layer ``l`` (hidden size ``H``) is its four gate rows
``j, H+j, 2H+j, 3H+j`` (input, forget, cell, output) of ``weight_ih_l{l}`` and ``weight_hh_l{l}``
and of both biases, its recurrent column ``j`` of ``weight_hh_l{l}``, and its column ``j`` of the
consumer: ``weight_ih_l{l+1}``, after the last layer the projection (``proj``) or, without one,
the decoder (``lm_head``, the embedding when tied). A removed unit's rows are zero, so its gates see
their biases only; whatever its state, its recurrent column and its consumer column are zero, so it
changes nothing else: the masked network equals the network without the unit, biases in the scope
or not. The last layer's consumer is *optional*: the decoder is outside the default scope, and then
the biases must be in it (``prune.biases: true``): a unit with zero weights and biases has
c = σ(0)·tanh(0) = 0 at every step and h = σ(0)·tanh(0) = 0, exactly.

**Compact export** (:func:`narrow`). ``nn.LSTM`` with ``num_layers > 1`` has one hidden size for
every layer, so, as for BERT's FFN, the export sets ``hidden_size`` to the widest layer's live count
and keeps, in each narrower layer, that many units: its live ones, then removed ones (lowest index
first), which are exact zeros in every weight that reads them. Under ``prune.allocator: layerwise``
every layer keeps the same count and every removed unit goes. The decoder side, with the
architecture :mod:`multiticket.adapters.hf.lstm` builds from a config:

- with a projection, its input columns of the removed units go (one more removed unit is kept if
  the width would equal ``embedding_size``, where the model would build no projection);
- a tied embedding whose columns of the removed units are zero (the decoder in the scope) narrows
  with the last layer (``embedding_size = hidden_size``);
- otherwise a projection that places the kept units at their old positions (ones and zeros, no
  bias) feeds the unchanged decoder: exact, since a removed unit's output or decoder column is 0.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from multiticket.adapters.hf.lstm import LSTMForCausalLM, LSTMLMConfig
from multiticket.core.structure_units import Family, Member, layout
from multiticket.errors import UserError


def _canonical(model: nn.Module) -> dict[int, str]:
    """Parameter id -> its ``named_parameters()`` name (a tied decoder is the embedding's)."""
    out: dict[int, str] = {}
    for name, p in model.named_parameters():
        out.setdefault(id(p), name)
    return out


def _decoder(model: LSTMForCausalLM) -> torch.Tensor:
    """What reads the last layer's output: the projection's weight, else the decoder's."""
    proj = model.lstm_model.proj
    return proj.weight if proj is not None else model.lm_head.weight


def units(model: nn.Module) -> list[Family]:
    """Each layer's hidden units of the LSTM LM (see the module docstring); none for other models."""
    if not isinstance(model, LSTMForCausalLM):
        return []
    lstm = model.lstm_model.lstm
    if lstm.bidirectional or lstm.proj_size:
        return []
    p, count, out = "lstm_model.lstm.", lstm.hidden_size, []
    names = _canonical(model)
    for layer in range(lstm.num_layers):
        members = [Member(f"{p}weight_ih_l{layer}", 0, 1, blocks=4), Member(f"{p}weight_hh_l{layer}", 0, 1, blocks=4)]
        if lstm.bias:
            members += [Member(f"{p}bias_ih_l{layer}", 0, 1, blocks=4), Member(f"{p}bias_hh_l{layer}", 0, 1, blocks=4)]
        members.append(Member(f"{p}weight_hh_l{layer}", 1, 1))
        if layer + 1 < lstm.num_layers:
            members.append(Member(f"{p}weight_ih_l{layer + 1}", 1, 1))
        else:
            members.append(Member(names[id(_decoder(model))], 1, 1, optional=True))
        out.append(Family("lstm", count, tuple(members)))
    return out


def live_units(model: LSTMForCausalLM, mask: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, which units the mask keeps: all of a layer whose units the mask's scope does not
    cover whole (an unstructured ticket's scope may not: then nothing is removed)."""
    lstm = model.lstm_model.lstm
    every = [torch.ones(lstm.hidden_size, dtype=torch.bool) for _ in range(lstm.num_layers)]
    shapes = {n: tuple(t.shape) for n, t in mask.items()}
    try:
        found = layout(units(model), list(mask), shapes, "units", "LSTM units")
    except UserError:
        return every
    by_key = {f"lstm_model.lstm.weight_ih_l{i}": i for i in range(lstm.num_layers)}
    for fam in found.families:
        every[by_key[fam.key]] = found.live_units(mask, fam)
    return every


def _kept(live: torch.Tensor, width: int) -> torch.Tensor:
    """Indices of the ``width`` units a layer keeps: its live ones, then removed ones, lowest first."""
    dead = (~live).nonzero().squeeze(1)
    keep = live.clone()
    keep[dead[:width - int(live.sum())]] = True
    return keep.nonzero().squeeze(1)


def _gates(idx: torch.Tensor, hidden: int) -> torch.Tensor:
    """The rows of the four gates of the units ``idx``."""
    return torch.cat([g * hidden + idx for g in range(4)])


def _width(model: LSTMForCausalLM, live: list[torch.Tensor]) -> int:
    """The one hidden size every layer narrows to (see the module docstring)."""
    hidden, embedding = model.config.hidden_size, model.config.embedding_size
    width = max(1, max(int(x.sum()) for x in live))
    if model.lstm_model.proj is not None and width == embedding:
        width += 1  # width < hidden here: hidden != embedding and width <= hidden
    return min(width, hidden)


def _decoder_side(model: LSTMForCausalLM, last: torch.Tensor, state: dict[str, torch.Tensor],
                  cfg: Any) -> torch.Tensor:
    """Narrow what reads the last layer (its kept units ``last``) in ``state`` and ``cfg``; returns
    the embedding dimensions layer 0 keeps reading (see the module docstring)."""
    embed = model.lstm_model.embed.weight.detach()
    every = torch.arange(embed.shape[1])
    if model.lstm_model.proj is not None:
        state["lstm_model.proj.weight"] = state["lstm_model.proj.weight"][:, last]
        return every
    dropped = torch.ones(embed.shape[1], dtype=torch.bool)
    dropped[last] = False
    if model.lm_head.weight is model.lstm_model.embed.weight and bool((embed[:, dropped] == 0).all()):
        for name in ("lstm_model.embed.weight", "lm_head.weight"):
            if name in state:
                state[name] = state[name][:, last]
        cfg.embedding_size = int(last.numel())
        return last
    select = torch.zeros(embed.shape[1], last.numel(), dtype=embed.dtype)
    select[last, torch.arange(last.numel())] = 1.0
    state["lstm_model.proj.weight"], state["lstm_model.proj.bias"] = select, torch.zeros(embed.shape[1], dtype=embed.dtype)
    return every


def narrow(model: LSTMForCausalLM, mask: Mapping[str, torch.Tensor]) -> tuple[LSTMForCausalLM, dict[str, Any]]:
    """The LSTM LM without its removed units, down to one width for every layer, as a new model of
    the same class (the input one when nothing goes), and what was removed, in numbers."""
    live = live_units(model, mask)
    hidden, layers = model.config.hidden_size, model.config.num_layers
    width = _width(model, live)
    dead = sum(int((~x).sum()) for x in live)
    if width == hidden:
        new, removed = model, 0
    else:
        keep = [_kept(x, width) for x in live]
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        cfg = copy.deepcopy(model.config)
        assert isinstance(cfg, LSTMLMConfig)
        cfg.hidden_size = width
        inputs = _decoder_side(model, keep[-1], state, cfg)
        p = "lstm_model.lstm."
        for layer in range(layers):
            rows = _gates(keep[layer], hidden)
            cols = inputs if layer == 0 else keep[layer - 1]
            state[f"{p}weight_ih_l{layer}"] = state[f"{p}weight_ih_l{layer}"][rows][:, cols]
            state[f"{p}weight_hh_l{layer}"] = state[f"{p}weight_hh_l{layer}"][rows][:, keep[layer]]
            for bias in (f"{p}bias_ih_l{layer}", f"{p}bias_hh_l{layer}"):
                if bias in state:
                    state[bias] = state[bias][rows]
        new = LSTMForCausalLM(cfg)
        new.load_state_dict(state, strict=True)
        nn.Module.to(new, next(model.parameters()).device)
        removed = layers * (hidden - width)
    net = {"hidden_size": int(new.config.hidden_size), "embedding_size": int(new.config.embedding_size),
           "num_layers": layers}
    return new, {"hidden_size": net["hidden_size"], "neurons_removed": removed, "dead_units_kept": dead - removed,
                 "net_arch": net}
