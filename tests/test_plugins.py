"""A package outside multiticket registers a criterion, a domain (adapter + task-file section) and a
control through entry points, and ``multiticket run`` uses both: in process and on the local pool.
The report page of the plugin domain's run speaks its terms: the step unit, header rows, layer roles
and evaluation key its adapter declared, recorded in provenance.json, and no other domain's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.plugin_pkg import write_plugin

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""An external multiticket plugin: a least-squares 'vision' domain and a positional criterion."""
import torch
from torch import nn

from multiticket.core.adapter import DomainAdapter
from multiticket.core.controls import ControlSpec
from multiticket.core.criteria.base import Criterion
from multiticket.schema import Strict


def _first_entries_first(init, final):
    return torch.arange(final.numel(), dtype=torch.float32)  # prunes the scope's first live entries


CRITERION = Criterion("first_entries", _first_entries_first, needs_init=False, doc="prune by position")
SPEC = ControlSpec("scattered_rewound", "random_global", "rewind", "random positions at the total count, from k")


class VisionSection(Strict):
    width: int = 6
    lr: float = 0.05
    eval_every: int | None = None


def _role(name):
    return {"0.weight": "stem", "2.weight": "readout"}.get(name)


class VisionAdapter(DomainAdapter):
    domain = "vision"
    Section = VisionSection
    curve_logs = ("loss",)
    step_unit = "image batches"
    eval_every_key = "vision.eval_every"
    worker_base_bytes = 123 << 20
    layer_role = staticmethod(_role)

    def header_facts(self):
        return {"backbone": f"two-layer MLP of width {self.section.width}"}

    def identity(self):
        return f"MLP-{self.section.width}"

    metric = property(lambda self: "neg_mse")
    higher_is_better = property(lambda self: True)

    def build(self, seed, init_seed=None):
        torch.manual_seed(seed if init_seed is None else init_seed)
        w = self.section.width
        self.model = nn.Sequential(nn.Linear(4, w), nn.Tanh(), nn.Linear(w, 1))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=self.section.lr)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x.sum(1, keepdim=True)

    @property
    def module(self):
        return self.model

    def default_prunable(self):
        return [n for n, p in self.model.named_parameters() if n.endswith("weight")]

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
'''

TASK = """
name: plug
domain: vision
seeds: [0, 1]
train: {steps: 20}
prune: {criterion: first_entries, rate: 0.5, levels: 2}
controls: [random_reinit, scattered_rewound]
vision: {width: 6}
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A directory holding the plugin module and its dist-info (entry points), as pip would install it."""
    return write_plugin(tmp_path_factory.mktemp("plugin"), "mt_vision", PLUGIN, {
        "multiticket.adapters": {"vision": "VisionAdapter"},
        "multiticket.criteria": {"first_entries": "CRITERION"},
        "multiticket.controls": {"scattered_rewound": "SPEC"},
    })


def _run(plugin: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    task = tmp_path / "plug.yaml"
    task.write_text(TASK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(plugin)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "multiticket", "run", str(task), "--out", str(tmp_path / "runs"),
                           "--quiet", *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_external_domain_and_criterion_run_end_to_end(plugin_path, tmp_path, workers):
    result = _run(plugin_path, tmp_path, "--workers", workers)
    assert result.returncode == 0, result.stderr
    (run,) = list((tmp_path / "runs").iterdir())
    assert run.name.startswith("plug-")
    for seed in (0, 1):
        for control in ("ticket", "random_reinit", "scattered_rewound"):
            assert (run / f"seed_{seed}" / control / "level_2" / "DONE").is_file()
        mask = load_file(str(run / f"seed_{seed}" / "ticket" / "level_1" / "mask.safetensors"))
        flat = [bool(v) for name in ("0.weight", "2.weight") for v in mask[name].reshape(-1).tolist()]
        assert flat == [False] * 15 + [True] * 15  # the plugin criterion pruned the first half of the scope
        record = json.loads((run / f"seed_{seed}" / "ticket" / "level_2" / "metrics.json").read_text())
        assert record["domain"] == "vision" and record["metric"] == "neg_mse"
        plugin = json.loads((run / f"seed_{seed}" / "scattered_rewound" / "level_2" / "metrics.json").read_text())
        assert plugin["role"] == "random"  # derived from its spec's mask and start, recorded for every reader
        _assert_scattered_at_the_tickets_count(run / f"seed_{seed}")
    if workers == "1":
        # the report and compare count the plugin's random control in the verdict
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(plugin_path)])}
        outputs = []
        for args in (["report", str(run)], ["compare", str(run), "--out", str(tmp_path / "cmp")]):
            done = subprocess.run([sys.executable, "-m", "multiticket", *args], env=env, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout)
        assert "winning: too few seeds to judge (2 run, 5 needed" in outputs[0]
        page = (run / "report.html").read_text()
        assert 'scattered_rewound <span class="kind">random control</span>' in page
        assert "random_reinit, scattered_rewound" in page  # the controls the verdict judged against
        _assert_speaks_its_domain(run, page)


def _assert_scattered_at_the_tickets_count(seed_dir: Path) -> None:
    """The plugin control does what its spec says: random positions at the ticket's total count
    (not its per-layer counts, not its positions), pruned weights exactly zero after training."""
    for level in (1, 2):
        ticket = load_file(str(seed_dir / "ticket" / f"level_{level}" / "mask.safetensors"))
        mask = load_file(str(seed_dir / "scattered_rewound" / f"level_{level}" / "mask.safetensors"))
        final = load_file(str(seed_dir / "scattered_rewound" / f"level_{level}" / "final.safetensors"))
        assert sum(int(m.sum()) for m in mask.values()) == sum(int(m.sum()) for m in ticket.values())
        assert any((mask[n] != ticket[n]).any() for n in ticket), "the ticket's own positions"
        for name, keep in mask.items():
            assert (final[name][~keep.bool()] == 0).all(), name


def _assert_speaks_its_domain(run: Path, page: str) -> None:
    """The plugin's declared facts are recorded in provenance.json and are what its page shows."""
    facts = json.loads((run / "provenance.json").read_text())["domain_facts"]
    assert facts == {"step_unit": "image batches", "eval_every_key": "vision.eval_every", "identity": "MLP-6",
                     "header": {"backbone": "two-layer MLP of width 6"},
                     "layer_roles": {"0.weight": "stem", "2.weight": "readout"}, "input_names": None}
    assert "<tr><th>backbone</th><td>two-layer MLP of width 6</td></tr>" in page
    assert "<th>IMP: image batches</th>" in page  # the compute section counts its steps
    assert "<th>stem</th>" in page and "<th>readout</th>" in page  # its layer roles, not input/output
    assert "<th>input</th>" not in page and "<th>output</th>" not in page
    assert "<h2>Learning curves</h2>" in page and "<code>train/loss</code>" in page
    assert "the task sets <code>vision.eval_every</code>" in page  # its own key
    for other in ("rl.", "nlp.", "toy.", "env steps", "optimizer steps", "Input layer(s)"):
        assert other not in page, other


def test_a_misspelled_external_domain_gets_a_hint(plugin_path, tmp_path):
    result = _run(plugin_path, tmp_path, "--set", "domain=visoin")
    assert result.returncode == 2
    assert result.stderr.strip() == ("multiticket: error: --set domain=visoin: domain: unknown domain 'visoin' "
                                     "(did you mean 'vision'?; known: toy, rl, nlp, torch, vision)")
