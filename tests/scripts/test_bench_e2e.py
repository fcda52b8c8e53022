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
        total = res["phases"]["total"]
        assert len(total["paired_ratios"]) == 1 and total["judged"] == "too few repeats (1, 3 needed)"
    assert results["machine"]["cpus"] >= 1 and len(results["load_average_end"]) == 3
    if "nlp" in domains:
        assert out["nlp_whole_run"] > 0
    speed = results["eval_speedup"]
    assert speed["episodes"] == 10 and set(speed["seconds"]) == {"batched", "sequential"}


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_ratio_interval_is_a_t_interval_on_log_ratios_and_says_what_it_can_judge() -> None:
    import math

    sys.path.insert(0, str(SCRIPTS))
    try:
        from bench_e2e import ratio_interval
    finally:
        sys.path.remove(str(SCRIPTS))
    # logs 0, ln 1.02, ln 1.04: mean ln 1.02 (about), sd of the logs by hand, t(0.975, 2) = 4.3027
    logs = [0.0, math.log(1.02), math.log(1.04)]
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    res = ratio_interval([1.0, 1.02, 1.04])
    assert res["ratio"] == pytest.approx(math.exp(mean))
    assert res["high"] == pytest.approx(math.exp(mean + 4.302653 * sd / math.sqrt(3)), rel=1e-6)
    assert res["judged"] == "too wide to judge"  # about [0.97, 1.07]: neither side of 1.05
    assert ratio_interval([1.01, 1.012, 1.011, 1.013])["judged"] == "below 1.05x"
    assert ratio_interval([1.10, 1.11, 1.12])["judged"] == "above 1.05x"
    assert ratio_interval([1.0, 1.0])["judged"] == "too few repeats (2, 3 needed)"
