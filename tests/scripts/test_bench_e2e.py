"""scripts/bench_e2e.py end to end at a tiny budget, through bench.py's runner (the shared mode,
the default; its NLP case is `expensive`) and directly (the fresh mode): the per-phase table's
structure and that both sides did the same work (no timings asserted; RL: the same networks,
unit by unit); the plain RL side's pruned level and mask; its statistics on hand-made numbers."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
TINY = ["--levels", "1", "--steps", "256", "--nlp-steps", "8", "--set", "rewind.step=25%"]


def _import(name: str) -> Any:
    sys.path.insert(0, str(SCRIPTS))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(SCRIPTS))


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _check_domain(res: dict[str, Any], domain: str, pairs: int) -> None:
    """One domain's table: every phase, both sides' work the same, ``pairs`` paired ratios."""
    phases = _import("bench_e2e").PHASES
    assert list(res["phases"]) == [*phases, "total"]
    for row in res["phases"].values():
        assert row["multiticket_s_per_step"] >= 0 and row["plain_s_per_step"] >= 0
    assert res["phases"]["train"]["ratio"] > 0 and res["phases"]["total"]["ratio"] > 0
    assert res["units"] == {"multiticket": 2, "plain": 2}  # the dense unit and one level, both sides
    assert res["steps"]["multiticket"] == res["steps"]["plain"] >= (256 if domain == "rl" else 8)
    assert len(res["phases"]["total"]["paired_ratios"]) == pairs and len(res["cpu"]["paired_ratios"]) == pairs
    if domain == "rl":  # SB3 rounds learn() up to whole rollouts: at least the planned steps
        assert all(r["env_steps"] >= r["steps"] for r in res["runs"]["plain"])
        # the same work: unit by unit, the plain side trains the networks multiticket trains (bit for
        # bit: the same evaluation mean reward, env steps and sparsity), in every pair
        units = res["per_unit"]
        assert [(u["seed"], u["level"]) for u in units["plain"]] == [(0, 0), (0, 1)]
        assert units["plain"][1]["sparsity"] > 0 and units["plain"][1]["env_steps"] > 0
        assert _import("bench_e2e").same_work(units), units
        assert res["per_unit_repeated"] == {"multiticket": True, "plain": True}


def _check_shared(res: dict[str, Any], domain: str, pairs: int, processes: list[int]) -> None:
    """The shared mode's extras: pairs spread over child processes, start-up from the probes."""
    assert res["mode"] == "shared"
    _check_domain(res, domain, pairs)
    assert res["process_of_pair"] == processes
    # the start-up row comes from the probes (one per side: too few for an interval)
    assert res["phases"]["startup"]["judged"] == "too few repeats (1, 3 needed)"
    for side in ("multiticket", "plain"):
        (probe,) = res["probes"][side]
        assert probe["once"] == pytest.approx(probe["startup"] + probe["first_use"]) and probe["startup"] > 0
        assert probe["warm"]["startup"] == 0.0 and probe["cold"]["steps"] == probe["warm"]["steps"]
        assert all(r["startup"] == probe["once"] for r in res["runs"][side])
    assert len(res["warmups"]) == max(processes) + 1
    assert all(set(w) == {"multiticket", "plain"} for w in res["warmups"])


def test_e2e_shared_mode_table_structure() -> None:
    pytest.importorskip("stable_baselines3")
    bench_e2e = _import("bench").bench_e2e
    out = bench_e2e(
        [
            "--domain",
            "rl",
            "--repeats",
            "3",
            "--per-process",
            "2",
            "--probes",
            "1",
            *TINY,
            "--eval-speedup",
            "--eval-train-steps",
            "0",
        ]
    )
    assert "skipped" not in out, out.get("output_tail")
    assert out["rl_whole_run"] > 0 and out["eval_speedup"] > 0
    results = out["results"]
    _check_shared(results["rl"], "rl", pairs=3, processes=[0, 0, 1])  # 3 pairs, 2 per child process
    assert results["rl"]["phases"]["total"]["low"] is not None  # 3 pairs: an interval
    assert results["machine"]["cpus"] >= 1 and len(results["load_average_end"]) == 3
    speed = results["eval_speedup"]
    assert speed["episodes"] == 10 and set(speed["seconds"]) == {"batched", "sequential"}


@pytest.mark.expensive
def test_e2e_shared_mode_nlp(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    import json

    assert (
        _import("bench_e2e").main(
            [
                "--domain",
                "nlp",
                "--repeats",
                "2",
                "--per-process",
                "1",
                "--probes",
                "1",
                *TINY,
                "--json",
                str(tmp_path / "e2e.json"),
            ]
        )
        == 0
    )
    _check_shared(json.loads((tmp_path / "e2e.json").read_text())["nlp"], "nlp", pairs=2, processes=[0, 1])


def test_e2e_fresh_mode_table_structure(tmp_path: Path) -> None:
    pytest.importorskip("stable_baselines3")
    import json

    domains = "rl,nlp" if _has("transformers") else "rl"
    assert (
        _import("bench_e2e").main(
            ["--mode", "fresh", "--domain", domains, "--repeats", "1", *TINY, "--json", str(tmp_path / "e2e.json")]
        )
        == 0
    )
    results = json.loads((tmp_path / "e2e.json").read_text())
    for domain in domains.split(","):
        res = results[domain]
        assert res["mode"] == "fresh"
        _check_domain(res, domain, pairs=1)
        assert res["phases"]["total"]["judged"] == "too few repeats (1, 3 needed)"
        assert all(r["startup"] > 0 for side in res["runs"].values() for r in side)


def test_plain_rl_pruned_level_trains_the_masked_ticket(tmp_path: Path) -> None:
    """The plain side's level 1: the dense network's smallest trained weights pruned at the task's
    rate, the rest rewound to the step-k snapshot and trained k -> T with the pruned entries
    held at exactly 0 (Adam would move them without the gradient hooks)."""
    pytest.importorskip("stable_baselines3")
    import torch

    from multiticket.adapters.sb3_algos import ALGOS, ROLES, prunable_names

    sides, imp = _import("bench_e2e_sides"), _import("bench_e2e_imp_rl")
    plan = imp.rl_plan(sides.plan("rl", 768, 1, [0], ["rewind.step=256"]))
    assert (plan.rate, plan.layerwise, plan.T, plan.k) == (0.2, False, 768, 256)  # cartpole-ppo: global, 20 %
    chain = imp.Chain(0)
    _, dense, record = imp.rl_unit(plan, chain, tmp_path / "dense.zip")
    assert record["level"] == 0 and record["sparsity"] == 0.0 and dense.num_timesteps == 768
    # multiticket's default scope for PPO: every Linear weight of the policy
    assert list(chain.final) == prunable_names(dense.policy, ALGOS["ppo"], list(ROLES), True)
    final, start = dict(chain.final), chain.snapshot["policy"]
    assert chain.snapshot["step"] == 256
    _, ticket, record = imp.rl_unit(plan, chain, tmp_path / "level.zip")
    mask, params = chain.mask, dict(ticket.policy.named_parameters())
    total = sum(m.numel() for m in mask.values())
    assert total - sum(int(m.sum()) for m in mask.values()) == math.floor(0.2 * total + 0.5)
    assert record["level"] == 1 and record["sparsity"] == pytest.approx(0.2, abs=1 / total)
    assert record["env_steps"] == 512 and ticket.num_timesteps == 768  # trained k -> T (two rollouts: the
    # last update of a run has the linear schedules at 0)
    kept = torch.cat([final[n][m].abs() for n, m in mask.items()])
    pruned = torch.cat([final[n][~m].abs() for n, m in mask.items()])
    assert pruned.max() <= kept.min()  # global magnitude: the smallest trained weights went
    for n, m in mask.items():
        assert bool((start[n][~m] != 0).all())  # the rewound weights there were not 0 ...
        assert bool((params[n].detach()[~m] == 0).all())  # ... and are exactly 0 after training
    # the survivors trained from θ_k (not every layer's: this early, the action head's weights are
    # the smallest, all pruned, so the actor's hidden layers get no gradient; multiticket's too)
    assert any(not torch.equal(params[n].detach()[m], start[n][m]) for n, m in mask.items())


@pytest.mark.parametrize("strategy", ["global_magnitude", "layerwise_magnitude"])
@pytest.mark.parametrize("rate_of", ["remaining", "original"])
def test_magnitude_mask_is_multiticket_prune(strategy: str, rate_of: str) -> None:
    """The plain side's few lines of torch prune exactly as multiticket's ``prune`` (ties included)."""
    import torch

    from multiticket.core.mask import Mask
    from multiticket.core.prune import PruneSpec, prune

    gen = torch.Generator().manual_seed(0)
    weights = {"a.weight": torch.randn(8, 4, generator=gen), "b.weight": torch.randn(3, 8, generator=gen).round()}
    weights["a.weight"][0, :3] = 1.0  # ties within and across parameters
    mask = {n: torch.rand(w.shape, generator=gen) > 0.3 for n, w in weights.items()}
    mine = _import("bench_e2e_imp_rl").magnitude_mask(weights, mask, 0.3, strategy == "layerwise_magnitude", rate_of)
    theirs = prune(weights, Mask(mask), PruneSpec(strategy, 0.3, rate_of))
    assert list(mine) == list(theirs) and all(torch.equal(mine[n], theirs[n]) for n in mine)
    assert all(bool((mine[n] <= mask[n]).all()) for n in mine)  # survivors only: IMP never revives


def test_ratio_interval_is_a_t_interval_on_log_ratios_and_says_what_it_can_judge() -> None:
    ratio_interval = _import("bench_e2e").ratio_interval
    # logs 0, ln 1.02, ln 1.04: mean ln 1.02 (about), sd of the logs by hand, t(0.975, 2) = 4.3027
    logs = [0.0, math.log(1.02), math.log(1.04)]
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    res = ratio_interval([1.0, 1.02, 1.04])
    assert res["ratio"] == pytest.approx(math.exp(mean))
    assert res["log_sd"] == pytest.approx(sd)
    assert res["high"] == pytest.approx(math.exp(mean + 4.302653 * sd / math.sqrt(3)), rel=1e-6)
    assert res["judged"] == "too wide to judge"  # about [0.97, 1.07]: neither side of 1.05
    assert ratio_interval([1.01, 1.012, 1.011, 1.013])["judged"] == "below 1.05x"
    assert ratio_interval([1.10, 1.11, 1.12])["judged"] == "above 1.05x"
    # narrow enough (under 5 % wide) but straddling 1.05
    assert ratio_interval([1.04, 1.05, 1.06])["judged"] == "includes 1.05x"
    assert ratio_interval([1.0, 1.0])["judged"] == "too few repeats (2, 3 needed)"
    assert ratio_interval([1.0, 1.0])["log_sd"] == 0.0 and ratio_interval([1.2])["log_sd"] is None


def test_compare_pairs_per_step_ratios_and_takes_startup_from_the_probes() -> None:
    bench = _import("bench_e2e")

    def run(startup: float, train: float, steps: int = 100, cpu: float = 1.0) -> dict[str, Any]:
        return {
            "startup": startup,
            "build": 1.0,
            "train": train,
            "evaluate": 1.0,
            "write": 0.0,
            "steps": steps,
            "units": 2,
            "cpu": cpu,
        }

    runs = {"multiticket": [run(2.0, 10.0, cpu=2.0), run(2.0, 12.0, cpu=3.0)], "plain": [run(2.0, 8.0), run(2.0, 12.0)]}
    probes = {"multiticket": [{"startup": 3.0, "steps": 100}], "plain": [{"startup": 2.0, "steps": 100}]}
    out = bench.compare(runs, probes)
    train = out["phases"]["train"]
    assert train["paired_ratios"] == pytest.approx([1.25, 1.0])
    assert train["ratio"] == pytest.approx(math.sqrt(1.25))  # geometric mean of the pairs
    assert train["multiticket_s_per_step"] == pytest.approx(0.11) and train["plain_s_per_step"] == pytest.approx(0.10)
    assert out["phases"]["startup"]["paired_ratios"] == pytest.approx([1.5])  # the probes, not the runs
    assert out["phases"]["total"]["paired_ratios"] == pytest.approx([14 / 12, 1.0])
    assert out["phases"]["write"]["paired_ratios"] == []  # plain's 0 s: no ratio
    assert out["cpu"]["paired_ratios"] == pytest.approx([2.0, 3.0])
    assert out["steps"] == {"multiticket": 100, "plain": 100}


def test_same_work_compares_units_in_any_order() -> None:
    same_work = _import("bench_e2e").same_work

    def unit(seed: int, level: int, value: float, steps: int = 256) -> dict[str, Any]:
        return {
            "seed": seed,
            "level": level,
            "metric": "eval_return",
            "eval": value,
            "env_steps": steps,
            "sparsity": 0.2 * level,
        }

    mt = [unit(0, 0, 9.0), unit(0, 1, 8.0), unit(1, 0, 7.0)]
    assert same_work({"multiticket": mt, "plain": [unit(0, 0, 9.0), unit(1, 0, 7.0), unit(0, 1, 8.0)]})
    assert not same_work({"multiticket": mt, "plain": [unit(0, 0, 9.0), unit(1, 0, 7.0), unit(0, 1, 8.5)]})
    assert not same_work({"multiticket": mt, "plain": [unit(0, 0, 9.0), unit(1, 0, 7.0), unit(0, 1, 8.0, 512)]})
    assert same_work({"multiticket": mt, "plain": None}) is None  # the plain NLP side records no units


def test_probe_plan_keeps_twice_the_rewind_step_within_the_budget() -> None:
    pytest.importorskip("stable_baselines3")
    bench = _import("bench_e2e")
    sides = _import("bench_e2e_sides")
    full = sides.plan("rl", 50000, 1, [0], [])  # cartpole-ppo rewinds to env step 2048
    assert full["units"] == [[0, 50000], [0, 47952]]
    assert bench.probe_plan(full, 4096)["units"] == [[0, 4096], [0, 2048]]
    assert bench.probe_plan(full, 1000)["units"] == [[0, 4096], [0, 2048]]  # at least 2k
    small = sides.plan("rl", 3000, 1, [0], [])
    assert bench.probe_plan(small, 4096)["units"] == small["units"]  # at most the full budget
    assert "train.steps=4096" in bench.probe_plan(full, 4096)["overrides"]
