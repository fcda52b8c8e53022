"""``small_final``: keep the weights of smallest final magnitude, score -|w_f| (Zhou et al.'s
control that shows magnitude matters)."""

from __future__ import annotations

import torch

from multiticket.core.criteria.base import Criterion


def _score(init: torch.Tensor | None, final: torch.Tensor) -> torch.Tensor:
    return -final.abs()


CRITERION = Criterion("small_final", _score, needs_init=False, doc="keep the smallest |w_f|")
