"""The built-in domains, registered by name in :data:`multiticket.core.registry.domains`.

Each entry names its adapter class as ``"module:Class"``: the module (and SB3 or transformers with
it) is imported only when a task of that domain is validated or run. The adapter class declares
the task-file section of its domain (``Section``). Other packages add domains through the
``multiticket.adapters`` entry-point group. This module sits above the core and the adapters
(it names the adapters without importing them), so the config can validate ``domain`` without
importing any adapter.
"""

from __future__ import annotations

from typing import Any

from multiticket.core.registry import Lazy, domains

domains.register("toy", Lazy("multiticket.adapters.toy:ToyAdapter"))
domains.register("rl", Lazy("multiticket.adapters.sb3:SB3Adapter", extra="rl"))
domains.register("nlp", Lazy("multiticket.adapters.hf:HFAdapter", extra="nlp"))
domains.register("torch", Lazy("multiticket.adapters.torch:TorchAdapter"))


def adapter_class(domain: str) -> Any:
    """The adapter class of a registered domain (a UserError for an unknown one or a missing extra)."""
    return domains.lookup(domain)
