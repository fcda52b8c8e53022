"""Real storage failures, not simulated ones: a full file system (a small tmpfs), a file-size limit
(``ulimit -f``), ``--out`` naming a file, a unit directory that is a symbolic link. Each is one
line on stderr and exit code 2, leaves no temporary and no unit that looks finished but is not,
and a rerun with the cause fixed ends identical to a clean run."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from multiticket.cli import main
from multiticket.core.store import RunStore
from tests.runsnap import clean_run, only_run, snapshot

TOY = ["run", "toy-mlp", "--quiet", "--levels", "2", "--set", "train.steps=150", "--set", "toy.n_train=512",
       "--set", "toy.n_test=256", "--set", "toy.hidden=[32,16]", "--set", "controls=[random_mask]"]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clean_run(tmp_path_factory.mktemp("reference"), TOY)


def _run(out: Path, limit_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "multiticket", *TOY, "--out", str(out)], env=env, text=True,
                          capture_output=True, preexec_fn=limit, timeout=600)


def _assert_one_line_and_clean(done: subprocess.CompletedProcess[str], words: str, out: Path) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "cannot write" in lines[0] and words in lines[0], lines
    assert str(out) in lines[0], lines  # names the file
    run = only_run(out)
    assert not list(run.rglob("*.tmp")), "a temporary file was left behind"
    for marker in run.rglob("DONE"):
        assert RunStore(run).is_done(marker.parent), marker


def test_full_tmpfs_is_one_line_exit_2_and_a_rerun_with_space_matches_a_clean_run(reference: Path,
                                                                                  tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        done = _run(small)
        _assert_one_line_and_clean(done, "no space left on device", small)
        assert list(only_run(small).rglob("DONE")), "the disk filled up before any unit finished"
        subprocess.run(["mount", "-o", "remount,size=16m", str(small)], check=True)
        again = _run(small)
        assert again.returncode == 0, again.stderr
        assert snapshot(only_run(small)) == snapshot(reference)
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_file_size_limit_is_one_line_exit_2_and_a_rerun_without_it_matches_a_clean_run(reference: Path,
                                                                                      tmp_path: Path) -> None:
    out = tmp_path / "runs"
    done = _run(out, limit_bytes=12 * 1024)  # below the largest file (a rewind point's state.safetensors, ~14 KB)
    _assert_one_line_and_clean(done, "file too large", out)
    again = _run(out)
    assert again.returncode == 0, again.stderr
    assert snapshot(only_run(out)) == snapshot(reference)


def test_out_naming_a_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "results.txt"
    target.write_text("not a directory\n")
    for out in (target, target / "below"):
        assert main([*TOY, "--out", str(out)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and str(target) in lines[0] and "directory" in lines[0], lines
    assert target.read_text() == "not a directory\n"


def test_symlinked_unit_directory_is_refused_in_one_line_and_its_target_left_alone(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    out = tmp_path / "runs"
    run = out / reference.name
    shutil.copytree(reference, run)
    elsewhere = tmp_path / "elsewhere"
    unit = run / "seed_0" / "ticket" / "level_2"
    shutil.move(unit, elsewhere)
    (elsewhere / "DONE").unlink()  # unfinished: a rerun would clear and rewrite it
    unit.symlink_to(elsewhere, target_is_directory=True)
    before = sorted(p.name for p in elsewhere.iterdir())
    assert main([*TOY, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(unit) in lines[0] and "symbolic link" in lines[0], lines
    assert sorted(p.name for p in elsewhere.iterdir()) == before
