"""What a torch run tells its reader (issue 32): a module without ``baselines(args)`` leaves the
degenerate checks "not measured" and the header says how to give them (docs/torch.md,
"Baselines", which shows how); the learning-curve section names ``torch.eval_every``, never
another domain's key. The user module resolves from ``torch.module_dir`` (shared with the RL
domain's ``rl.module_dir``, :mod:`multiticket.adapters.user_code`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from multiticket.adapters.torch import TorchAdapter, TorchSection

ROOT = Path(__file__).resolve().parents[2]
MODULE = "facts_torch_mod"
CODE = """
import torch
def build_model(seed, args): return torch.nn.Linear(4, 2)
def batches(seed, start, args):
    while True:
        yield torch.ones(3, 4), torch.zeros(3, dtype=torch.long)
def loss(model, batch): return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
def evaluate(model, args): return {"accuracy": 1.0}
"""


@pytest.fixture
def adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TorchAdapter:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    (tmp_path / f"{MODULE}.py").write_text(CODE)
    section = TorchSection.model_validate({"module": MODULE}, context={"task_dir": tmp_path, "user_code": True})
    assert section.module_dir == str(tmp_path.resolve())
    made = TorchAdapter(None, section, tmp_path / "cache")
    assert made.user.__file__ == str(tmp_path / f"{MODULE}.py")
    sys.modules.pop(MODULE, None)
    return made


def test_without_baselines_the_header_says_not_measured_and_how(adapter: TorchAdapter) -> None:
    assert adapter.baselines() == {}
    facts = adapter.header_facts()
    assert "not measured" in facts["baselines"] and "docs/torch.md, Baselines" in facts["baselines"]
    docs = (ROOT / "docs" / "torch.md").read_text()
    assert "## Baselines" in docs and "def baselines(args):" in docs and '"not measured"' in docs


def test_the_curve_section_names_the_torch_key(adapter: TorchAdapter) -> None:
    assert TorchAdapter.eval_every_key == "torch.eval_every"
    adapter.build(0)
    facts = adapter.domain_facts(["weight"])
    assert facts.eval_every_key == "torch.eval_every" and "not measured" in facts.header["baselines"]
