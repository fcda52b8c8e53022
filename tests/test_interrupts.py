"""SIGINT and SIGTERM at several moments of ``multiticket run`` (while it imports torch, while it
trains in this process or in a pool, Ctrl-C to the whole process group): one line on stderr,
exit code 130 / 143, no process left, and a rerun resumes to the result of a clean run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.proctree import alive, descendants
from tests.runsnap import clean_run, only_run, snapshot

TOY = ["run", "toy-mlp", "--quiet", "--levels", "2", "--set", "train.steps=200", "--set", "toy.n_train=512",
       "--set", "toy.n_test=256", "--set", "toy.hidden=[32,16]", "--set", "controls=[random_mask]"]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clean_run(tmp_path_factory.mktemp("reference"), TOY)


def _cmd(out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "multiticket", *TOY, "--out", str(out), "--workers", str(workers)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _handlers_installed(pid: int) -> bool:
    """True once the process catches SIGTERM, i.e. multiticket's handlers are in place."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def _wait(condition, proc: subprocess.Popen, seconds: float = 300) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before the moment to interrupt it"


CASES = {
    # name: (signal, moment, workers, whole process group as a terminal's Ctrl-C does)
    "sigint-importing": (signal.SIGINT, "import", 1, False),
    "sigterm-importing": (signal.SIGTERM, "import", 1, False),
    "sigterm-training": (signal.SIGTERM, "training", 1, False),
    "ctrl-c-pool-training": (signal.SIGINT, "training", 2, True),
}


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc")
@pytest.mark.parametrize("case", list(CASES))
def test_signal_is_one_line_exit_130_143_and_a_rerun_resumes(case: str, reference: Path, tmp_path: Path) -> None:
    signum, moment, workers, group = CASES[case]
    out = tmp_path / "runs"
    proc = subprocess.Popen(_cmd(out, workers), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=group)
    try:
        if moment == "import":  # right after the handlers are in, while torch & co. are imported
            _wait(lambda: _handlers_installed(proc.pid), proc, 60)
            time.sleep(random.Random(case).uniform(0.0, 0.3))
        else:  # a unit has finished: the run is inside or between the next ones
            _wait(lambda: any(out.rglob("DONE")), proc)
        family = descendants(proc.pid)
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0], err
    deadline = time.monotonic() + 10
    while alive(family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(family), f"processes left behind: {alive(family)}"
    again = subprocess.run(_cmd(out, workers), env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert snapshot(only_run(out)) == snapshot(reference)


def test_a_signal_inside_an_import_waits_for_the_import_to_finish(tmp_path: Path) -> None:
    """Raised inside an import, the interrupt could leave a half-initialised module behind (the
    RecursionError once seen when Ctrl-C hit torch's lazy import of numpy.linalg)."""
    (tmp_path / "interrupted_module.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nfor _ in range(200000):\n    pass\nCOMPLETE = True\n"
    )
    script = (
        "import sys, time\nfrom multiticket import interrupts\ninterrupts.install()\n"
        "try:\n    import interrupted_module\n    time.sleep(5)\n    print('not interrupted')\n"
        "except KeyboardInterrupt:\n    print('interrupted after import:', sys.modules['interrupted_module'].COMPLETE)\n"
    )
    env = {**_env(), "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "interrupted after import: True", done.stdout + done.stderr


def test_any_exception_after_a_signal_is_reported_as_the_interruption(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Code that a signal interrupted may fail afterwards in odd ways: still one line, exit 143."""
    import multiticket.cli as cli

    def broken_by_the_signal(args: object) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            raise RecursionError("maximum recursion depth exceeded") from None
        return 0

    monkeypatch.setattr(cli, "cmd_tasks", broken_by_the_signal)
    before = signal.getsignal(signal.SIGTERM)  # another test (Ray's init) may have installed its own
    assert cli.main(["tasks"]) == 143
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["multiticket: terminated (SIGTERM); rerun the same command to resume"]
    assert signal.getsignal(signal.SIGTERM) is before  # the test process gets its handlers back
