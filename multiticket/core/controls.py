"""Controls: the experiments that show a ticket is special, at the ticket's own sparsities.

A *winning* ticket beats the random controls at the same sparsity: random reinitialisation (the
ticket's mask, a fresh init), a random mask (random positions at the ticket's counts, fresh
init), random pruning (random positions at the ticket's counts, the rewind weights kept: Chen et
al. 2020, open_lth's ``randomly_prune``) and Vischer et al.'s permuted initialisations; the
ablations one-shot pruning and rewinding to step 0 test the procedure rather than the ticket.
Since Frankle et al. 2021 ("Pruning Neural Networks at Initialization: Why Are We Missing the
Mark?") a ticket is also read against pruning at initialization: the *baselines* ``snip_init``,
``grasp_init`` and ``synflow_init`` prune the network at its rewind point with their criterion
(and the task's allocator) straight to the ticket's count at each level, and train it from there.

A control at level L is derived from the ticket's mask at L (it never prunes by itself), except
the chains: ``ticket`` (IMP with late rewinding), ``rewind_init`` (IMP rewinding to step 0) and
``early_bird`` (IMP drawing each mask as soon as it stabilises, :mod:`multiticket.core.early_bird`),
whose masks come from their own previous level. Each entry says which mask a unit trains, where it
starts, what it is for (its ``role``) and whether it transfers; every consumer (the recipe, the
unit graph, transfer, the verdicts, the report, compare) reads the entry, never a control's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from multiticket.core import registry

#: where a control's training starts ("none": not trained, the pruned weights are evaluated as they are)
Start = Literal["rewind", "rewind_permuted", "fresh", "none"]


#: what a control is for: "ticket" (the IMP ticket itself), "random" (a random control: a winning
#: ticket must beat every one of them, :mod:`multiticket.analysis.verdicts`), "ablation" (tests the
#: procedure: one-shot pruning, rewinding to 0, early-bird, prune-only), "baseline" (another way to
#: find a sparse network at the same count, read beside the ticket: pruning at initialization;
#: the verdict does not count it as a random control)
Role = Literal["ticket", "random", "ablation", "baseline"]
ROLES: tuple[Role, ...] = ("ticket", "random", "ablation", "baseline")
#: which rewind point a "rewind"-started unit (or a chain's level) restarts from: step k or step 0
RewindTo = Literal["k", "init"]


@dataclass(frozen=True)
class ControlSpec:
    name: str
    #: "ticket" = the ticket's mask at this level; "random_layer"/"random_global" = random positions
    #: at the ticket's per-layer / total counts; "one_shot" = dense final weights pruned straight
    #: to this level's count; "chain" = own IMP chain; "pai" = the rewind point (step k, or 0 with
    #: ``rewind_to="init"``) pruned by ``criterion`` straight to this level's count (pruning at init)
    mask: Literal["ticket", "random_layer", "random_global", "one_shot", "chain", "pai"]
    start: Start
    doc: str
    #: the level-0 unit whose final weights a "one_shot" mask ranks: "ticket" (the dense run) or
    #: "dense_td" (a dense run trained with targeted dropout, :mod:`multiticket.core.targeted_dropout`)
    source: str = "ticket"
    #: None: derived from ``mask`` and ``start`` (:func:`default_role`), so a control registered
    #: with only its mask and start (``ControlSpec(name, "random_layer", "rewind", doc)``) is a
    #: random control like the built-in ones
    role: Role | None = None
    rewind_to: RewindTo = "k"
    #: runs in a transfer run (built from the transferred mask at the source's counts); None: derived
    transferable: bool | None = None
    #: a "pai" mask's criterion (a registered name: ``snip``, ``grasp``, ``synflow``, ...)
    criterion: str | None = None
    #: a "pai" mask's budget allocator; None: the task's (``prune.allocator`` or its strategy's)
    allocator: str | None = None

    def __post_init__(self) -> None:
        if self.mask == "pai" and (self.criterion is None or self.start != "rewind"):
            raise ValueError(f"control '{self.name}': a 'pai' mask needs a criterion and starts at 'rewind'")
        if self.role is None:
            object.__setattr__(self, "role", default_role(self.mask, self.start))
        if self.transferable is None:
            object.__setattr__(self, "transferable", self.mask in ("random_layer", "random_global"))

    @property
    def is_random(self) -> bool:
        return self.role == "random"

    @property
    def is_chain(self) -> bool:
        return self.mask == "chain"

    def start_text(self) -> str:
        """Where the unit's training starts, in words (reports, ``multiticket controls``)."""
        step = "step k" if self.rewind_to == "k" else "step 0"
        return {"rewind": f"rewind weights at {step}", "rewind_permuted": f"rewind weights at {step}, shuffled",
                "fresh": "fresh init", "none": "not trained"}[self.start]


def default_role(mask: str, start: str) -> Role:
    """A control trained at the ticket's counts without the ticket's mask *and* start is random:
    a random mask (any start), or the ticket's mask from a fresh or shuffled init; pruning at
    initialization is a baseline; everything else (chains, one-shot, prune-only) ablates the procedure."""
    if mask in ("random_layer", "random_global"):
        return "random"
    if mask == "pai":
        return "baseline"
    if mask == "ticket" and start in ("fresh", "rewind_permuted"):
        return "random"
    return "ablation"


def role_of(control: str, recorded: str | None = None) -> Role:
    """A control's role: as recorded in its unit's ``metrics.json`` (runs made with this field),
    else its registered spec, else "ablation" (a control neither recorded nor registered here)."""
    for role in ROLES:
        if recorded == role:
            return role
    spec = CONTROLS.get(control)
    return spec.role if spec is not None and spec.role is not None else "ablation"


#: every control by name: the registry (:data:`multiticket.core.registry.controls`), which other
#: packages extend through the ``multiticket.controls`` entry-point group
CONTROLS: registry.Registry[ControlSpec] = registry.controls
for _spec in (
    ControlSpec("ticket", "chain", "rewind", "IMP: prune the previous level's final weights, rewind to step k",
                role="ticket"),
    ControlSpec("random_reinit", "ticket", "fresh", "ticket mask, fresh random init, trained from step 0"),
    ControlSpec("random_mask", "random_layer", "fresh",
                "random positions at the ticket's per-layer counts, fresh init, from step 0"),
    ControlSpec("random_mask_global", "random_global", "fresh",
                "random positions at the ticket's total count over the whole scope, fresh init"),
    ControlSpec("random_prune", "random_layer", "rewind",
                "random positions at the ticket's per-layer counts, rewind weights kept (Chen et al. 2020's "
                "random pruning; open_lth's randomly_prune)"),
    ControlSpec("random_prune_global", "random_global", "rewind",
                "random positions at the ticket's total count, rewind weights kept"),
    ControlSpec("permuted_init", "ticket", "rewind_permuted",
                "ticket mask, rewind values shuffled within each layer (Vischer et al.: mask/permuted)"),
    ControlSpec("permuted_mask", "random_layer", "rewind_permuted",
                "random mask at per-layer counts and shuffled rewind values (permuted/permuted)"),
    ControlSpec("one_shot", "one_shot", "rewind",
                "prune the dense run's final weights straight to this level's sparsity, rewind to k"),
    ControlSpec("rewind_init", "chain", "rewind",
                "IMP like the ticket, but rewinding to step 0 instead of step k", rewind_to="init"),
    ControlSpec("early_bird", "chain", "rewind",
                "IMP whose masks are drawn once they stabilise (You et al. early-bird), rewind to k"),
    ControlSpec("transfer_mask", "ticket", "fresh",
                "transfer runs only: the transferred ticket's mask, the target's fresh init (mask transfer)",
                transferable=True),
    ControlSpec("prune_dense", "one_shot", "none",
                "the dense run's final weights pruned straight to this level's sparsity, not retrained"),
    ControlSpec("prune_dense_td", "one_shot", "none",
                "a dense run trained with targeted dropout (unit dense_td/level_0), pruned straight to this "
                "level's sparsity, not retrained", source="dense_td"),
    ControlSpec("snip_init", "pai", "rewind",
                "the rewind point pruned by SNIP (Lee et al. 2019) straight to the ticket's count, trained from k",
                criterion="snip", role="baseline"),
    ControlSpec("grasp_init", "pai", "rewind",
                "the rewind point pruned by GraSP (Wang et al. 2020) straight to the ticket's count, trained from k",
                criterion="grasp", role="baseline"),
    ControlSpec("synflow_init", "pai", "rewind",
                "the rewind point pruned by iterative SynFlow (Tanaka et al. 2020, 100 rounds) to the ticket's "
                "count, trained from k", criterion="synflow", role="baseline"),
):
    CONTROLS.register(_spec.name, _spec)
