"""A run directory from someone else runs no code (issue 19): an ``os.system`` pickle payload
planted in every file multiticket reads state from (legacy ``state.pt`` / ``core.pt`` /
``final_state.pt``, the safetensors + JSON state trees, the signed environment pickle of an SB3
checkpoint, the cached tokenizer), with the ``DONE`` checksums recomputed as anyone can, never
runs: ``run``, ``report``, ``status``, ``compare``, ``transfer`` and ``instability`` either give
one line and exit 2, or report the file and recompute what it was for."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from multiticket.cli import main
from multiticket.core.store import sha256
from tests.runsnap import only_run

SETS = ["--set", "train.steps=60", "--set", "rewind.step=5", "--set", "toy.n_train=128", "--set", "toy.n_test=64",
        "--set", "toy.hidden=[8]"]  # fmt: skip
TOY = ["--quiet", "--levels", "1", *SETS, "--set", "controls=[prune_dense]"]


class Payload:
    """Unpickling this runs ``touch MARKER`` (what an attacker's ``__reduce__`` would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def payload_bytes(marker: Path) -> bytes:
    return pickle.dumps({"step": 0, "optimizers": [], "rng": {}, "extra": Payload(marker)})


def plant_legacy(directory: Path, stem: str, marker: Path) -> None:
    """Turn the state tree ``stem`` into a pre-safetensors ``<stem>.pt`` holding the payload."""
    for name in (f"{stem}.safetensors", f"{stem}.json", f"{stem}.pickle"):
        (directory / name).unlink(missing_ok=True)
    torch.save({"step": 0, "optimizers": [], "rng": {}, "extra": Payload(marker)}, directory / f"{stem}.pt")
    redo_done(directory)


def plant_bytes(path: Path, marker: Path, header: bytes = b"") -> None:
    path.write_bytes(header + payload_bytes(marker))
    redo_done(path.parent)


def redo_done(directory: Path) -> None:
    """Recompute ``DONE`` over the files now in the directory (anyone can)."""
    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() and p.name != "DONE")
    record = {"files": {f: sha256(directory / f) for f in files}}
    (directory / "DONE").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("multiticket: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny toy run (rewind points, a prune_dense unit that reads the dense unit's
    final state) with instability results at levels 0 and 1."""
    out = tmp_path_factory.mktemp("toy")
    assert main(["run", "toy-mlp", "--out", str(out), *TOY]) == 0
    run = only_run(out)
    assert main(["instability", str(run), "--levels", "0,1", "--points", "2", "--quiet"]) == 0
    return run


def test_the_payload_is_live(tmp_path: Path) -> None:
    """The planted bytes really run code when unpickled: the tests below could fail."""
    pickle.loads(payload_bytes(tmp_path / "marker"))  # noqa: S301 - the point of the test
    assert (tmp_path / "marker").exists()


# (where, how) -> what the run directory looks like for the command that must read the file
REWIND = "seed_0/rewind/step_5"  # the rewind point k that level 1 starts from
PLANTS: dict[str, tuple[str, Callable[[Path, Path], None]]] = {
    "legacy rewind state.pt": (REWIND, lambda d, m: plant_legacy(d, "state", m)),
    "rewind state.json": (REWIND, lambda d, m: plant_bytes(d / "state.json", m)),
    "rewind state.safetensors": (REWIND, lambda d, m: plant_bytes(d / "state.safetensors", m)),
    "rewind state.pickle (forged signature)": (REWIND, lambda d, m: _plant_pickled_ref(d, m)),
    "legacy final_state.pt": ("seed_0/ticket/level_0", lambda d, m: plant_legacy(d, "final_state", m)),
    "final_state.json": ("seed_0/ticket/level_0", lambda d, m: plant_bytes(d / "final_state.json", m)),
}  # fmt: skip


def _plant_pickled_ref(directory: Path, marker: Path) -> None:
    """A skeleton that points at a signed pickle, and a pickle with a made-up signature."""
    skeleton = json.loads((directory / "state.json").read_text())
    skeleton["tree"]["extra"] = {"$pickled": 0}
    (directory / "state.json").write_text(json.dumps(skeleton))
    plant_bytes(directory / "state.pickle", marker, header=b"multiticket-signed-pickle/1 " + b"0" * 64 + b"\n")


@pytest.mark.parametrize("kind", list(PLANTS))
def test_planted_state_never_runs(kind: str, toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``run`` (and ``instability``, for a rewind point) refuse the file in one line naming it."""
    where, plant = PLANTS[kind]
    run = tmp_path / toy_run.name
    shutil.copytree(toy_run, run)
    marker = tmp_path / "marker"
    plant(run / where, marker)
    if where == REWIND:  # units that start from the rewind point must be recomputed
        shutil.rmtree(run / "seed_0" / "ticket" / "level_1")
        shutil.rmtree(run / "seed_0" / "instability" / "ticket" / "level_0")
    else:  # the prune_dense unit reads the dense unit's final state
        shutil.rmtree(run / "seed_0" / "prune_dense" / "level_1")
    capsys.readouterr()
    assert main(["run", "toy-mlp", "--out", str(tmp_path), *TOY]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert where in line and (("--trust-checkpoints" in line) == ("legacy" in kind)), line
    if where == REWIND:
        assert main(["instability", str(run), "--levels", "0", "--points", "2", "--quiet"]) == 2
        assert where in one_error_line(capsys.readouterr().err)
    assert not marker.exists(), "the payload ran"


def test_reading_commands_never_touch_state(toy_run: Path, tmp_path: Path) -> None:
    """``report``, ``status``, ``compare`` and ``transfer`` (which reads the source's masks) on a
    directory with a payload in every state file."""
    run = tmp_path / toy_run.name
    shutil.copytree(toy_run, run)
    marker = tmp_path / "marker"
    for where, stem in (("seed_0/rewind/step_0", "state"), (REWIND, "state"), ("seed_0/ticket/level_0", "final_state"),
                        ("seed_0/instability/ticket/level_0", "state")):  # fmt: skip
        plant_legacy(run / where, stem, marker)
    plant_bytes(run / "seed_0" / "instability" / "ticket" / "level_1" / "state.json", marker)
    for argv in (["report", str(run)], ["status", str(run)], ["compare", str(run), "--out", str(tmp_path / "cmp")],
                 ["transfer", str(run), "--to", "toy-mlp", "--out", str(tmp_path / "tr"), "--quiet", "--levels", "1",
                  "--controls", "transfer_mask", *SETS]):  # fmt: skip
        assert main(argv) == 0, argv
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("legacy", [True, False])
def test_planted_instability_state_never_runs(
    legacy: bool, toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another number of points re-evaluates the stored path: its state is refused."""
    run = tmp_path / toy_run.name
    shutil.copytree(toy_run, run)
    marker = tmp_path / "marker"
    d = run / "seed_0" / "instability" / "ticket" / "level_1"
    if legacy:
        plant_legacy(d, "state", marker)
    else:
        plant_bytes(d / "state.safetensors", marker)
    capsys.readouterr()
    assert main(["instability", str(run), "--levels", "1", "--points", "3", "--quiet"]) == 2
    assert str(d) in one_error_line(capsys.readouterr().err)
    assert main(["report", str(run)]) == 0
    assert not marker.exists()


def test_legacy_state_loads_and_only_the_flag_unpickles_more(
    toy_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An honest legacy ``state.pt`` (tensors, numpy RNG arrays) loads without any flag; only
    ``--trust-checkpoints`` unpickles what is outside the allowlist (so the payload runs then)."""
    run = tmp_path / toy_run.name
    shutil.copytree(toy_run, run)
    d = run / REWIND
    from multiticket.core.statefile import load_tree

    torch.save(load_tree(d, "state"), d / "state.pt")
    for name in ("state.safetensors", "state.json"):
        (d / name).unlink()
    redo_done(d)
    shutil.rmtree(run / "seed_0" / "ticket" / "level_1")
    assert main(["run", "toy-mlp", "--out", str(tmp_path), *TOY]) == 0
    assert (run / "seed_0" / "ticket" / "level_1" / "DONE").is_file()

    from multiticket.core.legacy import TRUST_ENV

    marker = tmp_path / "marker"
    plant_legacy(d, "state", marker)
    shutil.rmtree(run / "seed_0" / "ticket" / "level_1")
    assert main(["run", "toy-mlp", "--out", str(tmp_path), *TOY]) == 2 and not marker.exists()
    monkeypatch.setenv(TRUST_ENV, "0")  # restored after the test: the flag sets it for this process
    main(["run", "toy-mlp", "--out", str(tmp_path), *TOY, "--trust-checkpoints"])
    assert marker.exists(), "--trust-checkpoints is the old unrestricted load"


def test_planted_checkpoint_restarts_its_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Legacy ``state.pt`` / ``core.pt`` and the signed environment pickle of an SB3 checkpoint:
    each planted one is reported in one line and its unit trains from the start instead."""
    pytest.importorskip("stable_baselines3")
    from tests.core.test_checkpoint import Crash, _crash_after_checkpoints

    args = ["run", "cartpole-ppo", "--quiet", "--levels", "1", "--out", str(tmp_path / "runs"),
            "--set", "train.steps=256", "--set", "rewind.step=64", "--set", "controls=[]",
            "--set", "checkpoint.every=64", "--set", "rl.n_eval_episodes=1", "--set", "rl.tensorboard=false",
            "--set", "rl.overrides={n_envs: 2, n_steps: 32, batch_size: 64, n_epochs: 1}"]  # fmt: skip
    with monkeypatch.context() as m:
        _crash_after_checkpoints(m, {2})
        with pytest.raises(Crash):
            main(args)
    (ckpt,) = (tmp_path / "runs").rglob("checkpoint/step_*")
    assert (ckpt / "state.pickle").is_file(), "an SB3 checkpoint keeps its environments as a signed pickle"
    pristine = tmp_path / "pristine"
    shutil.copytree(ckpt, pristine)
    marker = tmp_path / "marker"
    plants = {
        "state.pickle": lambda: plant_bytes(ckpt / "state.pickle", marker, header=(ckpt / "state.pickle")
                                            .read_bytes().partition(b"\n")[0] + b"\n"),
        "state.pt": lambda: plant_legacy(ckpt, "state", marker),
        "core.pt": lambda: plant_legacy(ckpt, "core", marker),
    }
    for name, plant in plants.items():
        shutil.rmtree(ckpt, ignore_errors=True)
        shutil.copytree(pristine, ckpt)
        plant()
        starts: list[int] = []
        with monkeypatch.context() as m:
            starts = _crash_after_checkpoints(m, set())
            capsys.readouterr()
            assert main(args) == 0, name
        warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line and name in line]
        assert len(warnings) == 1 and "not used" in warnings[0], (name, warnings)
        assert starts[0] == 0, "the unit restarted from the beginning"
        assert not marker.exists(), f"the payload in {name} ran"
        unit = ckpt.parent.parent
        shutil.rmtree(unit)  # train the unit again with the next planted checkpoint


def test_planted_tokenizer_cache_is_never_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A modified cached tokenizer is trained again; one with recomputed checksums that is not a
    tokenizer is one line; neither runs anything."""
    pytest.importorskip("transformers")
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "adapters" / "hf"))
    from hf_testlib import make_adapter

    from multiticket.errors import UserError

    workdir = tmp_path / "run" / "cache"
    first = make_adapter(workdir, "bert")
    first.build(0)
    vocab = first.tokenizer.get_vocab()
    (folder,) = (workdir / "tokenizers").iterdir()
    assert (folder / "DONE").is_file()
    marker = tmp_path / "marker"
    with open(folder / "tokenizer.json", "a") as fh:
        fh.write(" ")  # modified, DONE not updated
    capsys.readouterr()
    second = make_adapter(workdir, "bert")
    second.build(0)
    assert "cached tokenizer fails its checksums" in capsys.readouterr().err
    assert second.tokenizer.get_vocab() == vocab
    plant_bytes(folder / "tokenizer.json", marker)  # a pickle, DONE recomputed
    with pytest.raises(UserError, match="cached tokenizer cannot be read"):
        make_adapter(workdir, "bert").build(0)
    assert not marker.exists()
