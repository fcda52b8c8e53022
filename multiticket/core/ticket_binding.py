"""A ticket bound to a model in training: the one mechanism behind every ticket callback.

The public callbacks (``multiticket.sb3.TicketCallback`` for ``model.learn``,
``multiticket.hf.TicketCallback`` for the HF ``Trainer``) and the built-in adapters' own training
all keep a mask through a :class:`TicketBinding`, so a ticket trained in a user's script is held
to exactly the rules of one trained by ``multiticket run``:

1. at the start of training, the ticket's start weights (the rewind point θ_k, as
   ``Ticket.apply`` loads them) go into the model, by value;
2. a :class:`~multiticket.core.enforce.MaskEnforcer` zeroes the pruned entries and keeps them
   exactly 0 through every optimizer step (pruned gradients zeroed as backward writes them, so
   before any clipping, accumulation or loss scaling reads them);
3. target networks (SB3's DQN, SAC, TD3) become copies of their masked online networks and their
   pruned entries are zeroed too; Polyak and hard target updates mix two zeros, so they stay 0.

The built-in adapters bind the enforcer the core already attached (it restored optimizer state
from the rewind point first: binding it again must not zero anything the core did not) and load
no weights (the core did). The core knows no training library: the callbacks, in the adapters,
say *when* (training start, a lazily created optimizer) and *what* (module, optimizers, targets).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from multiticket.core.enforce import GradMasking, MaskEnforcer
from multiticket.core.mask import Mask
from multiticket.errors import UserError

#: (online, target) module pairs: the target follows the online network (Polyak or hard updates)
TargetPairs = Sequence[tuple[nn.Module, nn.Module]]


class TicketSource(Protocol):
    """What a callback needs of a ticket: ``multiticket.load_run(path).ticket(...)`` has both."""

    @property
    def mask(self) -> Mapping[str, torch.Tensor]: ...

    @property
    def start(self) -> Mapping[str, torch.Tensor] | None: ...


@dataclass(frozen=True)
class TicketSpec:
    """A mask (parameter name -> bool, True = kept) and the weights training starts from (a
    state dict of the pruned module; None keeps the model's own weights)."""

    mask: Mask
    start: Mapping[str, torch.Tensor] | None = None


def ticket_spec(ticket: TicketSource | Mapping[str, torch.Tensor], start: Mapping[str, torch.Tensor] | None = None
                ) -> TicketSpec:
    """A :class:`TicketSpec` from a ticket (its mask and start weights) or a plain mask; ``start``,
    when given, replaces the ticket's start weights (θ_0 instead of θ_k, say)."""
    if isinstance(ticket, Mapping):
        mask, own = ticket, None
    elif hasattr(ticket, "mask") and hasattr(ticket, "start"):
        mask, own = ticket.mask, ticket.start
    else:
        raise UserError(f"TicketCallback: expected a ticket (run.ticket(...)) or a mask (name -> bool tensor), "
                        f"got {type(ticket).__name__}")
    try:
        checked = mask if isinstance(mask, Mask) else Mask(mask)
    except (TypeError, ValueError) as exc:
        raise UserError(f"TicketCallback: not a mask: {exc}") from None
    return TicketSpec(checked, start if start is not None else own)


def fit_problem(model: Mapping[str, tuple[int, ...]], given: Mapping[str, tuple[int, ...]], missing: bool = True,
                most: int = 5) -> str | None:
    """Why ``given`` tensors (name -> shape) do not fit ``model``'s: names the model lacks, names it
    has that ``given`` lacks (with ``missing``), other shapes; None when they fit."""
    def names(found: list[str]) -> str:
        return ", ".join(found[:most]) + (f" (+{len(found) - most} more)" if len(found) > most else "")

    absent = [n for n in model if n not in given] if missing else []
    unexpected = [n for n in given if n not in model]
    shaped = [f"{n} (model {list(model[n])}, ticket {list(given[n])})" for n in given if n in model and model[n] != given[n]]
    parts = [f"{what}: {names(found)}" for what, found in
             (("missing in the ticket", absent), ("not in the model", unexpected), ("mis-shaped", shaped)) if found]
    return "; ".join(parts) or None


@torch.no_grad()
def load_start(module: nn.Module, start: Mapping[str, torch.Tensor]) -> None:
    """Copy ``start`` into ``module`` in place (optimizers keep pointing at the same tensors)."""
    own = {n: tuple(t.shape) for n, t in module.state_dict().items()}
    problem = fit_problem(own, {n: tuple(t.shape) for n, t in start.items()})
    if problem:
        raise UserError(f"TicketCallback: the model does not match the ticket's start weights: {problem}")
    module.load_state_dict(dict(start), strict=True)


@torch.no_grad()
def hard_copy(online: nn.Module, target: nn.Module) -> None:
    """Every parameter and buffer of ``online`` into ``target``, in place (no new tensors)."""
    for dst, src in zip(target.state_dict().values(), online.state_dict().values(), strict=True):
        dst.copy_(src)


def target_masks(module: nn.Module, mask: Mapping[str, torch.Tensor], pairs: TargetPairs
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(target parameter, its mask) for every masked online parameter of ``pairs``: the mask of
    ``module``'s parameter (found by identity) at the same name inside the target."""
    by_id = {id(p): mask[n] for n, p in module.named_parameters() if n in mask}
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    for online, target in pairs:
        inside = dict(target.named_parameters())
        for name, p in online.named_parameters():
            m = by_id.get(id(p))
            if m is not None and name in inside and inside[name].shape == m.shape:
                out.append((inside[name], m.to(device=inside[name].device, dtype=inside[name].dtype)))
    return out


class TicketBinding:
    """A ticket held on a model across training starts (see the module doc). Either from a
    :class:`TicketSpec` (its own enforcer, created at the first :meth:`begin`, detached at
    :meth:`end`) or around an ``enforcer`` someone else attached and will detach (the core's).
    ``copy_targets``: whether the first :meth:`begin` copies online networks into their targets
    (None: when that training is fresh, as the start weights load)."""

    def __init__(self, spec: TicketSpec | None = None, *, enforcer: MaskEnforcer | None = None,
                 strict: bool = False, grads: GradMasking = "hook", copy_targets: bool | None = None) -> None:
        if spec is not None and enforcer is not None:
            raise ValueError("TicketBinding: a spec or an enforcer, not both")
        self.spec, self.enforcer = spec, enforcer
        self.strict, self.grads, self.copy_targets = strict, grads, copy_targets
        self._owned = spec is not None
        self._started = False
        self._targets: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def mask(self) -> Mask | None:
        """The mask held (None: a dense binding, which only copies target networks)."""
        if self.spec is not None:
            return self.spec.mask
        return self.enforcer.mask if self.enforcer is not None else None

    def begin(self, module: nn.Module, optimizers: Iterable[torch.optim.Optimizer] = (), targets: TargetPairs = (),
              fresh: bool = True) -> None:
        """Training starts: start weights and target copies (the first time only, and only when
        training is ``fresh``, from step 0: a resumed one has its weights), mask, optimizers."""
        first = not self._started
        self._started = True
        if first and fresh and self.spec is not None and self.spec.start is not None:
            load_start(module, self.spec.start)
        if self._owned:
            self._attach_own(module, optimizers)
        else:
            for opt in optimizers:
                self.add_optimizer(opt)
        if first and (fresh if self.copy_targets is None else self.copy_targets):
            for online, target in targets:
                hard_copy(online, target)
        mask = self.mask
        self._targets = target_masks(module, mask, targets) if mask is not None else []
        self.zero_targets()

    def _attach_own(self, module: nn.Module, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        assert self.spec is not None
        if self.enforcer is None:
            params = {n: tuple(p.shape) for n, p in module.named_parameters()}
            problem = fit_problem(params, {n: tuple(m.shape) for n, m in self.spec.mask.items()}, missing=False)
            if problem:
                raise UserError(f"TicketCallback: the model does not match the ticket's mask: {problem}")
            self.enforcer = MaskEnforcer(module, self.spec.mask, strict=self.strict, grads=self.grads)
        self.enforcer.attach(optimizers)

    def add_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """One more optimizer (created after training began); idempotent."""
        if self.enforcer is not None:
            self.enforcer.add_optimizer(optimizer)

    @torch.no_grad()
    def zero_targets(self) -> None:
        """Zero the pruned entries of the target networks (a no-op on targets already exact)."""
        if self._targets:
            torch._foreach_mul_([t for t, _ in self._targets], [m for _, m in self._targets])

    def end(self) -> None:
        """Training ended: detach an enforcer of this binding's own (weights stay as they are)."""
        if self._owned and self.enforcer is not None:
            self.enforcer.detach()
