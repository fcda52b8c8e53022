"""Domain adapters, imported lazily so the core runs without SB3 or transformers installed."""

from __future__ import annotations

import importlib

from multiticket.adapters.base import DomainAdapter, TrainHooks
from multiticket.errors import UserError

#: domain key of a task file -> "module:class" of its adapter, and the pip extra it needs
ADAPTERS: dict[str, tuple[str, str]] = {
    "toy": ("multiticket.adapters.toy:ToyAdapter", ""),
    "rl": ("multiticket.adapters.sb3:SB3Adapter", "rl"),
    "nlp": ("multiticket.adapters.hf:HFAdapter", "nlp"),
    "torch": ("multiticket.adapters.torch:TorchAdapter", ""),
}


def adapter_class(domain: str) -> type[DomainAdapter]:
    """The adapter class of a domain; a missing optional dependency is a user error."""
    target, extra = ADAPTERS[domain]
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("multiticket"):
            raise
        hint = f" (pip install 'multiticket[{extra}]')" if extra else ""
        raise UserError(f"domain: '{domain}' needs the package '{exc.name}'{hint}") from exc
    return getattr(module, cls_name)


__all__ = ["ADAPTERS", "DomainAdapter", "TrainHooks", "adapter_class"]
