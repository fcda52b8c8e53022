"""Mask criteria (Zhou et al. 2019): each one module defining ``CRITERION``, registered here in
:data:`multiticket.core.registry.criteria`. Other packages add theirs through the
``multiticket.criteria`` entry-point group (:mod:`multiticket.core.registry`)."""

from __future__ import annotations

from multiticket.core.criteria import (
    large_final,
    large_init,
    large_init_large_final,
    magnitude_increase,
    movement,
    small_final,
)
from multiticket.core.criteria.base import Criterion
from multiticket.core.registry import criteria

#: the criterion of ``global_magnitude`` / ``layerwise_magnitude`` when the task names none
DEFAULT = "large_final"

for _module in (large_final, small_final, large_init, large_init_large_final, magnitude_increase, movement):
    criteria.register(_module.CRITERION.name, _module.CRITERION)

__all__ = ["DEFAULT", "Criterion"]
