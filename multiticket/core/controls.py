"""Controls: the experiments that show a ticket is special, at the ticket's own sparsities.

A *winning* ticket beats the random controls at the same sparsity: random reinitialisation (the
ticket's mask, a fresh init), a random mask (random positions at the ticket's counts), and
Vischer et al.'s permuted initialisations; the ablations one-shot pruning and rewinding to step 0
test the procedure rather than the ticket.

A control at level L is derived from the ticket's mask at L (it never prunes by itself), except
the chains: ``ticket`` (IMP with late rewinding), ``rewind_init`` (IMP rewinding to step 0) and
``early_bird`` (IMP drawing each mask as soon as it stabilises, :mod:`multiticket.core.early_bird`),
whose masks come from their own previous level. Each entry says which mask a unit trains and
where it starts; the level loop in :mod:`multiticket.core.imp` does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from multiticket.core import registry

#: where a control's training starts ("none": not trained, the pruned weights are evaluated as they are)
Start = Literal["rewind", "rewind_permuted", "fresh", "none"]


@dataclass(frozen=True)
class ControlSpec:
    name: str
    #: "ticket" = the ticket's mask at this level; "random_layer"/"random_global" = random positions
    #: at the ticket's per-layer / total counts; "one_shot" = dense final weights pruned straight
    #: to this level's count; "chain" = own IMP chain
    mask: Literal["ticket", "random_layer", "random_global", "one_shot", "chain"]
    start: Start
    doc: str
    #: the level-0 unit whose final weights a "one_shot" mask ranks: "ticket" (the dense run) or
    #: "dense_td" (a dense run trained with targeted dropout, :mod:`multiticket.core.targeted_dropout`)
    source: str = "ticket"


#: every control by name: the registry (:data:`multiticket.core.registry.controls`), which other
#: packages extend through the ``multiticket.controls`` entry-point group
CONTROLS: registry.Registry[ControlSpec] = registry.controls
for _spec in (
    ControlSpec("ticket", "chain", "rewind", "IMP: prune the previous level's final weights, rewind to step k"),
    ControlSpec("random_reinit", "ticket", "fresh", "ticket mask, fresh random init, trained from step 0"),
    ControlSpec("random_mask", "random_layer", "fresh",
                "random positions at the ticket's per-layer counts, fresh init, from step 0"),
    ControlSpec("random_mask_global", "random_global", "fresh",
                "random positions at the ticket's total count over the whole scope, fresh init"),
    ControlSpec("permuted_init", "ticket", "rewind_permuted",
                "ticket mask, rewind values shuffled within each layer (Vischer et al.: mask/permuted)"),
    ControlSpec("permuted_mask", "random_layer", "rewind_permuted",
                "random mask at per-layer counts and shuffled rewind values (permuted/permuted)"),
    ControlSpec("one_shot", "one_shot", "rewind",
                "prune the dense run's final weights straight to this level's sparsity, rewind to k"),
    ControlSpec("rewind_init", "chain", "rewind",
                "IMP like the ticket, but rewinding to step 0 instead of step k"),
    ControlSpec("early_bird", "chain", "rewind",
                "IMP whose masks are drawn once they stabilise (You et al. early-bird), rewind to k"),
    ControlSpec("transfer_mask", "ticket", "fresh",
                "transfer runs only: the transferred ticket's mask, the target's fresh init (mask transfer)"),
    ControlSpec("prune_dense", "one_shot", "none",
                "the dense run's final weights pruned straight to this level's sparsity, not retrained"),
    ControlSpec("prune_dense_td", "one_shot", "none",
                "a dense run trained with targeted dropout (unit dense_td/level_0), pruned straight to this "
                "level's sparsity, not retrained", source="dense_td"),
):
    CONTROLS.register(_spec.name, _spec)
