"""Instability analysis: exact endpoints at α = 0 and 1, the barrier's sign conventions, storage,
resume, re-evaluation with other points, and the report's barrier plot (toy adapter)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from multiticket.analysis.stats import fmt
from multiticket.cli import main
from multiticket.core.instability import alphas, error_barrier, interpolate
from multiticket.core.mask import Mask
from multiticket.core.statefile import load_tree

SMALL = ["--set", "train.steps=120", "--set", "toy.n_train=512", "--set", "toy.n_test=256",
         "--set", "toy.hidden=[32,16]", "--set", "rewind.step=6"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_barrier_sign_conventions():
    a = alphas(5)
    assert a[0] == 0.0 and a[-1] == 1.0 and len(a) == 5
    # accuracy (higher is better): endpoints 0.9 and 0.8, dip to 0.5 -> 0.85 - 0.5
    b, lin = error_barrier([0.9, 0.7, 0.5, 0.7, 0.8], a, higher_is_better=True)
    assert b == pytest.approx(0.35) and lin == pytest.approx(0.85 - 0.5)
    # perplexity (lower is better): endpoints 10 and 12, peak 20 -> 20 - 11
    b, lin = error_barrier([10, 15, 20, 14, 12], a, higher_is_better=False)
    assert b == pytest.approx(9.0) and lin == pytest.approx(20 - 11)
    # a straight line: the barrier is half the endpoint gap, the barrier vs the line is 0
    b, lin = error_barrier([1.0, 0.75, 0.5, 0.25, 0.0], a, higher_is_better=True)
    assert b == pytest.approx(0.5) and lin == pytest.approx(0.0, abs=1e-12)


def test_barrier_from_the_endpoints_gap_or_a_bump():
    from multiticket.analysis.instability import _source, barrier_parts

    a = alphas(5)
    # RL-like: a monotone path between two different endpoints: all barrier, no bump
    values = [200.0, 180.0, 150.0, 120.0, 90.0]
    b, lin = error_barrier(values, a, higher_is_better=True)
    gap, bump = barrier_parts({"values": values, "barrier": b})
    assert b == pytest.approx(55.0) and lin <= 1e-12 and gap == pytest.approx(55.0) and bump == 0.0
    assert _source(gap, bump, b) == "endpoints' gap only"
    # equal endpoints and a dip: all bump
    values = [0.9, 0.6, 0.5, 0.6, 0.9]
    b, _ = error_barrier(values, a, higher_is_better=True)
    assert barrier_parts({"values": values, "barrier": b}) == (0.0, pytest.approx(0.4))
    assert _source(0.0, 0.4, b) == "bump along the path"
    assert _source(0.05, 0.2, 0.25) == "gap 0.05 + bump 0.2"


def test_interpolation_is_exact_at_the_ends():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(50, generator=g), "n": torch.tensor([3])}
    b = {"w": torch.randn(50, generator=g) * 1e3, "n": torch.tensor([3])}
    assert torch.equal(interpolate(a, b, 0.0)["w"], a["w"])
    assert torch.equal(interpolate(a, b, 1.0)["w"], b["w"])
    assert torch.equal(interpolate(a, b, 0.5)["n"], a["n"])


def test_instability_endpoints_storage_resume_and_report(tmp_path):
    from multiticket.adapters.toy import ToyAdapter
    from multiticket.launch.jobs import task_from_resolved
    from multiticket.rundir import read_run_config

    assert main(["run", "toy-mlp", "--out", str(tmp_path), "--quiet", "--levels", "1", *SMALL]) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    args = ["instability", str(run), "--levels", "0,1", "--controls", "ticket,random_reinit", "--points", "5",
            "--quiet"]
    assert main(args) == 0
    task = task_from_resolved(read_run_config(run).data, run / "config.yaml")
    adapter = ToyAdapter(task.config, task.section, tmp_path / "cache")
    units = {"ticket/level_0", "ticket/level_1", "random_reinit/level_1"}
    for unit in units:
        d = run / "seed_0" / "instability" / unit
        assert (d / "DONE").is_file()
        record = json.loads((d / "instability.json").read_text())
        assert record["points"] == 5 and record["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0]
        # α = 0 and α = 1 are the two endpoints: evaluating the stored endpoints alone gives the same
        for i, name in enumerate(("endpoint_1.safetensors", "endpoint_2.safetensors")):
            adapter.build(0)
            adapter.module.load_state_dict(load_file(str(d / name)))
            assert adapter.evaluate()["accuracy"] == record["values"][0 if i == 0 else -1], (unit, name)
        e1, e2 = (load_file(str(d / n)) for n in ("endpoint_1.safetensors", "endpoint_2.safetensors"))
        assert any(not torch.equal(e1[k], e2[k]) for k in e1)  # the copies really differ
        assert record["copies"][0]["data_seed"] == 0 and record["copies"][1]["data_seed"] != 0
        assert record["copies"][0]["own_metric"] == record["values"][0]  # toy: one test set for all
        # pruned entries stay exactly zero in both endpoints
        mask = Mask.load(d / "mask.safetensors")
        assert all(bool((e[n][~m] == 0).all()) for e in (e1, e2) for n, m in mask.items())
        assert load_tree(d, "state") == {}  # the toy has no adapter state
        b, _ = error_barrier(record["values"], record["alphas"], True)
        assert record["barrier"] == b
    # copy 1 of the ticket replays the ticket unit itself (same start, same data seed)
    ticket = json.loads((run / "seed_0" / "ticket" / "level_1" / "metrics.json").read_text())
    inst = json.loads((run / "seed_0" / "instability" / "ticket" / "level_1" / "instability.json").read_text())
    assert inst["values"][0] == ticket["metrics"]["accuracy"]
    # a rerun does nothing
    before = _files(run / "seed_0" / "instability")
    assert main(args) == 0
    assert _files(run / "seed_0" / "instability") == before
    # more points: the path is re-evaluated from the stored endpoints (same ends, no training)
    assert main([*args[:-3], "--points", "11", "--quiet"]) == 0
    again = json.loads((run / "seed_0" / "instability" / "ticket" / "level_1" / "instability.json").read_text())
    assert again["points"] == 11 and again["values"][0] == inst["values"][0] and again["values"][-1] == inst["values"][-1]
    assert (run / "seed_0" / "instability" / "ticket" / "level_1" / "endpoint_1.safetensors").read_bytes() == \
        before["ticket/level_1/endpoint_1.safetensors"]
    # the report shows the barrier plot and table
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "Instability (linear mode connectivity)" in html
    assert (run / "plots" / "instability_barrier.png").is_file() and (run / "plots" / "instability_path.png").is_file()
    assert f'data-value="{again["barrier"]!r}"' in html
    # barrier_linear beside the barrier, and where each barrier comes from
    assert "<th>barrier</th><th>barrier_linear (vs line)</th><th>barrier comes from</th>" in html
    assert f"<td class='num'>{fmt(again['barrier_linear'])}</td>" in html
    assert any(s in html for s in ("endpoints&#39; gap only", "bump along the path", "+ bump", "flat path"))


def test_unfinished_unit_is_a_user_error(tmp_path, capsys):
    assert main(["run", "toy-mlp", "--out", str(tmp_path), "--quiet", "--levels", "1", *SMALL]) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert main(["instability", str(run), "--levels", "2", "--quiet"]) == 2
    assert "outside this run's levels" in capsys.readouterr().err
    assert main(["instability", str(run), "--controls", "one_shot", "--quiet"]) == 2
    assert not (run / "seed_0" / "instability").exists()
