"""The model as a data- or gradient-reading criterion sees it: :class:`ModelProbe`.

SNIP and GraSP need the loss gradient (and a Hessian-gradient product) at the weights they
score, SynFlow the gradient of a data-free objective. The core computes them itself, over the
adapter's :attr:`~multiticket.core.adapter.DomainAdapter.module`, from three optional adapter
methods: ``scoring_batches(seed, n)`` (a small deterministic list of batches), ``scoring_loss(batch)``
(the scalar loss, differentiable in the parameters) and ``scoring_ones_output()`` (the output on
one all-ones input). The weights to score are loaded into the module for the call (every named
entry of the given state dict, then the scope multiplied by the mask), the module is put in eval
mode (no dropout: the scores are a function of the weights and the batches), and everything is
put back afterwards, so scoring never changes what the adapter trains next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from multiticket.core.adapter import DomainAdapter
from multiticket.core.criteria.base import Criterion, Weights
from multiticket.core.seeding import derive_seed
from multiticket.errors import UserError

#: how many scoring batches a criterion reads (SNIP's "a single minibatch"; GraSP's few samples
#: per class fit one batch of the adapter's size)
SCORING_BATCHES = 1


class ModelProbe:
    """Gradients of a module's objectives at given weights ⊙ mask (:class:`~multiticket.core.criteria.base.Probe`).
    ``loss(batch)``, ``batches()`` and ``ones_output()`` may be None where no criterion reads them."""

    def __init__(self, module: nn.Module, loss: Callable[[Any], torch.Tensor] | None = None,
                 batches: Callable[[], list[Any]] | None = None,
                 ones_output: Callable[[], torch.Tensor] | None = None) -> None:
        self.module = module
        self.loss = loss
        self._batches = batches
        self.ones_output = ones_output
        self._cached: list[Any] | None = None

    def batches(self) -> list[Any]:
        if self._batches is None:
            raise UserError("this probe has no scoring batches")
        if self._cached is None:
            self._cached = list(self._batches())
        return self._cached

    @contextmanager
    def at(self, weights: Weights, mask: Mapping[str, torch.Tensor], absolute: bool = False
           ) -> Iterator[dict[str, nn.Parameter]]:
        """The module holding ``weights`` (|θ| for every parameter when ``absolute``) with the
        masked parameters multiplied by ``mask``, in eval mode; restored on exit. Yields the
        masked parameters by name."""
        params = dict(self.module.named_parameters())
        tensors = {**dict(self.module.named_buffers()), **params}
        saved = {n: t.detach().clone() for n, t in tensors.items()}
        training = self.module.training
        with torch.no_grad():
            for n, t in tensors.items():
                if n in weights:
                    t.copy_(weights[n])
                if absolute and t.is_floating_point():  # as the reference code: the whole state dict
                    t.abs_()
            for n in mask:
                params[n].mul_(mask[n].to(params[n].device, params[n].dtype))
        self.module.eval()
        try:
            yield {n: params[n] for n in mask}
        finally:
            with torch.no_grad():
                for n, t in tensors.items():
                    t.copy_(saved[n])
            self.module.train(training)

    def loss_gradient(self, weights: Weights, mask: Mapping[str, torch.Tensor],
                      batches: list[Any]) -> dict[str, torch.Tensor]:
        """g = mean over ``batches`` of dL/dθ at θ = weights ⊙ mask."""
        assert self.loss is not None, "no scoring loss"
        with self.at(weights, mask) as params:
            total = _zeros(params)
            for batch in batches:
                _add(total, params, torch.autograd.grad(self.loss(batch), list(params.values()), allow_unused=True))
        return _mean(total, len(batches))

    def hessian_gradient(self, weights: Weights, mask: Mapping[str, torch.Tensor], batches: list[Any],
                         vector: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """H v = d/dθ (dL/dθ · v), v held fixed (double backpropagation, GraSP's Hg), mean over batches."""
        assert self.loss is not None, "no scoring loss"
        with self.at(weights, mask) as params:
            total = _zeros(params)
            plist = list(params.values())
            for batch in batches:
                grads = torch.autograd.grad(self.loss(batch), plist, create_graph=True, allow_unused=True)
                z = sum((g * vector[n].to(g.device, g.dtype)).sum()
                        for n, g in zip(params, grads) if g is not None)
                if isinstance(z, torch.Tensor) and z.requires_grad:
                    _add(total, params, torch.autograd.grad(z, plist, allow_unused=True))
        return _mean(total, len(batches))

    def ones_gradient(self, weights: Weights, mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """dR/d|θ| with R = 1ᵀ f_|θ|(1): the summed output on one all-ones input, every parameter
        replaced by its absolute value (Tanaka et al. 2020's synaptic flow)."""
        assert self.ones_output is not None, "no all-ones output"
        with self.at(weights, mask, absolute=True) as params:
            grads = torch.autograd.grad(self.ones_output().sum(), list(params.values()), allow_unused=True)
            total = _zeros(params)
            _add(total, params, grads)
        return _mean(total, 1)


def _zeros(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: torch.zeros(p.shape, dtype=torch.float64) for n, p in params.items()}


def _add(total: dict[str, torch.Tensor], params: Mapping[str, torch.Tensor],
         grads: tuple[torch.Tensor | None, ...]) -> None:
    for n, g in zip(params, grads):
        if g is not None:
            total[n] += g.detach().to("cpu", torch.float64)


def _mean(total: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    return {k: v / max(n, 1) for k, v in total.items()}


def _overrides(adapter: DomainAdapter, method: str) -> bool:
    return getattr(type(adapter), method) is not getattr(DomainAdapter, method)


def check_scoring(adapter: DomainAdapter, criterion: Criterion) -> None:
    """A one-line UserError when ``adapter``'s domain lacks what ``criterion`` reads."""
    domain = type(adapter).domain
    if criterion.needs_batches and not (_overrides(adapter, "scoring_batches") and _overrides(adapter, "scoring_loss")):
        raise UserError(f"domain '{domain}' gives no scoring batches: criterion '{criterion.name}' needs them "
                        "(DomainAdapter.scoring_batches and scoring_loss)")
    if criterion.needs_ones and not _overrides(adapter, "scoring_ones_output"):
        raise UserError(f"domain '{domain}' gives no all-ones forward: criterion '{criterion.name}' needs it "
                        "(DomainAdapter.scoring_ones_output)")


def adapter_probe(adapter: DomainAdapter, seed: int, criterion: Criterion) -> ModelProbe | None:
    """The probe a criterion reads in a unit of ``seed`` (None for a criterion that reads none):
    the same scoring batches for every unit of the seed (``derive_seed(seed, "scoring")``)."""
    if not criterion.needs_model:
        return None
    check_scoring(adapter, criterion)
    scoring_seed = derive_seed(seed, "scoring")
    return ModelProbe(adapter.module, adapter.scoring_loss,
                      lambda: adapter.scoring_batches(scoring_seed, SCORING_BATCHES), adapter.scoring_ones_output)
