"""Pins what a redesign must not change: every shipped task's run-directory name, and the masks and
metrics of a small toy run of every control (random and permuted controls draw from shared
generators, so reordering the draws would change them silently).

Regenerate the pins only on purpose: ``MULTITICKET_REPIN=1 pytest tests/test_pinned_runs.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from multiticket.cli import main
from multiticket.config import load_task
from multiticket.paths import TASKS_DIR
from tests.runsnap import only_run

PINS = Path(__file__).parent / "pinned"
REPIN = os.environ.get("MULTITICKET_REPIN") == "1"
#: toy controls that a plain task runs (transfer_mask needs a transfer run, prune_dense_td a TD section)
PLAIN_CONTROLS = "[random_reinit,random_mask,random_mask_global,permuted_init,permuted_mask,one_shot,rewind_init,early_bird,prune_dense]"
TINY = ["--quiet", "--workers", "1", "--seeds", "0,1", "--levels", "2", "--set", "train.steps=120", "--set", "toy.n_train=256",
        "--set", "toy.n_test=128", "--set", "toy.hidden=[16,8]", "--set", "toy.n_features=8"]


def _check(name: str, actual: dict) -> None:
    path = PINS / f"{name}.json"
    if REPIN or not path.exists():
        path.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
        if not REPIN:
            pytest.fail(f"{path} did not exist and was written; commit it")
    expected = json.loads(path.read_text())
    assert sorted(actual) == sorted(expected), "a different set of units or tasks"
    for key in expected:
        assert actual[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-9) if isinstance(expected[key], float) \
            else actual[key] == expected[key], key


def test_every_shipped_task_keeps_its_run_directory_name():
    names = {p.stem: load_task(p).run_name for p in sorted(TASKS_DIR.glob("*.yaml"))}
    _check("run_names", names)


def _fingerprint(run: Path) -> dict:
    """Per unit: a digest of every mask tensor (exact), and every metric (floats compared to 1e-6)."""
    out: dict = {}
    for unit in sorted(run.glob("seed_*/*/level_*")):
        rel = str(unit.relative_to(run))
        if (unit / "mask.safetensors").exists():
            masks = load_file(str(unit / "mask.safetensors"))
            digest = hashlib.sha256()
            for name in sorted(masks):
                digest.update(name.encode() + np.ascontiguousarray(masks[name].astype(bool)).tobytes())
            out[f"{rel}/mask"] = digest.hexdigest()[:16]
        record = json.loads((unit / "metrics.json").read_text())
        for key, value in sorted(record["metrics"].items()):
            if isinstance(value, int | float):
                out[f"{rel}/{key}"] = float(value)
        out[f"{rel}/sparsity"] = float(record["sparsity"])
    return out


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny toy run of every plain control, one with targeted dropout, one transfer (in this
    process: the module-scoped runs start before the per-test ``--workers auto`` patch)."""
    tmp = tmp_path_factory.mktemp("pinned")
    out = tmp / "runs"
    assert main(["run", "toy-mlp", "--out", str(out), *TINY, "--set", f"controls={PLAIN_CONTROLS}",
                 "--set", "early_bird.interval=10"]) == 0
    source = only_run(out)
    assert main(["run", "toy-mlp", "--out", str(tmp / "td"), *TINY, "--set", "controls=[prune_dense_td]",
                 "--set", "targeted_dropout={gamma: 0.5, alpha: 0.5}"]) == 0
    assert main(["transfer", str(source), "--to", "toy-mlp", "--out", str(tmp / "tr"), "--quiet",
                 "--controls", "transfer_mask,random_mask", "--workers", "1", "--set", "train.steps=120", "--set", "toy.n_train=256",
                 "--set", "toy.n_test=128", "--set", "toy.hidden=[16,8]", "--set", "toy.n_features=8",
                 "--set", "toy.n_classes=3"]) == 0
    return {"controls": source, "td": only_run(tmp / "td"), "transfer": only_run(tmp / "tr")}


def test_every_control_of_a_toy_run_is_pinned(toy_runs):
    fingerprint = {}
    for tag, run in toy_runs.items():
        fingerprint.update({f"{tag}/{k}": v for k, v in _fingerprint(run).items()})
    _check("toy_controls", fingerprint)
