"""Sparse export (issue #34): ``multiticket export RUN_DIR --sparse`` / ``Run.export(sparse=True)``
writes an unstructured ticket's pruned Linear / LSTM layers as CSR safetensors for any domain. The
file loads with ``multiticket.core.sparse.load_sparse`` into a freshly built network of the same
architecture and gives the masked network's outputs; layers less sparse than ``--min-sparsity``
stay dense; ``--sparse --compact`` is one line, exit 2, nothing written; a symlink at the output
path is replaced, never written through."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import multiticket
from multiticket import cli
from multiticket.cli import main as cli_main
from multiticket.core import sparse
from multiticket.core.mask import Mask
from multiticket.core.tensorfile import load_tensors
from multiticket.domains import adapter_class
from multiticket.errors import UserError
from multiticket.export import _task
from tests.runsnap import only_run

TOY = {"name": "toy-sparse", "domain": "toy", "seeds": [0], "train": {"steps": 40}, "rewind": {"step": 4},
       "prune": {"levels": 2, "rate": 0.7}, "controls": [],
       "toy": {"n_train": 128, "n_test": 128, "hidden": [32, 16], "lr": 0.05}}


def _make_run(tmp: Path, task: dict[str, Any]) -> Path:
    (tmp / "t.yaml").write_text(yaml.safe_dump(task))
    assert cli_main(["run", str(tmp / "t.yaml"), "--out", str(tmp / "runs"), "--quiet", "--workers", "1"]) == 0
    return only_run(tmp / "runs")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two toy levels at rate 0.7 (global): the hidden layers ~94 % and ~90 % zeros, the output
    layer 50 %."""
    return _make_run(tmp_path_factory.mktemp("toy"), TOY)


@contextmanager
def _fresh(run_dir: Path, tmp: Path) -> Iterator[Any]:
    """An adapter of the run's domain with a freshly built network (seed 0), as export builds it."""
    task = _task(run_dir, trust_code=False)
    adapter = adapter_class(task.config.domain)(task.config, task.section, tmp, "cpu")
    try:
        adapter.build(0)
        yield adapter
    finally:
        adapter.close()


def _masked(module: torch.nn.Module, unit: Path) -> torch.nn.Module:
    module.load_state_dict(load_tensors(unit / "final.safetensors"), strict=True)
    Mask.load(unit / "mask.safetensors").apply_(module)
    return module.eval()


def _zeros(unit: Path) -> dict[str, float]:
    """Layer name -> fraction of its weight the unit's mask prunes."""
    mask = Mask.load(unit / "mask.safetensors")
    return {k.rpartition(".")[0]: 1.0 - float(v.float().mean()) for k, v in mask.items()}


def _load(path: Path, run_dir: Path, tmp: Path) -> tuple[torch.nn.Module, dict[str, str]]:
    """A freshly built network of the run's architecture with the sparse file loaded into it."""
    with _fresh(run_dir, tmp) as adapter, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: sparse CSR support is in beta
        module = adapter.module.eval()
        return module, sparse.load_sparse(module, path)


def test_the_sparse_file_loads_into_a_fresh_toy_mlp_and_gives_the_masked_outputs(
        toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "toy"
    assert cli_main(["export", str(toy_run), "--seed", "0", "--level", "2", "--sparse", "--out", str(out)]) == 0
    path = tmp_path / "toy.safetensors"  # the suffix added
    assert capsys.readouterr().out.strip() == str(path)
    unit = toy_run / "seed_0/ticket/level_2"
    zeros = _zeros(unit)
    loaded, swapped = _load(path, toy_run, tmp_path)
    assert swapped == {name: "csr" for name, z in zeros.items() if z >= sparse.DEFAULT_MIN_SPARSITY} == \
        {"0": "csr", "2": "csr"}
    assert isinstance(loaded.get_submodule("4"), torch.nn.Linear)  # 50 % zeros: dense
    with _fresh(toy_run, tmp_path) as ref_adapter:
        x = ref_adapter.scoring_batches(0, 1)[0][0]
        with torch.no_grad():
            expected = _masked(ref_adapter.module, unit)(x)
            assert torch.allclose(loaded(x), expected, atol=1e-6, rtol=1e-5)


def test_min_sparsity_decides_which_layers_go_sparse_and_the_line_says_so(
        toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for threshold, expected in (("0.92", {"0"}), ("0.4", {"0", "2", "4"}), ("0.99", set())):
        out = tmp_path / f"t{threshold}.safetensors"
        assert cli_main(["export", str(toy_run), "--seed", "0", "--level", "2", "--sparse",
                         "--min-sparsity", threshold, "--out", str(out)]) == 0
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"{len(expected)} layers sparse") and "stored values (dense 1652)" in err
        assert set(sparse.read_sparse(out)) >= {f"{n}.weight" for n in expected}
        layouts = sparse.sparse_state_layouts(sparse.read_sparse(out))
        assert {k.rpartition(".")[0] for k, v in layouts.items() if v != "dense"} == expected


def test_the_python_api_exports_sparse_and_the_summary_counts_stored_values(toy_run: Path, tmp_path: Path) -> None:
    from multiticket.export import export_unit

    run = multiticket.load_run(toy_run)
    assert run.export(0, 2, sparse=True, path=tmp_path / "api") == tmp_path / "api.safetensors"
    done = export_unit(toy_run, 0, 2, sparse=True, out=tmp_path / "unit.safetensors", min_sparsity=0.0)
    s = done.summary
    assert s["sparse_layers"] == {"0": "csr", "2": "csr", "4": "csr"}
    assert s["dense_values"] == 1652 and s["stored_values"] < 0.2 * s["dense_values"]
    with pytest.raises(UserError, match="--sparse"):
        run.export(0, 2, compact=True, sparse=True, path=tmp_path / "x")
    with pytest.raises(UserError, match="min_sparsity: only with sparse"):
        run.export(0, 2, min_sparsity=0.5, path=tmp_path / "y")
    with pytest.raises(UserError, match=r"--min-sparsity: must be in \[0, 1\)"):
        export_unit(toy_run, 0, 2, sparse=True, out=tmp_path / "z", min_sparsity=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.safetensors", "unit.safetensors"]


@pytest.mark.parametrize(("args", "fragment"), [
    (["--sparse", "--compact"], "--sparse and --compact exclude each other"),
    (["--sparse", "--min-sparsity", "1.5"], "--min-sparsity: must be in [0, 1), got 1.5"),
    (["--min-sparsity", "0.5"], "--min-sparsity: only with --sparse"),
    (["--sparse", "--level", "9"], "level_9 is not a finished unit"),
])
def test_bad_sparse_input_is_one_line_and_writes_nothing(toy_run: Path, tmp_path: Path, args: list[str],
                                                         fragment: str, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["export", str(toy_run), "--seed", "0", "--level", "2", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_a_symlink_at_the_output_is_replaced_not_written_through(toy_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(b"not yours")
    link = tmp_path / "ticket.safetensors"
    link.symlink_to(target)
    assert cli_main(["export", str(toy_run), "--seed", "0", "--level", "2", "--sparse", "--out", str(link)]) == 0
    assert target.read_bytes() == b"not yours"
    assert not link.is_symlink() and "0.weight" in sparse.read_sparse(link)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.bin", "ticket.safetensors"]  # no temp left


def test_the_parser_shows_core_sparse_default() -> None:
    assert cli.MIN_SPARSITY_DEFAULT == sparse.DEFAULT_MIN_SPARSITY


def test_a_tiny_bert_ticket_exports_sparse_and_loads_back(tmp_path: Path) -> None:
    """An HF encoder (tied embeddings, LayerNorms, the classifier head) at 90 %: its Linear layers
    go sparse, the rest stays dense, and the fresh model gives the masked model's logits."""
    pytest.importorskip("transformers")
    nlp = {"task": "classification", "dataset": "rotten_tomatoes", "model": "bert",
           "model_args": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                          "intermediate_size": 64},
           "max_train_examples": 160, "max_eval_examples": 16, "max_length": 24, "vocab_size": 300,
           "batch_size": 8, "logging_steps": 4}
    run = _make_run(tmp_path, {"name": "tiny-sparse", "domain": "nlp", "seeds": [0], "train": {"steps": 8},
                               "prune": {"rate": 0.9, "levels": 1}, "rewind": {"step": 2}, "controls": [],
                               "nlp": nlp})
    path = multiticket.load_run(run).export(0, 1, sparse=True, path=tmp_path / "bert.safetensors")
    unit = run / "seed_0/ticket/level_1"
    loaded, swapped = _load(path, run, tmp_path)
    expected_sparse = {n for n, z in _zeros(unit).items() if z >= sparse.DEFAULT_MIN_SPARSITY
                       and isinstance(loaded.get_submodule(n), (torch.nn.Linear, sparse.SparseLinear))}
    assert set(swapped) == expected_sparse and len(swapped) >= 12
    ids = torch.randint(0, 300, (3, 12), generator=torch.Generator().manual_seed(0))
    with _fresh(run, tmp_path) as ref, torch.no_grad():
        expected = _masked(ref.module, unit)(input_ids=ids).logits
        assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-4)


def test_a_ppo_policy_exports_sparse_and_acts_as_the_masked_one(tmp_path: Path) -> None:
    """SB3's module is the policy: its masked hidden layers and heads at 90 % go sparse and the
    fresh policy's action logits and values are the masked policy's."""
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "runs"
    assert cli_main(["run", "cartpole-ppo", "--out", str(out), "--quiet", "--workers", "1", "--levels", "1",
                     "--set", "prune.rate=0.9", "--set", "train.steps=256", "--set", "rewind.step=64",
                     "--set", "controls=[]", "--set", "rl.n_eval_episodes=2", "--set", "rl.tensorboard=false"]) == 0
    run = only_run(out)
    path = multiticket.load_run(run).export(0, 1, sparse=True, min_sparsity=0.5, path=tmp_path / "ppo")
    loaded, swapped = _load(path, run, tmp_path)
    assert {"mlp_extractor.policy_net.0", "mlp_extractor.value_net.2"} <= set(swapped)
    obs = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    with _fresh(run, tmp_path) as ref, torch.no_grad():
        masked = _masked(ref.module, run / "seed_0/ticket/level_1")
        for policy in (masked, loaded):
            policy.set_training_mode(False)
        got, want = (p.get_distribution(obs).distribution.logits for p in (loaded, masked))
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
        assert torch.allclose(loaded.predict_values(obs), masked.predict_values(obs), atol=1e-5, rtol=1e-5)
