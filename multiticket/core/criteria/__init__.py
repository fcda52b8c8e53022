"""Mask criteria: each one module defining ``CRITERION``, registered here in
:data:`multiticket.core.registry.criteria`: Zhou et al. 2019's magnitude criteria (element-wise)
and the context criteria SNIP, GraSP, SynFlow, LAMP and the neuron norms ``l1_norm`` / ``l2_norm``
(:mod:`multiticket.core.criteria.base`).
Budget allocators live in :mod:`multiticket.core.criteria.allocators`. Other packages add
criteria through the ``multiticket.criteria`` entry-point group (:mod:`multiticket.core.registry`)."""

from __future__ import annotations

from multiticket.core.criteria import (
    grasp,
    lamp,
    large_final,
    large_init,
    large_init_large_final,
    magnitude_increase,
    movement,
    small_final,
    snip,
    structured,
    synflow,
)
from multiticket.core.criteria.base import Criterion, ScoreContext
from multiticket.core.registry import criteria

#: the criterion of ``global_magnitude`` / ``layerwise_magnitude`` when the task names none
DEFAULT = "large_final"

for _module in (large_final, small_final, large_init, large_init_large_final, magnitude_increase, movement,
                snip, grasp, synflow, lamp):
    criteria.register(_module.CRITERION.name, _module.CRITERION)
for _row in (structured.L1_NORM, structured.L2_NORM):  # neuron norms (prune.structure: neurons)
    criteria.register(_row.name, _row)

__all__ = ["DEFAULT", "Criterion", "ScoreContext"]
