"""What an HF run records in provenance.json and shows in the report header: model class, model,
dataset, learning rate, batch size, max length and what the data decided (the number of labels)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hf_testlib import COMMON, TINY

from multiticket.analysis.header import header
from multiticket.analysis.rundata import load_run
from multiticket.cli import main
from multiticket.provenance import PROVENANCE


def test_an_hf_run_records_and_shows_what_ran(tmp_path: Path) -> None:
    task = {"name": "tiny-bert", "domain": "nlp", "seeds": [0], "train": {"steps": 4}, "prune": {"levels": 0},
            "nlp": {**TINY["bert"], **COMMON, "learning_rate": 0.001}}
    path = tmp_path / "bert.yaml"
    path.write_text(yaml.safe_dump(task))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--workers", "1"]) == 0
    (run,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    record = json.loads((run / PROVENANCE).read_text())
    assert record["model_class"] == "transformers.models.bert.modeling_bert.BertForSequenceClassification"
    hyper = record["hyperparameters"]
    assert (hyper["model"], hyper["dataset"], hyper["learning_rate"]) == ("bert", "rotten_tomatoes", 0.001)
    assert (hyper["batch_size"], hyper["max_length"], hyper["num_labels"]) == (8, 24, 2)
    rows = dict(header(load_run(run))["rows"])
    assert rows["model"] == "bert (random init)" and rows["dataset"] == "rotten_tomatoes"
    assert rows["model class"] == record["model_class"]
    assert "learning_rate=0.001" in rows["hyperparameters"] and "num_labels=2" in rows["hyperparameters"]
    assert rows["train steps / rewind step"] == "4 / 0 (rewind mode weights)"
    assert "transformers " in rows["library versions"]
    assert rows["command line"].startswith(f"multiticket run {path} --out ")
