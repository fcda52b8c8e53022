"""What a mask criterion is: a score per weight, computed from a context, ranked lowest-first.

Zhou et al. 2019 ("Deconstructing Lottery Tickets") compare mask criteria that keep the weights
with the highest score of the *initial* weights w_i and the *final* weights w_f. Here w_i is the
chain's rewind point (the weights at step k; step 0 for ``rewind_init``) and w_f the weights the
level prunes (the previous level's final weights; for pruning at initialization, the rewind point
itself). The pruning step (:func:`multiticket.core.prune.prune`) removes the live entries with the
lowest scores, as many as the counting rule and the budget allocator
(:mod:`multiticket.core.criteria.allocators`) say, ties broken by position; so a criterion only
scores, and every criterion keeps the exact count.

A criterion has one of two forms:

- *element-wise* (``Criterion(name, score, needs_init, doc)``, the original form, kept for
  plugins): ``score(w_i or None, w_f)`` over the 1-D vector of a ranking group's live entries in
  scope order (the group matters to rank-based scores such as ``large_init_large_final``);
- *context* (``Criterion(name, tensor_score=..., doc=...)``): ``tensor_score(ctx, names)`` returns a
  score tensor of each named parameter's shape from a :class:`ScoreContext`: the rewind and final
  weights, the current mask and, only for a criterion that asks (``needs_batches``,
  ``needs_gradients``, ``needs_ones``), the model's scoring batches and gradients (a :class:`Probe`
  built by the core from the domain adapter). Entries already pruned are never ranked, whatever
  their score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from multiticket.errors import UserError

#: ``(w_i or None, w_f) -> score``: 1-D float tensors of a group's live entries in scope order
Score = Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor]
#: ``(ctx, names) -> {name: score tensor of that parameter's shape}`` (the context form)
TensorScore = Callable[["ScoreContext", Sequence[str]], dict[str, torch.Tensor]]
Weights = Mapping[str, torch.Tensor]


class Probe(Protocol):
    """The model, as a data- or gradient-reading criterion sees it (:mod:`multiticket.core.criteria.probe`).
    Every method evaluates the module at ``weights`` (a state dict: the named entries replace the
    module's) with the scope's parameters multiplied by ``mask``, and leaves the module as it was."""

    def batches(self) -> list[Any]:
        """The adapter's scoring batches: a small list, the same on every call for one unit seed."""

    def loss_gradient(self, weights: Weights, mask: Mapping[str, torch.Tensor],
                      batches: list[Any]) -> dict[str, torch.Tensor]:
        """g = mean over ``batches`` of the loss gradient, per masked parameter."""

    def hessian_gradient(self, weights: Weights, mask: Mapping[str, torch.Tensor], batches: list[Any],
                         vector: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """H v (mean over ``batches``) by double backpropagation, per masked parameter."""

    def ones_gradient(self, weights: Weights, mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """dR/d|θ| with every parameter replaced by its absolute value and R the sum of the
        module's output on one all-ones input (SynFlow's data-free objective)."""


@dataclass
class ScoreContext:
    """What a context criterion reads. ``final``: the weights the step prunes (w_f); ``init``: the
    rewind point (w_i; None where the step has none); ``mask``: the current mask; ``probe``: the
    model (only for a criterion that asked, else None); ``cache``: results shared by the ranking
    groups of one pruning step (a gradient is computed once per step)."""

    final: Weights
    mask: Mapping[str, torch.Tensor]
    init: Weights | None = None
    probe: Probe | None = None
    criterion: str = ""
    cache: dict[str, Any] = field(default_factory=dict)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def model(self) -> Probe:
        """The probe, or a one-line UserError naming the criterion that needs it."""
        if self.probe is None:
            raise UserError(f"prune.criterion: '{self.criterion}' needs the model's scoring batches or gradients, "
                            "which this pruning step does not have")
        return self.probe

    def masked(self, name: str) -> torch.Tensor:
        """w_f of ``name`` with its pruned entries zero (the weights a data criterion scores)."""
        return self.final[name].detach().float().cpu() * self.mask[name].cpu()


@dataclass(frozen=True)
class Criterion:
    """A registered mask criterion; the entries with the lowest score are pruned first. Give
    ``score`` (element-wise form) or ``tensor_score`` (context form), not both."""

    name: str
    score: Score | None = None
    #: True when the score reads the initial (rewind-point) weights
    needs_init: bool = False
    doc: str = ""
    tensor_score: TensorScore | None = None
    #: reads the adapter's scoring batches (:meth:`ScoreContext.model`)
    needs_batches: bool = False
    #: reads gradients of the adapter's loss on those batches (implies ``needs_batches``)
    needs_gradients: bool = False
    #: reads the gradient of the module's output on an all-ones input (data-free, SynFlow)
    needs_ones: bool = False
    #: rounds a pruning-at-initialization control takes to reach its count (SynFlow: 100); an
    #: IMP level always prunes in one round
    init_rounds: int = 1
    #: the paper that defines it (docs, ``multiticket criteria``)
    paper: str = ""

    def __post_init__(self) -> None:
        if (self.score is None) == (self.tensor_score is None):
            raise ValueError(f"criterion '{self.name}': give score (element-wise) or tensor_score (context), not both")
        if self.needs_gradients and not self.needs_batches:
            object.__setattr__(self, "needs_batches", True)
        if self.init_rounds < 1:
            raise ValueError(f"criterion '{self.name}': init_rounds must be >= 1")

    @property
    def needs_model(self) -> bool:
        """True when scoring reads the model itself (batches, gradients), not only weights."""
        return self.needs_batches or self.needs_gradients or self.needs_ones

    def __call__(self, init: torch.Tensor | None, final: torch.Tensor) -> torch.Tensor:
        """The element-wise score (the original form's call)."""
        if self.score is None:
            raise TypeError(f"criterion '{self.name}' scores from a context: call group_scores")
        if self.needs_init and init is None:
            raise ValueError(f"criterion '{self.name}' needs the initial weights")
        return self.score(init, final)

    def group_scores(self, ctx: ScoreContext, names: Sequence[str], live_idx: torch.Tensor) -> torch.Tensor:
        """Scores of the live entries (flat indices ``live_idx`` into the concatenation of
        ``names``, in scope order) of one ranking group, as a 1-D tensor."""
        if self.score is not None:  # element-wise: exactly the original computation
            w_init = flat(ctx.init, names)[live_idx] if ctx.init is not None and self.needs_init else None
            return self(w_init, flat(ctx.final, names)[live_idx])
        if self.needs_init and ctx.init is None:
            raise ValueError(f"criterion '{self.name}' needs the initial weights")
        assert self.tensor_score is not None
        scores = self.tensor_score(ctx, names)
        return torch.cat([scores[n].detach().reshape(-1).to("cpu", torch.float64) for n in names])[live_idx]


def flat(tensors: Weights, names: Sequence[str]) -> torch.Tensor:
    """The named tensors flattened and concatenated in order, as float32 on the CPU."""
    return torch.cat([tensors[n].detach().reshape(-1).float().cpu() for n in names])


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Rank of each entry in ascending order (0 = smallest), ties broken by position."""
    order = torch.sort(values, stable=True).indices
    out = torch.empty_like(order)
    out[order] = torch.arange(values.numel())
    return out
