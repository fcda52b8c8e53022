"""A run extended from itself (issue 32): ``multiticket run RUN_DIR`` (or ``RUN_DIR/config.yaml``)
resumes or extends a run from its own resolved configuration. Extending a finished toy run by a
level trains only the new units and leaves every earlier file byte for byte; a hashed change
makes a new directory and says so; a run made from a dict in the API extends the same way; the
run directory is input from someone else (bounded, validated, one line and exit 2 when bad,
nothing written) and the user code it names is imported only with ``--trust-code``, never from
inside it; ``torch.module_dir`` records where the module really came from."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import multiticket
from multiticket.cli import main
from multiticket.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TASK = {
    "name": "toy-extend", "domain": "toy", "seeds": [0], "train": {"steps": 40}, "rewind": {"step": 4},
    "prune": {"levels": 1}, "controls": ["random_reinit"],
    "toy": {"n_train": 128, "n_test": 128, "hidden": [16], "lr": 0.05},
}
#: files a run rewrites whenever it runs (what ran, and the summary of what finished)
REWRITTEN = {"config.yaml", "provenance.json", "summary.csv"}


def _files(run: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file of a run directory but the lock files."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file() and ".locks" not in p.relative_to(run).parts}


@pytest.fixture
def finished(tmp_path: Path) -> Path:
    """A finished one-level toy run made from a task file."""
    path = tmp_path / "toy-extend.yaml"
    path.write_text(yaml.safe_dump(TASK))
    assert main(["run", str(path), "--out", str(tmp_path / "runs"), "--quiet", "--workers", "1"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    return run


def _units(run: Path) -> set[str]:
    return {str(d.relative_to(run)) for d in run.glob("seed_*/*/level_*") if (d / "DONE").is_file()}


def test_extending_a_finished_run_trains_only_the_new_units(finished: Path, capsys):
    before = _files(finished)
    assert _units(finished) == {"seed_0/ticket/level_0", "seed_0/ticket/level_1", "seed_0/random_reinit/level_1"}
    assert main(["run", str(finished), "--levels", "2", "--quiet", "--workers", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(finished)
    assert [p.name for p in finished.parent.iterdir()] == [finished.name]  # the same run, extended in place
    after = _files(finished)
    assert {k: v for k, v in after.items() if k in before and k not in REWRITTEN} == \
        {k: v for k, v in before.items() if k not in REWRITTEN}  # every earlier file, byte for byte
    assert _units(finished) == {"seed_0/ticket/level_0", "seed_0/ticket/level_1", "seed_0/random_reinit/level_1",
                                "seed_0/ticket/level_2", "seed_0/random_reinit/level_2"}
    # through its config.yaml too, with another seed: only that seed's units train
    assert main(["run", str(finished / "config.yaml"), "--seeds", "1", "--quiet", "--workers", "1"]) == 0
    assert [p.name for p in finished.parent.iterdir()] == [finished.name]
    config = yaml.safe_load((finished / "config.yaml").read_text())
    assert config["seeds"] == [0, 1] and config["prune"]["levels"] == 2
    assert {k: v for k, v in _files(finished).items() if k in after and k not in REWRITTEN} == \
        {k: v for k, v in after.items() if k not in REWRITTEN}
    assert "seed_1/ticket/level_2" in _units(finished)


def test_config_yaml_records_every_setting_without_renaming_the_run(finished: Path):
    config = yaml.safe_load((finished / "config.yaml").read_text())
    assert "criterion" not in config["prune"]  # the hashed part as before: the same run name
    assert config["defaults"]["prune"]["criterion"] == "large_final"  # every default, in its own block
    assert config["defaults"]["rewind"]["mode"] == "weights" and config["defaults"]["early_bird"] is None
    task = multiticket.api.resolve_task(finished)
    assert task.run_name == finished.name


def test_a_hashed_change_makes_a_new_run_directory_and_names_it(finished: Path, capsys):
    before = _files(finished)
    assert main(["run", str(finished), "--set", "prune.criterion=movement", "--quiet", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    runs = sorted(p for p in finished.parent.iterdir())
    (new,) = [p for p in runs if p != finished]
    assert new.name.startswith("toy-extend-") and new.name != finished.name
    assert "changed: prune.criterion=movement" in captured.err and str(new) in captured.err
    assert captured.out.strip().splitlines()[-1] == str(new)
    assert _files(finished) == before  # the original run is left as it is
    assert yaml.safe_load((new / "config.yaml").read_text())["prune"]["criterion"] == "movement"


def test_a_run_made_from_a_dict_extends_from_the_api_and_the_command_line(tmp_path: Path):
    out = tmp_path / "runs"
    run = multiticket.run(TASK, out=out)
    assert run.summary().level.max() == 1
    again = multiticket.run(str(run.path), levels=2)  # out: the run directory's parent
    assert again.path == run.path and again.summary().level.max() == 2
    assert main(["run", str(run.path), "--levels", "2", "--quiet", "--workers", "1"]) == 0  # finished: no work
    assert sorted(p.name for p in out.iterdir()) == [run.path.name]


def test_a_bad_run_directory_is_one_line_and_writes_nothing(finished: Path, tmp_path: Path, capsys):
    config = finished / "config.yaml"
    before, original = _files(finished), config.read_bytes()
    data = yaml.safe_load(original)
    cases = [
        ({**data, "prune": 5}, "config.yaml: prune: Input should be a valid dictionary"),
        ({**data, "train": {"steps": 41}}, "its config.yaml resolves to"),  # edited: not this directory's config
        ({**data, "surprise": 1}, "config.yaml: surprise: unknown key"),
    ]
    for bad, message in cases:
        config.write_text(yaml.safe_dump(bad))
        assert main(["run", str(finished), "--levels", "3", "--quiet"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert message in line, line
    config.write_text("x: [" * 100)
    assert main(["run", str(finished), "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    config.write_bytes(original)
    assert _files(finished) == before and not (finished / "seed_0/ticket/level_3").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", str(empty), "--quiet"]) == 2
    assert "not a run directory (no config.yaml" in capsys.readouterr().err
    renamed = finished.rename(finished.parent / "toy-extend-00000000")
    with pytest.raises(UserError, match=f"resolves to '{finished.name}', not the directory's name"):
        multiticket.run(renamed, levels=2)


# -- user code a run directory names ------------------------------------------------------------

MODULE = """
import pathlib, torch
pathlib.Path({marker!r}).write_text("imported")
def build_model(seed, args): return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
def batches(seed, start, args):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    while True:
        yield x[:16], (x[:16, 0] > 0).long()
def loss(model, batch): return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
def evaluate(model, args): return {{"accuracy": 0.5}}
"""


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "multiticket", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _torch_task(module_dir: Path, marker: Path) -> dict:
    (module_dir / "ext_torch_mod.py").write_text(MODULE.format(marker=str(marker)))
    return {"name": "torch-extend", "domain": "torch", "seeds": [0], "train": {"steps": 6}, "rewind": {"step": 0},
            "prune": {"levels": 1}, "controls": [], "torch": {"module": "ext_torch_mod", "log_every": 2}}


def test_module_dir_records_where_the_module_was_imported_from(tmp_path: Path, monkeypatch):
    """A dict task in a notebook whose working directory is elsewhere: module_dir is the module's
    folder (a folder on sys.path), not the working directory; the run extends with --trust-code only."""
    code, work = tmp_path / "src", tmp_path / "notebook"
    code.mkdir()
    work.mkdir()
    task = _torch_task(code, tmp_path / "imported")
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delitem(sys.modules, "ext_torch_mod", raising=False)
    run = multiticket.run(task, out=tmp_path / "runs")
    assert yaml.safe_load((run.path / "config.yaml").read_text())["torch"]["module_dir"] == str(code.resolve())
    (tmp_path / "imported").unlink()
    with pytest.raises(UserError, match="names user code .ext_torch_mod.*pass trust_code=True"):
        multiticket.run(run.path, levels=2)
    done = _cli(tmp_path, "run", str(run.path), "--levels", "2", "--quiet", "--workers", "1")
    assert done.returncode == 2 and "--trust-code" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "imported").exists() and not (run.path / "seed_0/ticket/level_2").exists()
    done = _cli(tmp_path, "run", str(run.path), "--levels", "2", "--quiet", "--workers", "1", "--trust-code")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "imported").exists() and (run.path / "seed_0/ticket/level_2/DONE").is_file()


def test_trust_code_never_imports_from_inside_the_run_directory(tmp_path: Path):
    """A torch run whose config points module_dir into the run directory, and an RL run whose
    rl.imports names a module the run directory carries (importable by name from inside it)."""
    code = tmp_path / "src"
    code.mkdir()
    task = _torch_task(code, tmp_path / "imported")
    path = code / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    assert main(["run", str(path), "--out", str(tmp_path / "runs"), "--quiet", "--workers", "1"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    (run / "ext_torch_mod.py").write_text(MODULE.format(marker=str(run / "MARKER")))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["torch"]["module_dir"] = str(run.resolve())
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    done = _cli(run, "run", ".", "--levels", "2", "--quiet", "--workers", "1", "--trust-code")
    assert done.returncode == 2 and "inside the run directory" in done.stderr, done.stderr
    assert not (run / "MARKER").exists()

    rl = tmp_path / "rl"
    rl.mkdir()
    rl_task = {"name": "rl-extend", "domain": "rl", "seeds": [0], "train": {"steps": 64}, "prune": {"levels": 1},
               "controls": [], "rl": {"env": "CartPole-v1", "algo": "ppo", "imports": ["ext_evil_mod"]}}
    (rl / "ext_evil_mod.py").write_text("")  # the user's own module, importable from the task's folder only
    from multiticket.config import task_from_data

    resolved = task_from_data(rl_task, rl / "t.yaml", user_code=False)
    run_dir = tmp_path / "rlruns" / resolved.run_name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({**resolved.resolved, "versions": {"python": "3"}}))
    (run_dir / "ext_evil_mod.py").write_text(f"import pathlib\npathlib.Path({str(run_dir / 'MARKER')!r}).write_text('x')\n")
    refused = _cli(run_dir, "run", ".", "--quiet", "--workers", "1")
    assert refused.returncode == 2 and "names user code (ext_evil_mod)" in refused.stderr, refused.stderr
    trusted = _cli(run_dir, "run", ".", "--quiet", "--workers", "1", "--trust-code")
    assert trusted.returncode == 2 and "ext_evil_mod" in trusted.stderr, trusted.stderr
    assert len(trusted.stderr.strip().splitlines()) == 1 and not (run_dir / "MARKER").exists()


def test_a_run_directorys_tracker_is_used_only_with_trust_code(tmp_path: Path):
    """A colleague's run directory names its own tracker (a URI, maybe one that gets a token):
    extending it sends nothing there unless the user trusts it or sets a tracker of their own."""
    from multiticket.api import extend_task

    out = tmp_path / "runs"
    run = multiticket.run({**TASK, "tracking": {"mlflow": str(tmp_path / "theirs")}}, out=out)
    assert extend_task(run.path, levels=2).config.tracking is None
    assert extend_task(run.path, levels=2, trust_code=True).config.tracking is not None
    mine = extend_task(run.path, [f"tracking.mlflow={tmp_path / 'mine'}"], levels=2).config.tracking
    assert mine is not None and str(tmp_path / "mine") in str(mine)
