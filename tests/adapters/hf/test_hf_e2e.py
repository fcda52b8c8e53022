"""End to end through the CLI and the core's IMP loop with tiny models: layout, exact sparsity,
exported tickets, and two same-seed runs giving identical masks (CPU)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from hf_testlib import COMMON, TINY
from safetensors.torch import load_file

from multiticket.cli import main
from multiticket.core.mask import Mask


def _task(tmp_path: Path, kind: str, steps: int = 12) -> Path:
    task = {
        "name": f"tiny-{kind}",
        "domain": "nlp",
        "seeds": [0],
        "train": {"steps": steps},
        "prune": {"rate": 0.5, "levels": 2},
        "rewind": {"step": 2},
        "controls": ["random_reinit", "random_mask"],
        "nlp": {**TINY[kind], **COMMON},
    }
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def _masks(run: Path) -> dict[str, Mask]:
    return {str(p.parent.relative_to(run)): Mask.load(p) for p in sorted(run.rglob("mask.safetensors"))}


def test_bert_two_runs_same_masks_and_exact_sparsity(tmp_path):
    task = _task(tmp_path, "bert")
    runs = []
    for out in ("a", "b"):
        assert main(["run", str(task), "--out", str(tmp_path / out), "--quiet"]) == 0
        (run,) = [p for p in (tmp_path / out).iterdir() if p.is_dir()]
        runs.append(run)
    first, second = _masks(runs[0]), _masks(runs[1])
    assert list(first) == list(second) and len(first) == 7  # dense + 2 levels x (ticket + 2 controls)
    assert all(first[k] == second[k] for k in first)
    for level in (1, 2):
        d = runs[0] / "seed_0" / "ticket" / f"level_{level}"
        mask = first[f"seed_0/ticket/level_{level}"]
        assert mask.sparsity == pytest.approx(1 - 0.5**level, abs=1e-3)
        final = load_file(str(d / "final.safetensors"))
        assert all(bool((final[n][~m] == 0).all()) for n, m in mask.items())
        record = json.loads((d / "metrics.json").read_text())
        assert record["metric"] == "accuracy" and "test_accuracy" in record["metrics"]
        assert (d / "hf_model" / "model.safetensors").is_file()
        assert os.path.samefile(d / "hf_model" / "model.safetensors", d / "final.safetensors")  # stored once
    a = json.loads((runs[0] / "seed_0/random_mask/level_2/metrics.json").read_text())["metrics"]
    b = json.loads((runs[1] / "seed_0/random_mask/level_2/metrics.json").read_text())["metrics"]
    assert a == b


def test_lstm_language_model_through_the_loop(tmp_path):
    task = _task(tmp_path, "lstm", steps=8)
    assert main(["run", str(task), "--out", str(tmp_path / "out"), "--quiet", "--levels", "1"]) == 0
    (run,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    record = json.loads((run / "seed_0/ticket/level_1/metrics.json").read_text())
    assert record["metric"] == "perplexity" and record["higher_is_better"] is False
    assert record["metrics"]["perplexity"] > 1 and "test_perplexity" in record["metrics"]
    mask = Mask.load(run / "seed_0/ticket/level_1/mask.safetensors")
    assert all(".lstm.weight_" in n for n in mask)
    assert torch.isfinite(torch.tensor(record["metrics"]["perplexity"]))


def test_bad_nlp_input_exits_2(tmp_path, capsys):
    task = yaml.safe_load(_task(tmp_path, "bert").read_text())
    task["nlp"]["label_column"] = "sentiment"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(task))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("nlp.label_column: column 'sentiment' not in dataset (columns: text, label)")
