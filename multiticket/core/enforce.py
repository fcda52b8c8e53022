"""Keep pruned weights exactly zero inside any training loop, with parameter names untouched.

Three mechanisms, none of which wraps ``forward`` or renames a parameter (``torch.nn.utils.prune``'s
forward pre-hooks rename state-dict keys to ``weight_orig``/``weight_mask``, so ``PPO.load`` and HF
``from_pretrained`` no longer find the weights, and they cost about 1.17x wall time on PPO CartPole):

1. on attach, pruned entries are zeroed in place (and so are the matching entries of any
   optimizer state, e.g. Adam moments restored from a rewind point);
2. pruned gradient entries are zeroed before any optimizer uses them. By default
   (``grads="hook"``) a post-accumulate-grad hook on each masked parameter does it as soon as
   backward writes the gradient, so gradient clipping, grad-norm logging and adaptive moments
   only ever see live weights: right for loops the adapter does not own (SB3, the HF Trainer),
   which clip. ``grads="step"`` instead zeroes them in one fused ``torch._foreach_mul_`` in a
   step pre-hook of each hooked optimizer: one Python call per step instead of one per tensor,
   which is measurable on tiny networks (``scripts/bench_masking.py``), and exact only for loops
   that read no gradient between ``backward()`` and ``step()`` (the toy adapter's own loop);
3. a step post-hook on each optimizer re-zeroes the pruned entries of that optimizer's masked
   parameters with one fused ``torch._foreach_mul_`` after every step, so an optimizer whose
   update can move a weight with a zero gradient (Muon's orthogonalisation, a custom rule) can
   never revive them.

The third pass is skipped for the torch optimizers in :data:`ZERO_PRESERVING` (exact types, not
subclasses). Their update of an entry whose weight, gradient and state are all zero is exactly
zero: every term is a product with the gradient, a moment built from it, or the weight itself
(SGD momentum and weight decay, Adam/AdamW/RMSprop/Adagrad moments, decoupled decay), and
mechanisms 1 and 2 guarantee those zeros. On a small policy network that pass is a few percent
of a training step (``scripts/bench_masking.py``); ``strict=True`` keeps it for every optimizer,
and the IMP runner still checks the pruned entries after every level.

Saved weights therefore stay plain tensors with exact zeros; the mask travels as its own file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from multiticket.core.mask import Mask

#: where pruned gradient entries are zeroed: on every backward, or right before each step
GradMasking = Literal["hook", "step"]

#: optimizers (exact types) whose step keeps a weight with zero value, gradient and state at zero
ZERO_PRESERVING: frozenset[type[torch.optim.Optimizer]] = frozenset({
    torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad,
    torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adadelta, torch.optim.Rprop,
})


def needs_rezero(optimizer: torch.optim.Optimizer) -> bool:
    """Whether pruned weights must be re-zeroed after this optimizer's step (see the module doc)."""
    return type(optimizer) not in ZERO_PRESERVING


class MaskEnforcer:
    """Attach a :class:`Mask` to a module's parameters and to the optimizers that update them.

    ``strict`` re-zeroes pruned weights after every step of every optimizer, including the
    :data:`ZERO_PRESERVING` ones that cannot revive them. ``grads`` picks where pruned gradients
    are zeroed (see the module doc): ``"hook"`` (default, on every backward) or ``"step"``
    (right before each hooked optimizer's step; only for loops that read no gradient in between)."""

    def __init__(self, module: nn.Module, mask: Mask, strict: bool = False, grads: GradMasking = "hook") -> None:
        if grads not in ("hook", "step"):
            raise ValueError(f"grads: expected 'hook' or 'step', got {grads!r}")
        mask.validate_against(module)
        self.strict = strict
        self.grads = grads
        named = dict(module.named_parameters())
        self.mask = mask
        self._params: list[nn.Parameter] = [named[n] for n in mask]
        self._masks: list[torch.Tensor] = [
            mask[n].to(device=p.device, dtype=p.dtype) for n, p in zip(mask, self._params)
        ]
        self._by_param = {id(p): m for p, m in zip(self._params, self._masks)}
        self._handles: list[RemovableHandle] = []
        self._optimizers: list[int] = []
        self._grad_hooks_on = False
        self._attached = False

    @property
    def attached(self) -> bool:
        return self._attached

    @torch.no_grad()
    def zero_weights(self) -> None:
        if self._params:
            torch._foreach_mul_(self._params, self._masks)  # type: ignore[arg-type]  # stubs lack the tensor-list overload

    def attach(self, optimizers: Iterable[torch.optim.Optimizer] = ()) -> MaskEnforcer:
        """Zero pruned entries, hook gradients, and hook every given optimizer."""
        self.zero_weights()
        self._attached = True
        if self.grads == "hook" and not self._grad_hooks_on:
            for p, m in zip(self._params, self._masks):
                self._handles.append(p.register_post_accumulate_grad_hook(_grad_zeroer(m)))
            self._grad_hooks_on = True
        for opt in optimizers:
            self.add_optimizer(opt)
        return self

    def add_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Hook one more optimizer (e.g. one a Trainer creates lazily). Idempotent."""
        if id(optimizer) in self._optimizers:
            return
        self._optimizers.append(id(optimizer))
        params = [p for g in optimizer.param_groups for p in g["params"] if id(p) in self._by_param]
        if not params:
            return
        masks = [self._by_param[id(p)] for p in params]
        _zero_state(optimizer, params, masks)
        if self.grads == "step":
            self._handles.append(optimizer.register_step_pre_hook(_grads_zeroer(params, masks)))
        if not (self.strict or needs_rezero(optimizer)):
            return

        def rezero(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
            with torch.no_grad():
                torch._foreach_mul_(params, masks)

        self._handles.append(optimizer.register_step_post_hook(rezero))

    def detach(self) -> None:
        """Remove every hook; weights keep their (zeroed) values."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._optimizers.clear()
        self._grad_hooks_on = False
        self._attached = False

    def __enter__(self) -> MaskEnforcer:
        """``with enforcer.attach([optimizer]):`` or ``with enforcer:`` (attaches with no optimizer
        yet; add them with :meth:`add_optimizer`) keeps the mask exact in a loop; leaving detaches."""
        if not self._attached:
            self.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


def _grads_zeroer(params: list[nn.Parameter], masks: list[torch.Tensor]):  # noqa: ANN202 - torch hook
    def hook(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        grads = [p.grad for p in params]
        try:
            torch._foreach_mul_(grads, masks)  # type: ignore[arg-type]  # None grads: caught below
        except TypeError:  # a parameter this backward did not reach has no gradient
            pairs = [(g, m) for g, m in zip(grads, masks) if g is not None]
            if pairs:
                torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    return hook


def _grad_zeroer(mask: torch.Tensor):  # noqa: ANN202 - torch hook signature
    def hook(param: torch.Tensor) -> None:
        if param.grad is not None:
            param.grad.mul_(mask)

    return hook


@torch.no_grad()
def _zero_state(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
    """Zero the pruned entries of per-parameter optimizer state (momenta, moments)."""
    for p, m in zip(params, masks):
        for value in optimizer.state.get(p, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                value.mul_(m.to(value.dtype))
