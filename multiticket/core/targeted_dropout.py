"""Targeted dropout (Gomez et al. 2019) inside any training loop, with parameter names untouched.

During training, for every output unit of a targeted weight (a row of a ``[out, in, ...]``
tensor), the fraction γ of its *live* weights with the smallest magnitude are candidates, and each
candidate is dropped with probability α. The unit variant ranks whole output units by the L2 norm
of their weights instead and drops the γ lowest-norm units, each with probability α. A network
trained this way learns not to rely on its small weights, so it loses little when they are pruned.

How it rides on an unmodified loop (SB3's ``learn()``, HF's ``Trainer``, the toy loop), in the
spirit of :class:`multiticket.core.enforce.MaskEnforcer` (no wrapped ``forward``, no renamed
parameter, nothing attached at all when targeted dropout is off):

1. a forward pre-hook on each module that owns a targeted parameter samples that parameter's
   drop set the first time the module runs in training mode with gradients enabled, stashes
   the dropped values and zeroes them in place (so every code path that reads the tensor -- an
   LSTM's flat weights, a tied embedding -- sees the dropped weights);
2. a post-accumulate-grad hook on the parameter zeroes the dropped entries' gradient and puts the
   stashed values back. That hook runs once the backward pass has consumed every use of the
   tensor, so restoring there is safe for autograd, and the optimizer step then updates the full
   tensor with a zero gradient at the dropped entries -- exactly dropout applied to the weights;
3. the next training forward samples a fresh drop set. So every forward/backward pair gets its
   own draw: one per PPO/A2C/DQN minibatch, one per HF optimizer step (one per micro-batch
   with gradient accumulation); with SAC/TD3, the critic gets one for its own loss and
   another for the actor's loss, and the actor one for its loss; each is restored by its own
   backward, so polyak averaging, target networks and rollouts always read full weights;
4. full weights are also put back before a forward in eval mode (SB3 rollouts and evaluation,
   HF evaluation), at every :meth:`restore` (the core calls it after every training step,
   before a rewind point is captured) and at :meth:`detach`. A forward without gradients in
   training mode reuses a drop set that is active and samples none.

Pruned weights (``mask``) are never candidates: they are already zero, and ranking counts live
weights only, so targeted dropout composes with the mask enforcer. Sampling uses its own
``torch.Generator`` (seeded per unit), never the global RNG, so with α = 0 training is
bit-identical to training without targeted dropout.

Which dimension is the output unit: dimension 0 (``nn.Linear``, ``nn.Conv*``, ``nn.LSTM``,
embeddings), except for a ``Conv1D`` layer storing its weight as ``[in, out]`` (GPT-2), detected
by its ``nx``/``nf`` attributes. A 1-D tensor is one group in the weight variant and one unit per
entry in the unit variant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from multiticket.core.mask import Mask

VARIANTS = ("weight", "unit")


@dataclass(frozen=True)
class TDSpec:
    """Targeted dropout settings: ``alpha`` drop probability of a candidate, ``gamma`` targeted
    fraction, or a linear ramp of γ from ``gamma_start`` to ``gamma_end`` between the fractions
    ``ramp_start`` and ``ramp_end`` of the training steps (constant outside)."""

    alpha: float = 0.5
    gamma: float = 0.5
    variant: str = "weight"
    ramp: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got '{self.variant}'")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.ramp is not None:
            g0, g1, s, e = self.ramp
            if not (0 <= g0 <= 1 and 0 <= g1 <= 1 and 0 <= s < e <= 1):
                raise ValueError(f"ramp needs gammas in [0, 1] and 0 <= start < end <= 1, got {self.ramp}")

    def gamma_at(self, step: int, total: int) -> float:
        """γ at ``step`` of ``total`` training steps (a pure function of the step, so a level that
        starts at the rewind step k continues the ramp where the dense run was at k)."""
        if self.ramp is None:
            return self.gamma
        g0, g1, start, end = self.ramp
        progress = step / total if total > 0 else 1.0
        t = min(1.0, max(0.0, (progress - start) / (end - start)))
        return g0 + (g1 - g0) * t


def targeted_count(live: torch.Tensor, gamma: float) -> torch.Tensor:
    """Candidates per group of ``live`` entries: ``floor(γ · live + 0.5)`` (the house rounding)."""
    return torch.floor(live.to(torch.float64) * gamma + 0.5).to(torch.long)


def _output_dim(owner: nn.Module, param: torch.Tensor) -> int:
    nx, nf = getattr(owner, "nx", None), getattr(owner, "nf", None)
    if param.dim() == 2 and nx is not None and tuple(param.shape) == (nx, nf) and nx != nf:
        return 1
    return 0


def _as_rows(t: torch.Tensor, out_dim: int, variant: str) -> torch.Tensor:
    """A view/copy of ``t`` as ``[units, weights per unit]``."""
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() == 1:
        return t.reshape(-1, 1) if variant == "unit" else t.reshape(1, -1)
    if out_dim != 0:
        t = t.movedim(out_dim, 0)
    return t.reshape(t.shape[0], -1)


def _from_rows(rows: torch.Tensor, shape: torch.Size, out_dim: int) -> torch.Tensor:
    if len(shape) <= 1 or out_dim == 0:
        return rows.reshape(shape)
    moved = list(shape)
    moved.insert(0, moved.pop(out_dim))
    return rows.reshape(moved).movedim(0, out_dim)


def candidates(
    weight: torch.Tensor, live: torch.Tensor | None, gamma: float, variant: str = "weight", out_dim: int = 0
) -> torch.Tensor:
    """Boolean tensor of ``weight``'s shape: the targeted set (see the module docstring).

    Weight variant: per output unit, the ``targeted_count`` live weights of smallest |w|.
    Unit variant: the ``targeted_count`` live units (any live weight) of smallest L2 norm, all
    their live weights. Ties are broken by position (lower index first), so the set is a
    deterministic function of the weights."""
    w = weight.detach()
    alive = torch.ones_like(w, dtype=torch.bool) if live is None else live.to(device=w.device, dtype=torch.bool)
    rows = _as_rows(w, out_dim, variant).float()
    live_rows = _as_rows(alive, out_dim, variant)
    if variant == "weight":
        score = rows.abs().masked_fill(~live_rows, math.inf)
        order = torch.sort(score, dim=1, stable=True).indices
        rank = torch.empty_like(order).scatter_(
            1, order, torch.arange(order.shape[1], device=order.device).expand_as(order)
        )
        chosen = (rank < targeted_count(live_rows.sum(1), gamma).unsqueeze(1)) & live_rows
    else:
        unit_live = live_rows.any(1)
        score = rows.pow(2).sum(1).masked_fill(~unit_live, math.inf)
        order = torch.sort(score, stable=True).indices
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))
        chosen = (rank < targeted_count(unit_live.sum(), gamma)).unsqueeze(1) & live_rows
    return _from_rows(chosen, w.shape, out_dim)


class TargetedDropout:
    """Attach targeted dropout to the parameters ``names`` of ``module`` (see module docstring).

    ``seed`` seeds the generator(s) that draw the drops; ``total_steps`` is the length of
    training that γ's ramp spans; call :meth:`set_step` as training advances."""

    def __init__(
        self,
        module: nn.Module,
        names: Iterable[str],
        spec: TDSpec,
        seed: int,
        total_steps: int,
        mask: Mask | None = None,
    ) -> None:
        named = dict(module.named_parameters())
        self.names = list(names)
        missing = [n for n in self.names if n not in named]
        if missing:
            raise KeyError(f"targeted dropout: no parameter named {missing[0]}")
        self.spec = spec
        self.seed = seed
        self.total_steps = total_steps
        self.gamma = spec.gamma_at(0, total_steps)
        self.module = module
        self._params = {n: named[n] for n in self.names}
        self._live = {n: (None if mask is None or n not in mask else mask[n].to(named[n].device)) for n in self.names}
        owners: dict[int, tuple[nn.Module, list[str]]] = {}
        by_id = {id(p): n for n, p in self._params.items()}
        self._out_dim: dict[str, int] = {}
        for mod in module.modules():
            for p in mod._parameters.values():
                if p is not None and id(p) in by_id:
                    n = by_id[id(p)]
                    owners.setdefault(id(mod), (mod, []))[1].append(n)
                    self._out_dim.setdefault(n, _output_dim(mod, p))
        self._owners = list(owners.values())
        self._drop: dict[str, torch.Tensor] = {}
        self._stash: dict[str, torch.Tensor] = {}
        self._generators: dict[torch.device, torch.Generator] = {}
        self._handles: list[RemovableHandle] = []
        #: counters for tests and logs: sampling events, candidates and dropped weights drawn
        self.samples = 0
        self.candidates_drawn = 0
        self.dropped = 0
        self.last_candidates: dict[str, torch.Tensor] = {}

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    @property
    def active(self) -> list[str]:
        """Names of the parameters whose drop set is applied right now."""
        return list(self._drop)

    def set_step(self, step: int) -> None:
        self.gamma = self.spec.gamma_at(step, self.total_steps)

    def attach(self) -> TargetedDropout:
        if self.attached:
            return self
        for owner, names in self._owners:
            self._handles.append(owner.register_forward_pre_hook(self._pre_hook(names)))
        for n, p in self._params.items():
            self._handles.append(p.register_post_accumulate_grad_hook(self._grad_hook(n)))
        return self

    def detach(self) -> None:
        """Put the full weights back and remove every hook."""
        self.restore()
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> TargetedDropout:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def generator_states(self) -> dict[str, torch.Tensor]:
        """States of the drop generators, per device: what a mid-level checkpoint must keep so a
        resumed unit draws the same drops as an uninterrupted one."""
        return {str(d): g.get_state() for d, g in self._generators.items()}

    def load_generator_states(self, states: dict[str, torch.Tensor]) -> None:
        for device, state in states.items():
            self._generator(torch.device(device)).set_state(state)

    # -- the drop ---------------------------------------------------------------------------
    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    @torch.no_grad()
    def sample(self, names: Iterable[str]) -> None:
        """Draw and apply a drop set for each of ``names`` that has none applied."""
        for n in names:
            if n in self._drop:
                continue
            p = self._params[n]
            cand = candidates(p, self._live[n], self.gamma, self.spec.variant, self._out_dim[n])
            out_dim = self._out_dim[n]
            if self.spec.variant == "unit":
                rows = _as_rows(cand, out_dim, "unit")
                u = torch.rand(rows.shape[0], generator=self._generator(p.device), device=p.device)
                drop = _from_rows(rows & (u < self.spec.alpha).unsqueeze(1), p.shape, out_dim)
            else:
                u = torch.rand(p.shape, generator=self._generator(p.device), device=p.device)
                drop = cand & (u < self.spec.alpha)
            self._stash[n] = p.detach()[drop].clone()
            p.detach().masked_fill_(drop, 0)
            self._drop[n] = drop
            self.last_candidates[n] = cand
            self.samples += 1
            self.candidates_drawn += int(cand.sum())
            self.dropped += int(drop.sum())

    @torch.no_grad()
    def restore(self, names: Iterable[str] | None = None) -> None:
        """Put the stashed values of the dropped weights back (all applied drops by default)."""
        for n in list(self._drop) if names is None else list(names):
            drop = self._drop.pop(n, None)
            if drop is not None:
                self._params[n].detach().masked_scatter_(drop, self._stash.pop(n))

    def _pre_hook(self, names: list[str]):  # noqa: ANN202 - torch hook signature
        def hook(module: nn.Module, args: object) -> None:
            if not module.training:
                self.restore(names)
            elif torch.is_grad_enabled():
                self.sample(names)

        return hook

    def _grad_hook(self, name: str):  # noqa: ANN202 - torch hook signature
        def hook(param: torch.Tensor) -> None:
            drop = self._drop.get(name)
            if drop is None:
                return
            if param.grad is not None:
                param.grad.masked_fill_(drop, 0)
            self.restore([name])

        return hook
