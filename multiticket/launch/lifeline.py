"""Pool processes die with their driver, however it dies (SIGKILL included).

An idle pool worker blocks on its call queue, whose pipe it holds both ends of, and keeps the
fork server's "alive" pipe open, so neither ever sees the driver go: without help they outlive a
killed driver for good (about 275 MB each). Each one therefore asks the kernel to kill it when
its parent dies (Linux ``PR_SET_PDEATHSIG``; elsewhere a thread polls the parent's pid): the fork
server is tied to the driver (:mod:`multiticket.launch.forkserver_lifeline`, which it imports as a
preload), every worker to the process that forked it (the fork server, or the driver under
``spawn``). Then the resource tracker, whose pipe only they held, sees end-of-file and exits.

The kernel's notion of parent is the *thread* that forked: the fork server must be started from
the driver's main thread (as :func:`multiticket.launch.backends.run_local` does).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

#: <linux/prctl.h>
PR_SET_PDEATHSIG = 1


def _set_parent_death_signal(signum: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, signum)``; False where the kernel offers no such call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, signum: int, interval: float = 0.5) -> None:
    """Fallback: a daemon thread that sends ``signum`` to this process once its parent is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signum)

    threading.Thread(target=watch, name="multiticket-lifeline", daemon=True).start()


def tie_to_parent(signum: int = signal.SIGKILL) -> None:
    """Have this process killed by ``signum`` when its parent dies (at once if it already has)."""
    parent = os.getppid()
    if not _set_parent_death_signal(signum):
        _watch_parent(parent, signum)
    if os.getppid() != parent:  # the parent died before the kernel was told
        os.kill(os.getpid(), signum)


def exit_if_gone(pid: int) -> None:
    """End this process at once if process ``pid`` no longer exists (a worker whose driver died
    before the worker was tied to the fork server)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        os._exit(1)
    except PermissionError:
        pass  # exists, owned by someone else
