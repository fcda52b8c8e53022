"""``magnitude_increase``: keep the weights whose magnitude grew most, score |w_f| - |w_i|."""

from __future__ import annotations

import torch

from multiticket.core.criteria.base import Criterion


def _score(init: torch.Tensor | None, final: torch.Tensor) -> torch.Tensor:
    assert init is not None
    return final.abs() - init.abs()


CRITERION = Criterion("magnitude_increase", _score, needs_init=True, doc="keep the largest |w_f| - |w_i|")
