"""Early-bird detection (You et al. 2020, "Drawing Early-Bird Tickets"), applied to IMP levels.

While a network trains under the mask ``M`` of its level, the mask the *next* pruning step would
draw, ``prune(current weights, M, spec)``, changes a lot at first and then settles. Every
``interval`` steps the monitor computes that mask (with the run's own :class:`PruneSpec` and
counting rule, so it always has the planned count) and keeps the last ``window`` of them; once
the newest differs from each of the others by less than ``threshold`` (normalised Hamming
distance), the mask has stabilised: the monitor *fires*, keeps a copy of the weights at that step
(the next level prunes from them) and, when asked to, tells the adapter to stop training.

Normalisation: the number of differing entries is divided by the entries alive under ``M`` (the
only ones that can differ), so at the dense level it is You et al.'s distance over all prunable
weights, and at a sparse level the threshold keeps its meaning instead of shrinking with the
remaining fraction. You et al. use 5 checkpoints (one per epoch) and 0.1.

The monitor reads weights only; it draws no random numbers and never touches the model, so a
run that is watched follows exactly the trajectory of a run that is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, prune
from multiticket.core.rewind import copy_state_dict


@dataclass(frozen=True)
class EarlyBirdSettings:
    """``interval``: steps between mask checks (domain units); ``window``: masks compared;
    ``threshold``: the largest normalised Hamming distance that still counts as stable."""

    interval: int
    window: int = 5
    threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"interval must be >= 1 step, got {self.interval}")
        if self.window < 2:
            raise ValueError(f"window must compare at least 2 masks, got {self.window}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")


def window_distance(masks: Sequence[Mask], alive: int) -> float:
    """Largest distance between the newest mask and each earlier one in ``masks`` (You et al.'s
    rule), as differing entries over ``alive``. 0.0 for fewer than two masks."""
    if len(masks) < 2:
        return 0.0
    newest = masks[-1]
    diffs = [newest.hamming(m, normalized=False) for m in masks[:-1]]
    return max(diffs) / alive if alive else 0.0


@dataclass
class EarlyBirdMonitor:
    """Watches one training run under ``mask``; call :meth:`observe` after every update.

    ``start`` is the step training starts from (checks fall on ``start + j * interval``,
    j >= 1); the monitor never fires before ``min_stop`` (the dense search must reach the rewind
    step k). ``stop`` says whether firing ends the training run or only records the point.
    """

    mask: Mask
    spec: PruneSpec
    settings: EarlyBirdSettings
    start: int = 0
    min_stop: int = 0
    stop: bool = True
    #: the rewind-point weights that init-based mask criteria read (None: no such point yet)
    init: Mapping[str, torch.Tensor] | None = None
    #: the step at which the next mask was found stable, None while it is not
    fired_at: int | None = None
    #: the stable next mask and a copy of the module's state dict at ``fired_at``
    next_mask: Mask | None = None
    snapshot: dict[str, torch.Tensor] | None = None
    #: ``[step, window distance or None]`` of every check (None until the window is full)
    trace: list[list[float | None]] = field(default_factory=list)
    _recent: list[Mask] = field(default_factory=list)
    _next_check: int = -1

    def __post_init__(self) -> None:
        self._next_check = self.start + self.settings.interval

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    @property
    def distance(self) -> float | None:
        """The window distance at the last check (None before the window is full)."""
        return self.trace[-1][1] if self.trace else None

    @torch.no_grad()
    def observe(self, step: int, module: nn.Module) -> bool:
        """Check the next mask if a check is due at ``step``; True exactly once, when it fires."""
        if self.fired or step < self._next_check:
            return False
        while self._next_check <= step:  # steps may jump by more than one (SB3: n_envs)
            self._next_check += self.settings.interval
        params = dict(module.named_parameters())
        weights = {n: params[n].detach() for n in self.mask}
        candidate = prune(weights, self.mask, self.spec, init=self.init)
        self._recent = [*self._recent, candidate][-self.settings.window:]
        if len(self._recent) < self.settings.window:
            self.trace.append([step, None])
            return False
        dist = window_distance(self._recent, self.mask.num_alive)
        self.trace.append([step, round(dist, 6)])
        if dist >= self.settings.threshold or step < self.min_stop:
            return False
        self.fired_at = step
        self.next_mask = candidate
        self.snapshot = copy_state_dict(module)
        return True
