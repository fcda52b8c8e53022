"""Ticket transfer: train a ticket found on one task (the *source* run) on another task (the target).

A transfer run is an ordinary run directory (``config.yaml`` with a ``transfer:`` section, units
under ``seed_<s>/<control>/level_<L>/``), so ``multiticket report``, ``compare`` and ``status``
read it unchanged. Its units, for each seed s and source level L:

- ``ticket/level_0``: the target's own dense network (its own init, trained 0 -> T; it also writes
  the target's rewind points, so ``multiticket instability`` works on a transfer run);
- ``ticket/level_L``: **ticket transfer**: the source's level-L mask and the source's rewind
  weights θ_k (seed s), trained on the target from step 0 to T;
- ``transfer_mask/level_L``: **mask transfer**: the same mask, the target's fresh init, 0 -> T;
- the source run's random controls (``random_mask``, ``random_mask_global``, ``permuted_init``,
  ``permuted_mask``) at the same per-layer counts, built from the transferred mask exactly as in
  a normal run (``permuted_*`` shuffle the transferred θ_k).

Every unit trains the target's whole budget from step 0: only weights travel from the source;
its step counter, optimizer state, RNG and adapter state (counters, normalisation statistics) do
not, so transfer works across optimizers (Adam <-> SGD/RMSprop) and algorithms (PPO <-> A2C).

Shape rule. Parameters are matched by name over the prunable root's ``state_dict``; the two
sides must have the same names. A tensor whose shape differs is allowed only inside an *edge
layer* of the target -- a layer that reads the input or produces an output, as declared by
:meth:`DomainAdapter.io_layers` (toy/HF: the first and the last layer holding parameters; SB3:
the first and last Linear/Conv of every actor/critic branch, and ``log_std``). Such a layer is
re-initialised as a whole (every tensor under its name keeps the target's fresh init, in the
ticket unit as in every other), and each of its prunable tensors gets a random mask that keeps
the source layer's alive fraction (``floor(fraction * numel + 0.5)`` entries, drawn with
``generator(seed, "transfer-edge", level, name)``). Any other mismatch is a :class:`UserError`
naming the parameter and both shapes, raised before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from multiticket.core.controls import CONTROLS
from multiticket.core.inputs import Scope
from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec
from multiticket.core.rewind import RewindPoint, copy_state_dict
from multiticket.core.seeding import generator
from multiticket.core.store import RunStore, Unit
from multiticket.core.tensorfile import load_tensors
from multiticket.core.textfile import read_yaml
from multiticket.errors import UserError


def transfer_controls() -> tuple[str, ...]:
    """Controls a transfer run can run (``ControlSpec.transferable``): those built from the
    ticket's mask at the same counts (random masks, ``transfer_mask``). ``random_reinit`` (the
    ticket's mask, fresh init) *is* mask transfer there (``transfer_mask``); ``one_shot`` and
    ``rewind_init`` need the target's own IMP chain."""
    return tuple(name for name, spec in CONTROLS.items() if spec.transferable)


# -- the source run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRun:
    """A finished (part of a) run directory whose tickets are transferred."""

    root: Path
    config: dict[str, Any]
    k: int
    #: seeds with finished rewind point k, and for each the finished ticket levels 1..n
    levels: dict[int, int]

    @property
    def name(self) -> str:
        return self.root.name

    def rewind_dir(self, seed: int) -> Path:
        return RunStore(self.root).rewind_dir(seed, self.k)

    def mask_path(self, seed: int, level: int) -> Path:
        return RunStore(self.root).unit_dir(Unit(seed, "ticket", level)) / "mask.safetensors"

    def rewind_weights(self, seed: int) -> dict[str, torch.Tensor]:
        return load_tensors(self.rewind_dir(seed) / "weights.safetensors")

    def mask(self, seed: int, level: int) -> Mask:
        return Mask.load(self.mask_path(seed, level))


def read_source(run_dir: Path | str, parse_config: Callable[[dict[str, Any]], Any]) -> SourceRun:
    """Read a source run directory: its config, rewind step k and finished ticket levels per seed.
    ``parse_config`` validates the recorded config (the task config model's ``model_validate``:
    the core never imports the config layer) into an object with ``rewind_step()``.

    UserError if it is not a run directory or has no seed with rewind point k and ticket level 1."""
    root = Path(run_dir)
    config_file = root / "config.yaml"
    if not config_file.is_file():
        raise UserError(f"{root}: not a run directory (no config.yaml)")
    try:
        resolved = read_yaml(config_file) or {}
        resolved.pop("versions", None)
        k = parse_config(resolved).rewind_step()
    except Exception as exc:  # noqa: BLE001 - YAML or validation problems: the user's to fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{config_file}: cannot be read as a run config: {first}") from None
    if resolved.get("transfer") is not None:
        raise UserError(f"{root}: is itself a transfer run; transfer from the run that found the tickets")
    store = RunStore(root)
    levels: dict[int, int] = {}
    for seed_dir in sorted(root.glob("seed_*")):
        try:
            seed = int(seed_dir.name.removeprefix("seed_"))
        except ValueError:
            continue
        if not store.is_done(store.rewind_dir(seed, k)):
            continue
        n = 0
        while store.is_done(store.unit_dir(Unit(seed, "ticket", n + 1))):
            n += 1
        if n:
            levels[seed] = n
    if not levels:
        raise UserError(f"{root}: no seed has a finished rewind point (step {k}) and ticket level 1")
    return SourceRun(root, resolved, k, levels)


# -- the shape rule ---------------------------------------------------------------------------------


def in_layers(name: str, prefixes: Sequence[str]) -> str | None:
    """The prefix (a module name) whose layer holds the tensor ``name``, or None."""
    for p in prefixes:
        if name == p or name.startswith(p + "."):
            return p
    return None


def reinit_layers(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], edges: Sequence[str], where: str = "transfer"
) -> list[str]:
    """The edge layers (module names from ``edges``) that must be re-initialised because one of
    their tensors differs in shape; raises UserError for a name on one side only or a shape
    mismatch outside the edge layers."""
    only_source = [n for n in source if n not in target]
    only_target = [n for n in target if n not in source]
    if only_source or only_target:
        name, side = (only_source[0], "source") if only_source else (only_target[0], "target")
        raise UserError(
            f"{where}: parameter '{name}' exists only in the {side} network "
            f"({len(only_source)} source-only, {len(only_target)} target-only names); the architectures differ"
        )
    out: list[str] = []
    for name, t in target.items():
        s = source[name]
        if tuple(s.shape) == tuple(t.shape):
            continue
        layer = in_layers(name, edges)
        if layer is None:
            raise UserError(
                f"{where}: parameter '{name}' has shape {tuple(s.shape)} in the source and {tuple(t.shape)} in "
                f"the target; only the input/output layers ({', '.join(edges) or 'none'}) may differ"
            )
        if layer not in out:
            out.append(layer)
    return out


def merge_weights(
    source: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], reinit: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The target's start: every tensor from the source, except the re-initialised layers'
    tensors, which keep the target's fresh values (copies; dtypes follow the target)."""
    return {
        n: (t.clone() if in_layers(n, reinit) else source[n].to(dtype=t.dtype).clone()) for n, t in fresh.items()
    }


def transfer_mask(
    source: Mask, target_shapes: dict[str, tuple[int, ...]], reinit: Sequence[str], gen_parts: tuple[Any, ...]
) -> Mask:
    """The source mask on the target: copied where shapes match; in a re-initialised layer whose
    shape differs, random positions keeping the source tensor's alive fraction (rounded half up),
    drawn from ``generator(*gen_parts, name)``."""
    out: dict[str, torch.Tensor] = {}
    for name, m in source.items():
        if name not in target_shapes:
            raise UserError(f"transfer: the source mask names '{name}', which the target network does not have")
        shape = target_shapes[name]
        if tuple(m.shape) == shape:
            out[name] = m.clone()
            continue
        if in_layers(name, reinit) is None:
            raise UserError(
                f"transfer: mask '{name}' has shape {tuple(m.shape)} in the source and {shape} in the target"
            )
        numel = math.prod(shape)
        alive = min(numel, math.floor(float(m.float().mean()) * numel + 0.5))
        perm = torch.randperm(numel, generator=generator(*gen_parts, name))
        flat = torch.zeros(numel, dtype=torch.bool)
        flat[perm[:alive]] = True
        out[name] = flat.reshape(shape)
    return Mask(out)


def mask_names(path: Path) -> list[str]:
    """Parameter names of a mask file, in model order, without reading the tensors."""
    return list(Mask.check_file(path))


# -- the transfer run's tickets -------------------------------------------------------------------


class TransferStarts:
    """What a transfer run takes from its source instead of finding it (a start provider of
    :class:`~multiticket.core.inputs.UnitInputs`): the ticket's mask at each level (edge rule
    applied) and the start θ_k, so its ticket units train the source's ticket and every "rewind"
    start of a control is the transferred θ_k at step 0 (``permuted_*`` shuffle the transferred
    weights). Built from a task with a ``transfer:`` section; UserError if the source does not fit."""

    def __init__(self, cfg: Any) -> None:
        section = cfg.transfer
        assert section is not None, "a transfer needs a task with a transfer section"
        self.cfg = cfg
        self.source = read_source(section.source_dir, type(cfg).model_validate)
        if self.source.name != section.source:
            raise UserError(
                f"transfer.source_dir: '{section.source_dir}' holds the run '{self.source.name}', "
                f"not '{section.source}'"
            )
        self.reinit: list[str] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._alive: dict[int, int] = {}

    def scope(self, adapter: Any, spec: PruneSpec) -> Scope:
        """Check the source against the built target (the shape rule, every seed and level); the
        scope is the source mask's parameters. UserError before anything is written."""
        seeds = list(self.cfg.seeds)
        self._check_levels(seeds)
        module = adapter.module
        fresh = copy_state_dict(module)
        inputs, outputs = adapter.io_layers()
        self.reinit = reinit_layers(self.source.rewind_weights(seeds[0]), fresh, [*inputs, *outputs])
        params = dict(module.named_parameters())
        names = mask_names(self.source.mask_path(seeds[0], 1))
        shapes = {n: tuple(params[n].shape) for n in names if n in params}
        for s in seeds:  # every seed's files must be readable and fit (checked, not trained)
            if s != seeds[0]:
                reinit_layers(self.source.rewind_weights(s), fresh, [*inputs, *outputs])
            for level in range(1, self.cfg.prune.levels + 1):
                transfer_mask(self.source.mask(s, level), shapes, self.reinit, (s, "transfer-edge", level))
        self.shapes = {n: shapes[n] for n in names}
        return Scope(names, self.shapes, spec, {n: math.prod(s) for n, s in self.shapes.items()})

    def _check_levels(self, seeds: list[int]) -> None:
        missing = [s for s in seeds if s not in self.source.levels]
        if missing:
            raise UserError(
                f"seeds: source run {self.source.name} has no finished ticket for seed {missing[0]} "
                f"(it has {sorted(self.source.levels)})"
            )
        short = [s for s in seeds if self.source.levels[s] < self.cfg.prune.levels]
        if short:
            raise UserError(
                f"prune.levels: {self.cfg.prune.levels} asked for, but seed {short[0]} of {self.source.name} "
                f"has ticket levels 1-{self.source.levels[short[0]]} only"
            )

    def planned_alive(self, level: int) -> int:
        """Alive count of the transferred mask at ``level`` (what the ticket unit trains)."""
        if level == 0:
            return sum(math.prod(s) for s in self.shapes.values())
        if level not in self._alive:
            self._alive[level] = self.mask(self.cfg.seeds[0], level).num_alive
        return self._alive[level]

    def mask(self, seed: int, level: int) -> Mask:
        """The source's level-L ticket mask on the target (edge rule applied)."""
        return transfer_mask(self.source.mask(seed, level), self.shapes, self.reinit, (seed, "transfer-edge", level))

    def start(self, seed: int, adapter: Any) -> RewindPoint:
        """The transferred start of ``seed``: source θ_k merged into the target's fresh build,
        at step 0 with the RNG and adapter state a fresh build has (so nothing else travels)."""
        adapter.build(seed)
        module = adapter.module
        weights = merge_weights(self.source.rewind_weights(seed), copy_state_dict(module), self.reinit)
        point = RewindPoint.capture(module, 0, (), adapter.state())  # copies state and RNG
        point.weights = weights
        return point

