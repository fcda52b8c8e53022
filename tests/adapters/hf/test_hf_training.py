"""Masks stay exact through the HF Trainer (fp32 and bf16 autocast), rewinding restores the
rewind point (times the mask), the LR schedule and the data stream continue from step k."""

from __future__ import annotations

import pytest
import torch
from hf_testlib import DEVICES, FakeHooks, make_adapter, pruned_are_zero, random_mask

from multiticket.core.enforce import MaskEnforcer
from multiticket.core.hooks import LevelHooks
from multiticket.core.rewind import copy_state_dict

T, K = 12, 4


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bf16", [False, True])
def test_pruned_entries_exactly_zero_after_training(workdir, bf16, device):
    adapter = make_adapter(workdir, "bert", device=device, bf16=bf16, weight_decay=0.1)
    adapter.build(0)
    mask = random_mask(adapter, keep=0.2)
    before = {n: p.detach().clone() for n, p in adapter.module.named_parameters() if n in mask}
    dtypes: list[torch.dtype] = []
    linear = next(m for m in adapter.module.modules() if isinstance(m, torch.nn.Linear))
    handle = linear.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    enforcer = MaskEnforcer(adapter.module, mask).attach()
    hooks = FakeHooks(enforcer)
    adapter.train(0, T, hooks)
    handle.remove()
    enforcer.detach()
    assert hooks.steps == list(range(1, T + 1))
    assert pruned_are_zero(adapter.module, mask)
    # the live weights did train, and the parameters themselves stayed fp32
    params = dict(adapter.module.named_parameters())
    assert all(params[n].dtype == torch.float32 for n in mask)
    assert any(not torch.equal(params[n].detach()[m], before[n][m]) for n, m in mask.items())
    assert set(dtypes) == {torch.bfloat16 if bf16 else torch.float32}
    assert adapter.evaluate()["accuracy"] >= 0.0


def test_lstm_and_tied_gpt2_masks_exact(workdir):
    for kind, extra in (("lstm", {}), ("gpt2", {"prune_embeddings": True})):
        adapter = make_adapter(workdir / kind, kind, **extra)
        adapter.build(0)
        names = adapter.default_prunable()
        if kind == "lstm":
            assert names and all(".lstm.weight_" in n for n in names)
        else:
            # tied input/output embedding: one tensor, one mask entry, under its first name
            assert "transformer.wte.weight" in names and "lm_head.weight" not in names
        mask = random_mask(adapter, keep=0.3)
        enforcer = MaskEnforcer(adapter.module, mask).attach()
        adapter.train(0, 6, FakeHooks(enforcer))
        enforcer.detach()
        assert pruned_are_zero(adapter.module, mask)
        if kind == "gpt2":
            model = adapter.module
            assert model.lm_head.weight is model.transformer.wte.weight
            assert bool((model.lm_head.weight.detach()[~mask["transformer.wte.weight"]] == 0).all())
        assert adapter.metric in adapter.evaluate()


def test_level_starts_at_rewind_point_times_mask_and_continues_schedule(workdir):
    adapter = make_adapter(workdir, "bert", warmup_steps=2, lr_scheduler="linear")
    adapter.build(0)
    dense = LevelHooks(adapter, None, 0, captures=[K])
    lrs_dense: list[float] = []
    adapter.train(0, T, _Recorder(dense, lrs_dense))
    point = dense.captured[K]
    assert point.step == K

    mask = random_mask(adapter, keep=0.5)
    adapter.build(0)
    point.restore_weights(adapter.module)
    enforcer = MaskEnforcer(adapter.module, mask).attach()
    point.restore_rng()
    snapshot: dict[str, torch.Tensor] = {}
    hooks = FakeHooks(enforcer, on_first=lambda opts: snapshot.update(copy_state_dict(adapter.module)))
    adapter.train(K, T, hooks)
    enforcer.detach()
    for name, w in point.weights.items():
        expected = w * mask[name] if name in mask else w
        assert torch.equal(snapshot[name], expected), name
    assert hooks.steps == list(range(K + 1, T + 1))
    assert hooks.lrs == lrs_dense[K:]  # the dense run's LR at every step from k on
    assert pruned_are_zero(adapter.module, mask)


def test_resumed_dense_level_replays_the_dense_run_exactly(workdir):
    """Weights, optimizer state and RNG of step k + the data order and schedule from k: training
    k -> T reproduces the dense run's final weights bit for bit (dropout on, CPU)."""
    adapter = make_adapter(workdir, "bert")
    adapter.build(0)
    dense = LevelHooks(adapter, None, 0, captures=[K])
    adapter.train(0, T, dense)
    final = copy_state_dict(adapter.module)
    point = dense.captured[K]
    adapter.build(0)
    point.restore_weights(adapter.module)
    point.restore_rng()
    adapter.train(K, T, LevelHooks(adapter, None, K, restore_from=point))
    resumed = copy_state_dict(adapter.module)
    assert all(torch.equal(final[n], resumed[n]) for n in final)


def test_scheduler_is_advanced_to_the_start_step(workdir):
    adapter = make_adapter(workdir, "bert", warmup_steps=3, lr_scheduler="cosine")
    adapter.build(0)
    lrs = []
    opt = torch.optim.SGD(adapter.module.parameters(), lr=adapter.section.learning_rate)
    full = adapter.make_scheduler(opt, 0, 20)
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        full.step()
    for start in (0, 1, 7, 19):
        opt2 = torch.optim.SGD(adapter.module.parameters(), lr=adapter.section.learning_rate)
        adapter.make_scheduler(opt2, start, 20)
        assert opt2.param_groups[0]["lr"] == lrs[start]


def test_logged_loss_reaches_the_core(workdir):
    adapter = make_adapter(workdir, "bert", logging_steps=3)
    adapter.build(0)
    hooks = FakeHooks()
    adapter.train(0, 7, hooks)
    assert len(hooks.logs) == 2 and all("loss" in log for log in hooks.logs)


class _Recorder:
    """LevelHooks plus the LR after every step."""

    def __init__(self, inner: LevelHooks, lrs: list[float]) -> None:
        self.inner, self.lrs = inner, lrs

    def on_optimizers(self, optimizers):
        self.inner.on_optimizers(optimizers)

    def on_step(self, step, logs=None):
        self.inner.on_step(step, logs)
        self.lrs.append(self.inner.optimizers[0].param_groups[0]["lr"])

    def on_resumable(self, step):
        self.inner.on_resumable(step)


@pytest.mark.parametrize("fused", [True, False])
def test_adamw_kernel_follows_the_section_and_masks_stay_exact(workdir, fused):
    """``nlp.adamw_fused`` (the Trainer's default kernel) or the per-parameter loop of older runs:
    either way pruned entries are exactly 0 after every step, under weight decay."""
    adapter = make_adapter(workdir, "bert", weight_decay=0.1, adamw_fused=fused)
    adapter.build(0)
    mask = random_mask(adapter, keep=0.2)
    enforcer = MaskEnforcer(adapter.module, mask).attach()
    zeros: list[bool] = []

    class Checking(FakeHooks):
        def on_step(self, step: int, logs: dict[str, float] | None = None) -> None:
            super().on_step(step, logs)
            zeros.append(pruned_are_zero(adapter.module, mask))

    adapter.train(0, T, Checking(enforcer))
    enforcer.detach()
    (opt,) = adapter.optimizers()
    assert opt.defaults["fused"] is fused
    assert len(zeros) == T and all(zeros)
