import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)


@pytest.fixture
def tiny_toy_args(tmp_path):
    """CLI arguments of a fast toy run (a few hundred steps per unit)."""
    return ["run", "toy-mlp", "--out", str(tmp_path / "runs"), "--quiet",
            "--set", "train.steps=150", "--set", "toy.n_train=512", "--set", "toy.n_test=256",
            "--set", "toy.hidden=[32,16]"]
