"""``TicketCallback``: a ticket trained by a user's own Hugging Face ``Trainer(callbacks=[...])``.

At ``on_train_begin`` (the Trainer has built or received its optimizer, before any update) it
loads the ticket's start weights into the Trainer's model, attaches the mask to the model and the
optimizer, and keeps every pruned entry exactly 0 through every optimizer step: pruned gradients
are zeroed as backward writes them, so gradient accumulation, mixed precision's loss scaling and
``max_grad_norm`` clipping only ever see live weights (the clip norm is the ticket's own), and an
optimizer the Trainer creates later is attached before its first step (``on_pre_optimizer_step``).
The mechanism is :class:`multiticket.core.ticket_binding.TicketBinding`, the one the HF adapter
trains its own units through. Public as ``multiticket.hf.TicketCallback``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import TrainerCallback

from multiticket.core.ticket_binding import TicketBinding, TicketSource, ticket_spec


def unwrapped(optimizer: Any) -> torch.optim.Optimizer | None:
    """The torch optimizer inside ``accelerate``'s ``AcceleratedOptimizer`` (and similar wrappers
    that keep it as ``.optimizer``): hooks go on the optimizer that steps."""
    seen = 0
    while optimizer is not None and not _is_plain(optimizer) and seen < 8:
        optimizer, seen = getattr(optimizer, "optimizer", None), seen + 1
    return optimizer if isinstance(optimizer, torch.optim.Optimizer) else None


def _is_plain(optimizer: Any) -> bool:
    return isinstance(optimizer, torch.optim.Optimizer) and not isinstance(
        getattr(optimizer, "optimizer", None), torch.optim.Optimizer
    )


class TicketCallback(TrainerCallback):
    """Trains ``ticket`` (``multiticket.load_run(path).ticket(...)``, or a plain mask: parameter name
    of the model -> bool tensor, True = kept) in ``Trainer(..., callbacks=[TicketCallback(ticket)])``.

    ``start``: start weights (the model's state dict) replacing the ticket's; with a plain mask and
    no ``start`` the model keeps its own weights. Loaded at the first ``train()`` that starts from
    step 0 only (not one resumed from a checkpoint); a later ``train()`` continues under the mask. ``strict``: re-zero pruned weights after every step of
    every optimizer (see ``MaskEnforcer``). A binding made elsewhere is used as it is (the HF
    adapter's, around the core's enforcer)."""

    def __init__(self, ticket: TicketSource | Mapping[str, torch.Tensor] | TicketBinding,
                 start: Mapping[str, torch.Tensor] | None = None, *, strict: bool = False) -> None:
        self.binding = ticket if isinstance(ticket, TicketBinding) else \
            TicketBinding(ticket_spec(ticket, start), strict=strict)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        if model is None:
            raise RuntimeError("TicketCallback: the Trainer passed no model to on_train_begin")
        opt = unwrapped(optimizer)
        # resumed from a Trainer checkpoint (global_step > 0): its weights, not the start weights
        self.binding.begin(model, [opt] if opt is not None else [], fresh=state.global_step == 0)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                              **kwargs: Any) -> None:
        opt = unwrapped(optimizer)
        if opt is not None:
            self.binding.add_optimizer(opt)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.binding.end()
