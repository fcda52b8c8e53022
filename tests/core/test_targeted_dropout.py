"""Targeted dropout: the targeted set, the drop rate, bit-identity at α = 0, the γ ramp, masks,
and the experiment-mode units (dense_td, prune_dense, prune_dense_td) on the toy adapter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from multiticket.adapters.toy import ToyAdapter, ToySection
from multiticket.cli import main
from multiticket.config import load_task
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.hooks import LevelHooks
from multiticket.core.mask import Mask
from multiticket.core.monitors import DropoutMonitor, MonitorList
from multiticket.core.prune import PruneSpec, planned_alive, prune
from multiticket.core.targeted_dropout import TargetedDropout, TDSpec, candidates, targeted_count
from multiticket.errors import UserError


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 6))


def _random_mask(module: nn.Module, names: list[str], keep: float, seed: int = 0) -> Mask:
    gen = torch.Generator().manual_seed(seed)
    params = dict(module.named_parameters())
    mask = Mask({n: torch.rand(params[n].shape, generator=gen) < keep for n in names})
    MaskEnforcer(module, mask).zero_weights()
    return mask


# -- the targeted set ------------------------------------------------------------------------------


def test_weight_candidates_are_each_rows_smallest_live_weights():
    w = torch.tensor([[0.5, -0.1, 0.3, 0.0, 2.0], [1.0, 2.0, -3.0, 4.0, 5.0]])
    live = torch.tensor([[True, True, True, False, True], [True, True, True, True, True]])
    cand = candidates(w, live, 0.5)
    # row 0: 4 live -> 2 targeted: |-0.1|, |0.3| (the pruned 0.0 is never a candidate);
    # row 1: 5 live -> floor(2.5 + 0.5) = 3 targeted
    assert cand.tolist() == [[False, True, True, False, False], [True, True, True, False, False]]
    assert targeted_count(torch.tensor([4, 5, 1, 0]), 0.5).tolist() == [2, 3, 1, 0]  # half up


def test_unit_candidates_rank_rows_by_norm_and_gpt2_conv1d_columns():
    w = torch.tensor([[3.0, 4.0], [0.1, 0.1], [1.0, 0.0], [0.0, 0.0]])
    live = torch.tensor([[True, True], [True, True], [True, False], [False, False]])
    # 3 live units (the dead row is none): round(0.5 * 3) = 2 lowest-norm units: rows 1 and 2
    cand = candidates(w, live, 0.5, variant="unit")
    assert cand.tolist() == [[False, False], [True, True], [True, False], [False, False]]
    # an [in, out] weight (HF Conv1D): output units are the columns
    assert candidates(w.T, live.T, 0.5, variant="unit", out_dim=1).tolist() == cand.T.tolist()


def test_drops_come_only_from_the_targeted_set_at_rate_alpha():
    """Binomial test at a fixed seed: dropped / targeted ≈ α, dropped / live ≈ α·γ; every dropped
    weight is a candidate, is zero during the forward pass, gets a zero gradient, and is back
    after the backward pass; pruned weights stay exactly zero."""
    model = _mlp()
    names = ["0.weight", "2.weight"]
    mask = _random_mask(model, names, keep=0.7)
    alpha, gamma = 0.3, 0.75
    td = TargetedDropout(model, names, TDSpec(alpha=alpha, gamma=gamma), seed=7, total_steps=100, mask=mask).attach()
    seen: list[torch.Tensor] = []
    model[0].register_forward_hook(lambda mod, inp, out: seen.append(mod.weight.detach().clone()))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(32, 40, generator=torch.Generator().manual_seed(1))
    dropped = targeted = live = 0
    for _ in range(30):
        before = model[0].weight.detach().clone()
        expected = candidates(before, mask["0.weight"], gamma)
        opt.zero_grad()
        out = model(x)
        drop = td._drop["0.weight"].clone()
        assert not bool((drop & ~expected).any()) and torch.equal(td.last_candidates["0.weight"], expected)
        assert bool((seen[-1][drop] == 0).all()) and torch.equal(seen[-1][~drop], before[~drop])
        out.pow(2).mean().backward()
        assert bool((model[0].weight.grad[drop] == 0).all())
        assert torch.equal(model[0].weight.detach(), before) and td.active == []
        opt.step()
        MaskEnforcer(model, mask).zero_weights()
        dropped += int(drop.sum())
        targeted += int(expected.sum())
        live += int(mask["0.weight"].sum())
    sd = math.sqrt(targeted * alpha * (1 - alpha))
    assert abs(dropped - alpha * targeted) < 4 * sd, (dropped, alpha * targeted)
    assert abs(targeted / live - gamma) < 0.01
    assert dropped / live == pytest.approx(alpha * gamma, abs=4 * sd / live + 0.01)
    td.detach()


def test_unit_variant_drops_whole_units():
    model = _mlp()
    td = TargetedDropout(model, ["0.weight"], TDSpec(alpha=0.5, gamma=0.5, variant="unit"), 3, 10).attach()
    model(torch.randn(4, 40))
    drop = td._drop["0.weight"]
    rows = drop.any(1)
    assert bool((drop[rows]).all()) and 0 < int(rows.sum()) <= 32
    assert bool(td.last_candidates["0.weight"][rows].all())
    td.detach()


def test_eval_and_no_grad_forwards_see_full_weights():
    model = _mlp()
    full = model[0].weight.detach().clone()
    td = TargetedDropout(model, ["0.weight"], TDSpec(alpha=1.0, gamma=0.5), 0, 10).attach()
    with torch.no_grad():
        model(torch.randn(2, 40))  # training mode without gradients: samples nothing
    assert td.active == [] and torch.equal(model[0].weight.detach(), full)
    model(torch.randn(2, 40))  # a graph that is never backwarded (PPO's early target_kl stop)
    assert td.active == ["0.weight"] and not torch.equal(model[0].weight.detach(), full)
    model.eval()
    model(torch.randn(2, 40))  # rollouts / evaluation: full weights
    assert td.active == [] and torch.equal(model[0].weight.detach(), full)
    model.train()
    model(torch.randn(2, 40))
    td.detach()  # detaching also puts the weights back
    assert torch.equal(model[0].weight.detach(), full)
    model(torch.randn(2, 40))
    assert td.samples == 2  # no hook left


def test_ramp_follows_its_schedule():
    spec = TDSpec(alpha=0.99, ramp=(0.0, 0.99, 0.2, 0.8))
    assert [spec.gamma_at(s, 100) for s in (0, 20, 50, 80, 100)] == pytest.approx([0, 0, 0.495, 0.99, 0.99])
    with pytest.raises(ValueError):
        TDSpec(ramp=(0.0, 0.5, 0.6, 0.4))


# -- inside a training loop (toy adapter) ----------------------------------------------------------


def _toy(tmp_path: Path, steps: int = 60) -> ToyAdapter:
    section = ToySection(n_train=256, n_test=128, hidden=[24, 16], batch_size=32)
    return ToyAdapter(None, section, tmp_path)


def _train_toy(tmp_path: Path, spec: TDSpec | None, mask: bool = False, steps: int = 60) -> tuple[dict, object]:
    adapter = _toy(tmp_path)
    adapter.build(0)
    names = adapter.default_prunable()
    m = _random_mask(adapter.module, names, keep=0.5) if mask else None
    enforcer = MaskEnforcer(adapter.module, m).attach() if m is not None else None
    hooks = LevelHooks(adapter, enforcer, 0)
    gammas: list[float] = []
    td = None
    if spec is not None:
        td = TargetedDropout(adapter.module, names, spec, seed=5, total_steps=steps, mask=m)
        hooks.monitors = MonitorList([DropoutMonitor(td)])
        original = hooks.on_step

        def on_step(step: int, logs: dict | None = None) -> None:
            original(step, logs)
            gammas.append(td.gamma)

        hooks.on_step = on_step  # type: ignore[method-assign]
    rng = torch.get_rng_state()
    adapter.train(0, steps, hooks)
    if td is not None:
        td.detach()
    if enforcer is not None:
        enforcer.detach()
    rng_used = not torch.equal(rng, torch.get_rng_state())
    return {k: v.clone() for k, v in adapter.module.state_dict().items()}, (td, m, gammas, rng_used)


def test_alpha_zero_is_bit_identical_to_no_targeted_dropout(tmp_path):
    plain, _ = _train_toy(tmp_path, None)
    zero, (td, _, _, _) = _train_toy(tmp_path, TDSpec(alpha=0.0, gamma=0.5))
    assert td.samples > 0 and td.dropped == 0  # the hooks ran at every step ...
    assert all(torch.equal(plain[k], zero[k]) for k in plain)  # ... and changed nothing
    half, (td, _, _, _) = _train_toy(tmp_path, TDSpec(alpha=0.5, gamma=0.5))
    assert td.dropped > 0 and any(not torch.equal(plain[k], half[k]) for k in plain)


def test_pruned_weights_stay_zero_and_ramp_is_followed_in_training(tmp_path):
    weights, (td, mask, gammas, _) = _train_toy(tmp_path, TDSpec(alpha=0.9, ramp=(0.0, 0.99, 0.0, 1.0)), mask=True)
    for n, m in mask.items():
        assert bool((weights[n][~m] == 0).all()), n
    assert gammas == pytest.approx([0.99 * s / 60 for s in range(1, 61)])
    assert td.dropped > 0 and td.active == []


# -- config and experiment mode --------------------------------------------------------------------


def test_config_errors_name_the_field(tmp_path):
    base = ["train.steps=50"]
    with pytest.raises(UserError, match=r"controls: 'prune_dense_td' needs a targeted_dropout section"):
        load_task("tasks/toy-mlp.yaml", [*base, "controls=[prune_dense_td]"])
    with pytest.raises(UserError, match=r"targeted_dropout.apply_to"):
        load_task("tasks/toy-mlp.yaml", [*base, "targeted_dropout.alpha=0.5"])
    with pytest.raises(UserError, match=r"targeted_dropout: .*either gamma"):
        load_task("tasks/toy-mlp.yaml", [*base, "controls=[prune_dense_td]", "targeted_dropout.gamma=0.5",
                                         "targeted_dropout.ramp.gamma_end=0.9"])
    with pytest.raises(UserError, match=r"targeted_dropout.alpha"):
        load_task("tasks/toy-mlp.yaml", [*base, "controls=[prune_dense_td]", "targeted_dropout.alpha=1.5"])
    plain = load_task("tasks/toy-mlp.yaml", base)
    assert "targeted_dropout" not in plain.resolved  # unset: the run hash does not change
    td = load_task("tasks/toy-mlp.yaml", [*base, "controls=[prune_dense_td]", "targeted_dropout.alpha=0.5"])
    assert td.resolved["targeted_dropout"]["apply_to"] == "experiment" and td.hash != plain.hash


def test_experiment_mode_units_and_report(tiny_toy_args, tmp_path):
    args = [*tiny_toy_args, "--levels", "2", "--set", "controls=[one_shot,prune_dense,prune_dense_td]",
            "--set", "targeted_dropout.alpha=0.5", "--set", "prune.rate=0.5"]
    assert main(args) == 0
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    seed = run / "seed_0"
    dense_td = json.loads((seed / "dense_td" / "level_0" / "metrics.json").read_text())
    assert dense_td["sparsity"] == 0 and (seed / "dense_td" / "level_0" / "final_state.json").is_file()
    from safetensors.torch import load_file

    dense_final = load_file(str(seed / "ticket" / "level_0" / "final.safetensors"))
    td_final = load_file(str(seed / "dense_td" / "level_0" / "final.safetensors"))
    assert any(not torch.equal(dense_final[k], td_final[k]) for k in dense_final)
    for level in (1, 2):
        ticket = json.loads((seed / "ticket" / f"level_{level}" / "metrics.json").read_text())
        masks = {}
        for control, source in (("prune_dense", dense_final), ("prune_dense_td", td_final)):
            d = seed / control / f"level_{level}"
            rec = json.loads((d / "metrics.json").read_text())
            assert rec["alive"] == ticket["alive"] and rec["sparsity"] == ticket["sparsity"]
            assert rec["retrained"] is False and rec["train_seconds"] == 0.0
            mask = masks[control] = Mask.load(d / "mask.safetensors")
            final = load_file(str(d / "final.safetensors"))
            # the pruned source weights, untouched otherwise
            for k, v in source.items():
                assert torch.equal(final[k], v * mask[k] if k in mask else v), k
        assert masks["prune_dense"] == Mask.load(seed / "one_shot" / f"level_{level}" / "mask.safetensors")
        sizes = {n: m.numel() for n, m in masks["prune_dense"].items()}
        assert masks["prune_dense_td"].num_alive == planned_alive(sizes, PruneSpec("global_magnitude", 0.5), level)
        # ranked by the TD-trained weights: the lowest-magnitude ones of the whole scope go first
        ones = Mask({n: torch.ones(m.shape, dtype=torch.bool) for n, m in masks["prune_dense"].items()})
        one_level = prune(td_final, ones, PruneSpec("global_magnitude", 0.5))
        assert level > 1 or masks["prune_dense_td"] == one_level
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "Targeted dropout" in html and 'data-control="prune_dense_td"' in html
    summary = (run / "summary.csv").read_text()
    assert ",prune_dense_td,2," in summary and ",dense_td,0," in summary
