"""The report reads what a run's domain declared from the run directory (provenance.json's
``domain_facts``), never the domain's name: recorded facts win; a run recorded before them is
shown as the report showed it then (multiticket/core/legacy.py)."""

from __future__ import annotations

import json
from pathlib import Path

from multiticket.analysis.layers import roles
from multiticket.analysis.report import write_report
from multiticket.analysis.rundata import load_run
from multiticket.core.store import RunStore
from multiticket.provenance import PROVENANCE
from tests.analysis.synthetic import NLP_LAYERS, make_run


def _loss_curves(root: Path) -> None:
    """A training-loss curve per unit, no evaluation during training."""
    for metrics in root.glob("seed_*/*/level_*/metrics.json"):
        (metrics.parent / "curve.csv").write_text("step,series,value\n10,train/loss,2.5\n90,train/loss,2.0\n")
        RunStore(root).finish(metrics.parent, ["mask.safetensors", "metrics.json", "curve.csv"])


def _record(root: Path, **facts: object) -> None:
    (root / PROVENANCE).write_text(json.dumps({"commands": ["multiticket run x"], "domain_facts": facts}))


def test_an_old_run_without_facts_renders_as_it_did(tmp_path: Path) -> None:
    root = make_run(tmp_path, domain="nlp", levels=1)
    _loss_curves(root)
    run = load_run(root)
    assert run.facts.layer_roles is None  # not recorded: the legacy table decides
    assert roles(run.ticket_masks()[1][0], run.layer_roles(NLP_LAYERS))["bert.pooler.dense.weight"] == "pooler"
    html = write_report(root).read_text()
    assert "<tr><th>model</th><td>the task&#39;s default (random init)</td></tr>" in html
    assert "<th>attention.query</th>" in html and "<th>ffn.intermediate</th>" in html  # roles by name
    assert "and the steps it trained, in optimizer steps." in html
    assert "the task sets <code>nlp.eval_every</code>" in html
    assert "Input layer(s)" not in html


def test_an_old_rl_run_shows_its_input_dimensions(tmp_path: Path) -> None:
    html = write_report(make_run(tmp_path, domain="rl", levels=2)).read_text()
    assert "Input layer(s)" in html and "obs[2]" in html
    assert "in env steps." in html


def test_a_run_between_the_two_records_takes_the_model_its_adapter_chose(tmp_path: Path) -> None:
    """provenance.json without domain_facts (made before them): the legacy header reads its hyperparameters."""
    root = make_run(tmp_path, domain="nlp", levels=1)
    (root / PROVENANCE).write_text(json.dumps({"commands": [], "hyperparameters": {"model": "gpt2"}}))
    assert load_run(root).facts.header["model"] == "gpt2 (random init)"


def test_recorded_facts_win_over_what_the_domain_name_would_say(tmp_path: Path) -> None:
    root = make_run(tmp_path, domain="nlp", levels=1)
    _loss_curves(root)
    _record(root, step_unit="tokens", eval_every_key="nlp.probe_every", header={"corpus": "wiki"},
            layer_roles={"classifier.weight": "readout"}, input_names=["a", "b", "c"])
    html = write_report(root).read_text()
    assert "<tr><th>corpus</th><td>wiki</td></tr>" in html and "<th>model</th>" not in html
    assert "<th>readout</th>" in html and "<th>attention.query</th>" not in html  # the rest: by position
    assert "and the steps it trained, in tokens." in html and "optimizer steps" not in html
    assert "the task sets <code>nlp.probe_every</code>" in html and "nlp.eval_every" not in html
    assert "Input layer(s)" in html  # input names recorded: the domain reads named input features


def test_a_domain_without_an_eval_key_names_none(tmp_path: Path) -> None:
    root = make_run(tmp_path, domain="nlp", levels=1)
    _loss_curves(root)
    _record(root, layer_roles={})
    html = write_report(root).read_text()
    assert "This run has only the final evaluation." in html and ".eval_every" not in html
    assert "in steps." in html  # the generic unit
