import os
import tempfile

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# checkpoints sign what only a pickle holds with a per-user key: the tests use their own
os.environ.setdefault("MULTITICKET_KEY_FILE", os.path.join(tempfile.mkdtemp(prefix="multiticket-test-key-"), "key"))
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _auto_workers_in_process(monkeypatch):
    """``--workers auto`` (the default) resolves to one CPU here, so runs train in the test's
    process as they did before it was the default; pool tests pass ``--workers N``, and
    tests/launch/test_resources.py tests the resolution itself."""
    monkeypatch.setattr("multiticket.launch.driver.allowed_cpus", lambda *a, **k: 1)


@pytest.fixture
def tiny_toy_args(tmp_path):
    """CLI arguments of a fast toy run (a few hundred steps per unit)."""
    return ["run", "toy-mlp", "--out", str(tmp_path / "runs"), "--quiet",
            "--set", "train.steps=150", "--set", "toy.n_train=512", "--set", "toy.n_test=256",
            "--set", "toy.hidden=[32,16]"]
