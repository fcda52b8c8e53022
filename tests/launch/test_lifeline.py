"""A killed driver leaves nothing behind: SIGKILL the driver of a 2-worker run in the middle of
training and no process it started (fork server, workers, resource tracker) is left seconds later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multiticket.launch.lifeline import exit_if_gone
from tests.proctree import alive, descendants

RUN = ["run", "toy-mlp", "--quiet", "--workers", "2", "--seeds", "0,1", "--levels", "2", "--set", "train.steps=3000",
       "--set", "toy.n_train=512", "--set", "toy.n_test=256", "--set", "toy.hidden=[32,16]"]  # fmt: skip


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_sigkill_of_the_driver_leaves_no_process_of_its_run(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "multiticket", *RUN, "--out", str(tmp_path / "runs")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    family: set[int] = set()
    try:
        # fork server, resource tracker and two workers; then let the workers train a while
        deadline = time.monotonic() + 300
        while len(family := descendants(driver.pid)) < 4 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        family = descendants(driver.pid)
        assert driver.poll() is None and len(family) >= 4, family
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 10
        while alive(family) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(family), f"left behind by the killed driver: {sorted(alive(family))}"
    finally:
        for pid in alive(family):  # never leave them to the rest of the suite
            os.kill(pid, signal.SIGKILL)
        if driver.poll() is None:
            driver.kill()


def _exit_status_of_child(driver: int) -> int:
    pid = os.fork()
    if pid == 0:  # the child: a "worker" checking on its driver
        exit_if_gone(driver)
        os._exit(7)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_worker_that_finds_its_driver_gone_exits() -> None:
    """The race the kernel cannot cover: the driver died before the worker was tied to it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert _exit_status_of_child(dead.pid) == 1
    assert _exit_status_of_child(os.getpid()) == 7
