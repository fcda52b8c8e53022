"""scripts/bench_e2e.py end to end at a tiny budget, through bench.py's runner: the per-phase
table's structure and that both sides did the same work (no timings asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def test_e2e_table_structure() -> None:
    pytest.importorskip("stable_baselines3")
    domains = "rl,nlp" if _has("transformers") else "rl"
    sys.path.insert(0, str(SCRIPTS))
    try:
        from bench import bench_e2e
        from bench_e2e import PHASES
    finally:
        sys.path.remove(str(SCRIPTS))
    out = bench_e2e(["--domain", domains, "--repeats", "1", "--levels", "1", "--steps", "256", "--nlp-steps", "8",
                     "--set", "rewind.step=25%", "--eval-speedup", "--eval-train-steps", "0"])
    assert "skipped" not in out, out.get("output_tail")
    assert out["rl_whole_run"] > 0 and out["eval_speedup"] > 0
    results = out["results"]
    for domain in domains.split(","):
        res = results[domain]
        assert list(res["phases"]) == [*PHASES, "total"]
        for row in res["phases"].values():
            assert row["multiticket_s_per_step"] >= 0 and row["plain_s_per_step"] >= 0
        assert res["phases"]["train"]["ratio"] > 0 and res["phases"]["total"]["ratio"] > 0
        assert res["units"] == {"multiticket": 2, "plain": 2}  # the dense unit and one level, both sides
        assert min(res["steps"].values()) >= (256 if domain == "rl" else 8)
        assert len(res["paired_total_ratios"]) == 1
    if "nlp" in domains:
        assert out["nlp_whole_run"] > 0
    speed = results["eval_speedup"]
    assert speed["episodes"] == 10 and set(speed["seconds"]) == {"batched", "sequential"}


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
