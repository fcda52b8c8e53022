"""``large_init``: keep the weights of largest initial (rewind-point) magnitude, score |w_i|."""

from __future__ import annotations

import torch

from multiticket.core.criteria.base import Criterion


def _score(init: torch.Tensor | None, final: torch.Tensor) -> torch.Tensor:
    assert init is not None
    return init.abs()


CRITERION = Criterion("large_init", _score, needs_init=True, doc="keep the largest |w_i|")
