"""The toy adapter's own loop masks gradients right before the step (``grad_masking = "step"``):
pruned weights are exactly zero after every optimizer step, and training is bit-identical to the
per-tensor hooks every other adapter uses, with and without targeted dropout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from multiticket.adapters.toy import ToyAdapter, ToySection
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.hooks import LevelHooks
from multiticket.core.mask import Mask
from multiticket.core.monitors import DropoutMonitor, MonitorList
from multiticket.core.targeted_dropout import TargetedDropout, TDSpec


def _train(tmp_path: Path, grads: str, optimizer: str, td: bool) -> tuple[dict[str, torch.Tensor], Mask, int]:
    adapter = ToyAdapter(None, ToySection(n_train=256, n_test=128, hidden=[24, 16], batch_size=32,
                                          optimizer=optimizer), tmp_path)
    adapter.build(0)
    g = torch.Generator().manual_seed(1)
    mask = Mask({n: torch.rand(dict(adapter.module.named_parameters())[n].shape, generator=g) > 0.5
                 for n in adapter.default_prunable()})
    enforcer = MaskEnforcer(adapter.module, mask, grads=grads).attach()
    hooks = LevelHooks(adapter, enforcer, 0)
    dropout = None
    if td:
        dropout = TargetedDropout(adapter.module, list(mask), TDSpec(alpha=0.5, gamma=0.5), seed=5,
                                  total_steps=40, mask=mask)
        hooks.monitors = MonitorList([DropoutMonitor(dropout)])
    params = dict(adapter.module.named_parameters())
    checked = 0
    original = hooks.on_step

    def on_step(step: int, logs: dict | None = None) -> None:
        nonlocal checked
        for n, m in mask.items():
            assert torch.count_nonzero(params[n].detach()[~m]) == 0, (step, n)
        checked += 1
        original(step, logs)

    hooks.on_step = on_step  # type: ignore[method-assign]
    adapter.train(0, 40, hooks)
    if dropout is not None:
        dropout.detach()
    enforcer.detach()
    return {k: v.clone() for k, v in adapter.module.state_dict().items()}, mask, checked


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("td", [False, True])
def test_step_masking_is_exact_every_step_and_identical_to_hooks(tmp_path, optimizer, td):
    assert ToyAdapter.grad_masking == "step"  # what the IMP runner gives the enforcer
    step, mask, checked = _train(tmp_path, ToyAdapter.grad_masking, optimizer, td)
    hook, _, _ = _train(tmp_path, "hook", optimizer, td)
    assert checked == 40
    assert all(torch.equal(step[k], hook[k]) for k in step)
    for n, m in mask.items():
        assert torch.count_nonzero(step[n][m]) == int(m.sum()), "live weights must still train"
