"""Tickets in one's own Hugging Face ``Trainer`` scripts: ``Trainer(..., callbacks=[TicketCallback(ticket)])``.

``ticket`` is ``multiticket.load_run(path).ticket(seed=..., level=...)`` (its mask and the weights
its unit started from, the rewind point θ_k), or a plain mask (parameter name of the model ->
bool tensor) with optional ``start`` weights. At ``on_train_begin`` the callback loads the start
weights into the Trainer's model, and it keeps every pruned entry exactly 0 through every
optimizer step (gradient accumulation, mixed precision, gradient clipping and LR schedules
included). ``multiticket run`` trains its own NLP units through this same callback. See
docs/usage.md, "Tickets in your own scripts".
"""

from __future__ import annotations

try:
    from multiticket.adapters.hf.callback import TicketCallback
except ModuleNotFoundError as exc:  # the nlp extra is not installed
    raise ModuleNotFoundError(f"multiticket.hf needs '{exc.name}': pip install 'multiticket[nlp]'",
                              name=exc.name) from exc

__all__ = ["TicketCallback"]
