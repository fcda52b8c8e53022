"""Tiny toy runs of the context criteria, the allocators and the pruning-at-initialization
baselines: every mask keeps exactly the counting rule's count; a baseline's mask is its criterion's
pruning of the start point; the role 'baseline' is recorded and shown, never judged as random; a
plugin domain, criterion, allocator and baseline through entry points."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from multiticket.adapters.toy import ToyAdapter, ToySection
from multiticket.cli import main
from multiticket.config import load_task
from multiticket.core.controls import CONTROLS, ControlSpec, role_of
from multiticket.core.criteria.probe import adapter_probe
from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, planned_alive, prune_at_init
from multiticket.core.registry import criteria
from multiticket.core.rewind import RewindPoint
from multiticket.errors import UserError
from multiticket.paths import TASKS_DIR
from tests.plugin_pkg import write_plugin

TOY = TASKS_DIR / "toy-mlp.yaml"
ROOT = Path(__file__).resolve().parents[2]
SHAPES = {"0.weight": (16, 8), "2.weight": (8, 16), "4.weight": (4, 8)}
TINY = ["--quiet", "--workers", "1", "--set", "train.steps=40", "--set", "toy.n_train=128", "--set", "toy.n_test=64",
        "--set", "toy.hidden=[16,8]", "--set", "toy.n_features=8"]


def _run(tmp_path: Path, levels: int, *sets: str) -> Path:
    args = ["run", "toy-mlp", "--out", str(tmp_path), "--levels", str(levels), *TINY]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    (run,) = list(tmp_path.iterdir())
    return run


def _spec(criterion: str = "large_final", allocator: str | None = None) -> PruneSpec:
    return PruneSpec(criterion=criterion, allocator=allocator)


@pytest.mark.parametrize(("criterion", "allocator"), [("snip", None), ("grasp", None), ("synflow", None),
                                                      ("lamp", None), ("large_final", "erk"), ("snip", "erk")])
def test_each_new_criterion_and_allocator_runs_at_the_planned_count(tmp_path, criterion, allocator):
    sets = [f"prune.criterion={criterion}", "controls=[one_shot,prune_dense]"]
    sets += [f"prune.allocator={allocator}"] if allocator else []
    run = _run(tmp_path, 3, *sets)
    sizes = {n: s[0] * s[1] for n, s in SHAPES.items()}
    for level in (1, 2, 3):
        for control in ("ticket", "one_shot", "prune_dense"):
            mask = Mask.load(run / "seed_0" / control / f"level_{level}" / "mask.safetensors")
            assert mask.num_alive == planned_alive(sizes, _spec(criterion, allocator), level), (control, level)


def test_every_baseline_prunes_its_start_to_the_tickets_count_and_is_recorded_as_a_baseline(tmp_path):
    run = _run(tmp_path, 2, "controls=[snip_init,grasp_init,synflow_init,random_reinit]", "rewind.step=4")
    for level in (1, 2):
        ticket = Mask.load(run / "seed_0" / "ticket" / f"level_{level}" / "mask.safetensors")
        for control in ("snip_init", "grasp_init", "synflow_init"):
            d = run / "seed_0" / control / f"level_{level}"
            mask = Mask.load(d / "mask.safetensors")
            assert mask.num_alive == ticket.num_alive and mask != ticket, control
            record = json.loads((d / "metrics.json").read_text())
            assert record["role"] == "baseline" and record["start_step"] == 4, control
    # the baseline's mask is its criterion's pruning of the stored rewind point, recomputed here
    adapter = ToyAdapter(load_task(TOY, TINY_SETS).config, ToySection(**TOY_SECTION), tmp_path)
    adapter.build(0)
    start = RewindPoint.load(run / "seed_0" / "rewind" / "step_4")
    dense = Mask({n: torch.ones(s, dtype=torch.bool) for n, s in SHAPES.items()})
    for control, name in (("snip_init", "snip"), ("synflow_init", "synflow")):
        expected = prune_at_init(start.weights, dense, _spec(name), 2, probe=adapter_probe(adapter, 0, criteria[name]))
        assert Mask.load(run / "seed_0" / control / "level_2" / "mask.safetensors") == expected, control


TINY_SETS = ["train.steps=40", "toy.n_train=128", "toy.n_test=64", "toy.hidden=[16,8]", "toy.n_features=8"]
TOY_SECTION = {"n_train": 128, "n_test": 64, "hidden": [16, 8], "n_features": 8}


def test_a_baseline_at_step_zero_with_another_criterion(tmp_path, monkeypatch):
    """A registered pai control rewinding to step 0 (``rewind_to="init"``) prunes θ_0 and trains from 0."""
    spec = ControlSpec("lamp_step0", "pai", "rewind", "θ_0 pruned by LAMP", criterion="lamp", rewind_to="init")
    monkeypatch.setitem(CONTROLS._entries, "lamp_step0", spec)
    assert spec.role == "baseline" and not spec.is_random and not spec.transferable
    run = _run(tmp_path, 2, "controls=[lamp_step0]", "rewind.step=4")
    start = RewindPoint.load(run / "seed_0" / "rewind" / "step_0")
    dense = Mask({n: torch.ones(s, dtype=torch.bool) for n, s in SHAPES.items()})
    for level in (1, 2):
        d = run / "seed_0" / "lamp_step0" / f"level_{level}"
        assert Mask.load(d / "mask.safetensors") == prune_at_init(start.weights, dense, _spec("lamp"), level)
        assert json.loads((d / "metrics.json").read_text())["start_step"] == 0


def test_a_pai_control_needs_a_criterion_and_the_role_reads_back():
    with pytest.raises(ValueError, match="needs a criterion"):
        ControlSpec("x", "pai", "rewind", "doc")
    assert role_of("anything", "baseline") == "baseline" and role_of("snip_init") == "baseline"


def test_the_allocator_key_keeps_run_names_at_its_default():
    base = load_task(TOY).run_name
    assert load_task(TOY, ["prune.allocator=global"]).run_name == base  # the strategy's own: the default
    assert "allocator" not in load_task(TOY).resolved["prune"]
    assert load_task(TOY, ["prune.allocator=erk"]).run_name != base
    layerwise = load_task(TOY, ["prune.strategy=layerwise_magnitude"]).run_name
    assert load_task(TOY, ["prune.strategy=layerwise_magnitude", "prune.allocator=layerwise"]).run_name == layerwise


@pytest.mark.parametrize(("sets", "message"), [
    (["prune.allocator=lamp"], "prune.allocator: 'lamp' is a criterion, not an allocator: set prune.criterion: lamp"),
    (["prune.allocator=erc"], "prune.allocator: unknown allocator 'erc' (did you mean 'erk'?"),
    (["prune.strategy=layerwise_magnitude", "prune.allocator=erk"],
     "prune.allocator: 'erk' contradicts prune.strategy layerwise_magnitude"),
    (["prune.criterion=snip", "controls=[early_bird]"],
     "prune.criterion: 'snip' scores with the model's batches or gradients, which the early-bird search"),
])
def test_allocators_and_model_criteria_that_cannot_apply_are_refused(sets, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_task(TOY, sets)


PLUGIN = '''
"""A plugin: a domain with scoring batches, a context criterion, an allocator and a baseline."""
import torch
from torch import nn

from multiticket.core.adapter import DomainAdapter
from multiticket.core.controls import ControlSpec
from multiticket.core.criteria.allocators import Allocator
from multiticket.core.criteria.base import Criterion
from multiticket.schema import Strict


def _grad_only(ctx, names):  # |g|, from the probe's loss gradient
    probe = ctx.model()
    g = ctx.cached("g", lambda: probe.loss_gradient(ctx.final, ctx.mask, probe.batches()))
    return {n: g[n].abs() for n in names}


CRITERION = Criterion("abs_grad", tensor_score=_grad_only, needs_gradients=True, doc="|g|")
ALLOCATOR = Allocator("last_first", "the budget from the last layer first",
                      split=lambda b: _last_first(b))
SPEC = ControlSpec("abs_grad_init", "pai", "rewind", "θ_k pruned by |g|", criterion="abs_grad")


def _last_first(b):
    out, left = {}, b.n_prune
    for n in reversed(list(b.names)):
        out[n] = min(left, b.alive[n] - 1)
        left -= out[n]
    return out


class LineSection(Strict):
    lr: float = 0.05


class LineAdapter(DomainAdapter):
    domain = "line"
    Section = LineSection
    metric = property(lambda self: "neg_mse")
    higher_is_better = property(lambda self: True)

    def build(self, seed, init_seed=None):
        torch.manual_seed(seed if init_seed is None else init_seed)
        self.model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=self.section.lr)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x.sum(1, keepdim=True)

    @property
    def module(self):
        return self.model

    def default_prunable(self):
        return ["0.weight", "2.weight"]

    def optimizers(self):
        return [self.opt]

    def train(self, start, stop, hooks):
        hooks.on_optimizers([self.opt])
        for step in range(start, stop):
            loss = ((self.model(self.x) - self.y) ** 2).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            hooks.on_step(step + 1, {"loss": float(loss)})

    @torch.no_grad()
    def evaluate(self):
        return {"neg_mse": -float(((self.model(self.x) - self.y) ** 2).mean())}

    def scoring_batches(self, seed, n):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n * 16, 4, generator=g)
        return [(x[i * 16:(i + 1) * 16], x[i * 16:(i + 1) * 16].sum(1, keepdim=True)) for i in range(n)]

    def scoring_loss(self, batch):
        return ((self.model(batch[0]) - batch[1]) ** 2).mean()
'''

TASK = """
name: line
domain: line
seeds: [0]
train: {steps: 20}
prune: {criterion: abs_grad, allocator: last_first, rate: 0.25, levels: 2}
controls: [abs_grad_init, snip_init, grasp_init]
line: {}
"""


def test_a_plugin_domain_criterion_allocator_and_baseline_run_end_to_end(tmp_path):
    root = write_plugin(tmp_path / "plugin", "mt_line", PLUGIN, {
        "multiticket.adapters": {"line": "LineAdapter"}, "multiticket.criteria": {"abs_grad": "CRITERION"},
        "multiticket.allocators": {"last_first": "ALLOCATOR"}, "multiticket.controls": {"abs_grad_init": "SPEC"},
    })
    (tmp_path / "line.yaml").write_text(TASK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(root)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "multiticket", "run", str(tmp_path / "line.yaml"), "--out",
                           str(tmp_path / "runs"), "--quiet", "--workers", "1"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (run,) = list((tmp_path / "runs").iterdir())
    for level, alive in ((1, 24 + 6 - 8), (2, 22 - 6)):  # 30 weights, rate .25: 8 then 6 pruned
        ticket = Mask.load(run / "seed_0" / "ticket" / f"level_{level}" / "mask.safetensors")
        assert ticket.num_alive == alive
        assert ticket.alive_counts()["2.weight"] == 1  # last_first: the last layer pays first, down to one
        for control in ("abs_grad_init", "snip_init", "grasp_init"):
            d = run / "seed_0" / control / f"level_{level}"
            assert Mask.load(d / "mask.safetensors").num_alive == alive, control
            assert json.loads((d / "metrics.json").read_text())["role"] == "baseline"
    report = subprocess.run([sys.executable, "-m", "multiticket", "report", str(run)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert 'snip_init <span class="kind">baseline</span>' in (run / "report.html").read_text()
