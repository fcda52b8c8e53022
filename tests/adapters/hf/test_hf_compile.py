"""``nlp.torch_compile``: training through the Trainer's ``torch.compile`` keeps masks exact,
matches eager training, and a new level's mask compiles nothing new (torch's dynamo counters).

On CPUs the backend is ``aot_eager``: dynamo traces and AOTAutograd splits forward and backward
as with inductor, but no code is generated, so no compiler is needed. On a CUDA machine the same
tests also run inductor with bf16 autocast."""

from __future__ import annotations

import pytest
import torch
from hf_testlib import FakeHooks, make_adapter, pruned_are_zero, random_mask
from torch._dynamo.utils import counters

from multiticket.config import load_task
from multiticket.core import train as train_mod
from multiticket.core.enforce import MaskEnforcer
from multiticket.launch import LaunchOptions, run_tasks
from multiticket.paths import TASKS_DIR

T = 8
SETTINGS = [pytest.param("cpu", "aot_eager", False, id="cpu-aot_eager")]
if torch.cuda.is_available():
    SETTINGS.append(pytest.param("cuda", "inductor", True, id="cuda-inductor-bf16"))


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


class ZeroCheckingHooks(FakeHooks):
    """Records, after every optimizer step, whether every pruned entry is exactly zero."""

    def __init__(self, enforcer: MaskEnforcer, module: torch.nn.Module) -> None:
        super().__init__(enforcer)
        self.module = module
        self.exact: list[bool] = []

    def on_step(self, step: int, logs: dict[str, float] | None = None) -> None:
        super().on_step(step, logs)
        assert self.enforcer is not None
        self.exact.append(pruned_are_zero(self.module, self.enforcer.mask))


@pytest.mark.parametrize(("device", "backend", "bf16"), SETTINGS)
def test_compiled_training_keeps_masks_exact_and_matches_eager(workdir, device, backend, bf16):
    torch._dynamo.reset()
    final: dict[bool, dict[str, torch.Tensor]] = {}
    for compiled in (False, True):
        adapter = make_adapter(
            workdir / f"compiled-{compiled}", "gpt2", device=device, bf16=bf16, torch_compile=compiled,
            torch_compile_backend=backend, logging_steps=1000,
        )  # fmt: skip
        adapter.build(0)
        mask = random_mask(adapter, keep=0.2)
        params = dict(adapter.module.named_parameters())
        enforcer = MaskEnforcer(adapter.module, mask).attach()
        hooks = ZeroCheckingHooks(enforcer, adapter.module)
        graphs = _graphs()
        adapter.train(0, T, hooks)
        enforcer.detach()
        assert (_graphs() > graphs) == compiled  # the compiled run really went through dynamo
        assert hooks.exact == [True] * T
        final[compiled] = {n: p.detach().float().cpu() for n, p in params.items()}
    # same function, same data, same init: the weights agree to float rounding (per tensor). Under
    # bf16 the fused kernels round differently, and AdamW turns that into whole-step differences on
    # entries with near-zero gradients: a zero-init LayerNorm bias differed by 23 % of its norm on
    # an H200, the embedding by 2.1 %; so bf16 compares all weights at once, against 10 %
    # (stale weights or a dropped update would differ by about 100 %)
    if bf16:
        eager = torch.cat([t.flatten() for t in final[False].values()])
        diff = (torch.cat([t.flatten() for t in final[True].values()]) - eager).norm() / eager.norm()
        assert diff < 0.1, f"all weights: relative difference {diff:.2e}"
        return
    for n, eager in final[False].items():
        diff = (final[True][n] - eager).norm() / eager.norm().clamp_min(1e-12)
        assert diff < 1e-4, f"{n}: relative difference {diff:.2e}"


@pytest.mark.parametrize(("device", "backend", "bf16"), SETTINGS)
def test_new_level_masks_compile_nothing_new(tmp_path, monkeypatch, device, backend, bf16):
    """Three IMP levels with a random-mask control: every unit builds a new model and a new mask,
    yet only the dense unit compiles graphs; the runner itself checks the pruned entries."""
    torch._dynamo.reset()
    task = load_task(
        TASKS_DIR / "austen-gpt2.yaml",
        [
            "train.steps=8", "rewind.step=2", "controls=[random_mask]", "nlp.max_eval_examples=8",
            "nlp.model_args={n_embd: 32, n_layer: 1, n_head: 2}", "nlp.max_length=24", "nlp.vocab_size=300",
            "nlp.batch_size=8", "nlp.max_train_examples=160", "nlp.logging_steps=4", "nlp.torch_compile=true",
            f"nlp.torch_compile_backend={backend}", f"nlp.bf16={str(bf16).lower()}",
        ],
        seeds=[0],
        levels=3,
    )  # fmt: skip
    compiled: dict[tuple[str, int], int] = {}
    train_unit = train_mod.train_unit

    def counting(adapter, job, *args, **kwargs):
        before = _graphs()
        out = train_unit(adapter, job, *args, **kwargs)
        compiled[(job.unit.control, job.unit.level)] = _graphs() - before
        return out

    monkeypatch.setattr(train_mod, "train_unit", counting)
    run_tasks([task], tmp_path, LaunchOptions(workers=1, device=device))
    assert compiled.pop(("ticket", 0)) > 0
    assert sorted(compiled) == [(c, lv) for c in ("random_mask", "ticket") for lv in (1, 2, 3)]
    assert set(compiled.values()) == {0}, compiled
