"""A word-level LSTM language model as a ``PreTrainedModel`` (Yu et al. 2019 pruned a 2-layer LSTM
LM on Wikitext-2 to ~90 % sparsity without a perplexity rise).

Written against the transformers API so the same ``Trainer`` path, ``save_pretrained`` /
``from_pretrained`` and the Auto classes (``AutoModelForCausalLM``) work for it as for GPT-2.
Prunable by default: the LSTM's ``weight_ih_l*`` / ``weight_hh_l*`` (the recurrent block).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutput


class LSTMLMConfig(PretrainedConfig):
    """Sizes of :class:`LSTMForCausalLM`; ``tie_word_embeddings`` shares input/output embeddings
    (Press & Wolf 2017), which needs ``embedding_size == hidden_size`` or a projection."""

    model_type = "multiticket_lstm"

    def __init__(
        self,
        vocab_size: int = 8000,
        embedding_size: int = 256,
        hidden_size: int = 256,
        num_layers: int = 2,
        dropout: float = 0.2,
        init_range: float = 0.1,
        tie_word_embeddings: bool = True,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.init_range = init_range
        # transformers 5 types PreTrainedConfig as a dataclass whose fields omit the token ids and
        # tie_word_embeddings; its real __init__ hands keywords that are no field to __post_init__
        super().__init__(  # type: ignore[call-arg]
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )


class LSTMPreTrainedModel(PreTrainedModel):
    config_class = LSTMLMConfig
    base_model_prefix = "lstm_model"
    main_input_name = "input_ids"

    def _init_weights(self, module: nn.Module) -> None:
        """Uniform init of Zaremba et al. / the PyTorch word_language_model example."""
        r = self.config.init_range
        if isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -r, r)
        elif isinstance(module, nn.Linear):
            init.uniform_(module.weight, -r, r)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):
            for name, p in module.named_parameters():
                if name.startswith("weight"):
                    init.uniform_(p, -r, r)
                else:
                    init.zeros_(p)


class LSTMModel(LSTMPreTrainedModel):
    """Embedding -> multi-layer LSTM (-> projection to the embedding size when they differ)."""

    def __init__(self, config: LSTMLMConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.embedding_size)
        self.drop = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            config.embedding_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.proj = (
            nn.Linear(config.hidden_size, config.embedding_size)
            if config.hidden_size != config.embedding_size
            else None
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    # narrower than PreTrainedModel's nn.Module: this model's input layer is an nn.Embedding
    # (resize_token_embeddings sets one)
    def set_input_embeddings(self, value: nn.Embedding) -> None:  # type: ignore[override]
        self.embed = value

    def forward(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """``inputs_embeds`` in place of ``embed(input_ids)``, as transformers' models take them
        (SynFlow's all-ones input: :meth:`multiticket.adapters.hf.HFAdapter.scoring_ones_output`)."""
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("LSTMModel needs input_ids or inputs_embeds")
            inputs_embeds = self.embed(input_ids)
        x = self.drop(inputs_embeds)
        out, _ = self.lstm(x)
        if self.proj is not None:
            out = self.proj(out)
        return self.drop(out)


class LSTMForCausalLM(LSTMPreTrainedModel):
    """Next-token prediction with the same (shifted) loss convention as GPT-2: ``labels`` are the
    ``input_ids``; positions labelled -100 are ignored."""

    _tied_weights_keys = {"lm_head.weight": "lstm_model.embed.weight"}

    def __init__(self, config: LSTMLMConfig) -> None:
        super().__init__(config)
        self.lstm_model = LSTMModel(config)
        self.lm_head = nn.Linear(config.embedding_size, config.vocab_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.lstm_model.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:  # type: ignore[override]  # as LSTMModel's
        self.lstm_model.embed = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> CausalLMOutput:
        """``attention_mask`` is accepted for collator compatibility; padded positions should be
        labelled -100 (the shipped LM data is packed into full blocks, so there are none).
        ``inputs_embeds`` replaces the embedded ``input_ids``, as in transformers' models."""
        logits = self.lm_head(self.lstm_model(input_ids, inputs_embeds))
        loss = None
        if labels is not None:
            shift_logits = logits[:, :-1, :].reshape(-1, logits.size(-1))
            shift_labels = labels[:, 1:].reshape(-1)
            loss = nn.functional.cross_entropy(shift_logits.float(), shift_labels, ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)


AutoConfig.register(LSTMLMConfig.model_type, LSTMLMConfig, exist_ok=True)
AutoModelForCausalLM.register(LSTMLMConfig, LSTMForCausalLM, exist_ok=True)
