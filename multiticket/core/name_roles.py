"""Layer roles read from parameter names, by the naming conventions of Hugging Face transformers and
torch RNNs: embeddings, attention query/key/value/output, feed-forward intermediate/output,
pooler, head, LSTM input-to-hidden / hidden-to-hidden.

A domain adapter declares it as its layer-role function (:attr:`DomainAdapter.layer_role
<multiticket.core.adapter.DomainAdapter.layer_role>`; the NLP adapter does), so any domain whose
models follow these names can. It lives in the core, not in an adapter, because the report of a
run recorded before roles were recorded (:func:`multiticket.core.legacy.legacy_layer_roles`)
needs it too, and the report imports no adapter.
"""

from __future__ import annotations

import re

# Name patterns, tried in this order (first match wins); matched against the lower-cased name
# split at '.' and '_' so that 'fc' matches 'mlp.fc1' but not 'bfc'.
_NAME_ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("embeddings", ("embeddings", "embedding", "embed", "embed_tokens", "wte", "wpe", "shared")),
    ("pooler", ("pooler",)),
    ("head", ("classifier", "lm_head", "score", "qa_outputs", "cls")),
    ("lstm", ("lstm", "rnn", "gru", "weight_ih", "weight_hh", "bias_ih", "bias_hh")),
    ("attention", ("attention", "attn", "self", "q", "k", "v", "o", "query", "key", "value",
                   "q_proj", "k_proj", "v_proj", "o_proj", "out_proj", "c_attn")),
    ("ffn", ("intermediate", "mlp", "fc", "fc1", "fc2", "ffn", "dense", "c_fc", "wi", "wo",
             "up_proj", "down_proj", "gate_proj")),
)
# The part of a family, from the name's tokens (first match wins). BERT's feed-forward output is
# 'layer.N.output.dense'; its attention output, 'attention.output.dense', matches attention first.
_PARTS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "attention": (
        ("qkv", ("c_attn", "qkv", "in_proj", "query_key_value", "wqkv")),
        ("query", ("query", "q", "q_proj", "q_lin")),
        ("key", ("key", "k", "k_proj", "k_lin")),
        ("value", ("value", "v", "v_proj", "v_lin")),
        ("output", ("output", "o", "o_proj", "out_proj", "out_lin", "c_proj", "dense")),
    ),
    "ffn": (
        ("intermediate", ("intermediate", "fc1", "c_fc", "wi", "up_proj", "gate_proj", "lin1", "fc_in",
                          "dense_h_to_4h")),
        ("output", ("output", "fc2", "c_proj", "wo", "down_proj", "lin2", "fc_out", "dense_4h_to_h")),
    ),
}


def _tokens(name: str) -> set[str]:
    """'bert.encoder.layer.0.attention.self.query.weight' -> {'bert', ..., 'query', 'weight'}.

    Digits are stripped from the end of a token as well ('fc1' also yields 'fc') so numbered
    layers match their family; adjacent tokens are joined too ('lm_head', 'q_proj').
    """
    parts = re.split(r"[._]", name.lower())
    return set(parts) | {p.rstrip("0123456789") for p in parts} | {"_".join(parts[i:i + 2]) for i in range(len(parts))}


def name_role(name: str) -> str | None:
    """The role a parameter name tells: the first pattern family that matches, refined to its part
    (``attention.query``, ``ffn.output``, ``lstm.hh``, ...) where the name tells it; or None."""
    tokens = _tokens(name)
    for role, patterns in _NAME_ROLES:
        if tokens & set(patterns):
            return _part(role, name, tokens)
    return None


def _part(family: str, name: str, tokens: set[str]) -> str:
    """``family`` refined by the name: torch RNN matrices end in weight_ih_l<k> / weight_hh_l<k>."""
    if family == "lstm":
        last = name.rsplit(".", 1)[-1]
        return "lstm.ih" if "_ih" in last else "lstm.hh" if "_hh" in last else "lstm"
    for part, patterns in _PARTS.get(family, ()):
        if tokens & set(patterns):
            return f"{family}.{part}"
    return family
