"""SIGINT and SIGTERM as one line and exit code 130 / 143, whenever they arrive.

The handlers are installed first thing (:func:`console`: ``python -m multiticket`` installs them
before importing anything else of multiticket, the ``multiticket`` command right after the light
top of :mod:`multiticket.cli`): a signal raises :class:`Interrupted` (a ``KeyboardInterrupt``, so
every ``except BaseException`` / ``finally`` that cleans up, such as the local pool stopping its
workers, runs as for Ctrl-C) and is remembered. A signal that lands inside an import (torch
imports lazily, e.g. ``numpy.linalg``) is held until the import has finished: raised there it
could leave a half-initialised module (a later ``RecursionError``) or cross a C++ extension's
initialisation (an abort). And once a signal arrived, whatever exception ends the command is
reported as the interruption. Every write is atomic, so a rerun resumes. Only stdlib imports here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

#: the signals turned into one line, with the words used for them
SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)"}

_received: list[int] = []
_reported: list[int] = []


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return type(self), (self.signum,)


def _raise(signum: int, frame: FrameType | None) -> None:
    if _reported:  # the one line is out: end at once, no traceback from the shutdown
        os._exit(exit_code(_received[0]))
    if not _received:
        _received.append(signum)
    if _importing(frame) and hasattr(signal, "setitimer"):
        _defer(signum)
        return
    raise Interrupted(signum)


def _importing(frame: FrameType | None) -> bool:
    """True while the main thread is inside an import: an exception raised there can leave a
    half-initialised module behind (a later ``RecursionError``) or cross a C++ extension's
    initialisation (an abort)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _defer(signum: int, retry_seconds: float = 0.01) -> None:
    """Raise :class:`Interrupted` as soon as the import in progress has finished (polled by
    SIGALRM every ``retry_seconds``)."""

    def retry(_: int, frame: FrameType | None) -> None:
        if _importing(frame):
            signal.setitimer(signal.ITIMER_REAL, retry_seconds)
            return
        raise Interrupted(signum)

    signal.signal(signal.SIGALRM, retry)
    signal.setitimer(signal.ITIMER_REAL, retry_seconds)


def received() -> int | None:
    """The first SIGINT/SIGTERM this process got since :func:`install`, or None."""
    return _received[0] if _received else None


def exit_code(signum: int) -> int:
    return 128 + signum


def install() -> dict[int, Any]:
    """Make SIGINT and SIGTERM raise :class:`Interrupted`; returns the handlers replaced. A no-op
    outside the main thread (Python runs signal handlers there only)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _raise) for sig in SIGNALS}


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """:func:`install` for the block; the previous handlers come back afterwards (the CLI's
    ``main`` may run inside a test process or another program, which then starts afresh)."""
    outermost = signal.getsignal(signal.SIGINT) is not _raise
    if outermost:
        _received.clear()
        _reported.clear()
    previous = install()
    if previous and hasattr(signal, "SIGALRM"):  # used by _defer
        previous[signal.SIGALRM] = signal.getsignal(signal.SIGALRM)
    try:
        yield
    finally:
        if previous and hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if outermost:
            _received.clear()
            _reported.clear()


def report(print_line: Callable[[str], None], exc: BaseException | None = None) -> int | None:
    """If a signal arrived (or ``exc`` is a ``KeyboardInterrupt``, raised where no handler of
    ours runs): print its one line (once per process) and return the exit code; else None."""
    signum = received()
    if signum is None and isinstance(exc, KeyboardInterrupt):
        signum = getattr(exc, "signum", signal.SIGINT)
        _received.append(signum)
    if signum is None:
        return None
    if not _reported:
        _reported.append(signum)
        print_line(f"multiticket: {SIGNALS[signal.Signals(signum)]}; rerun the same command to resume")
    return exit_code(signum)


def console(load_main: Callable[[], Callable[[], int]]) -> int:
    """Run a console command: the handlers first, then ``load_main()`` (which imports the command line
    and returns its ``main``) and the command, a signal anywhere in between reported as one line;
    once the command is over, a signal during the interpreter's shutdown ends the process at once.
    The caller passes the import in (``multiticket.cli.entry``, ``python -m multiticket``), so the
    command line's imports run under the handlers while this module imports nothing of multiticket."""
    install()
    try:
        code = load_main()()
        if received() is not None:  # held during an import that main's last lines ran
            code = report(lambda line: print(line, file=sys.stderr)) or code
    except BaseException as exc:  # noqa: BLE001 - a signal during the imports above
        interrupted = None if isinstance(exc, SystemExit) else report(lambda line: print(line, file=sys.stderr), exc)
        if interrupted is None:
            raise
        code = interrupted
    for sig in SIGNALS:  # the command is over: a signal during the interpreter's shutdown ends it at once
        signal.signal(sig, _after_the_command)
    return code


def _after_the_command(signum: int, frame: FrameType | None) -> None:
    if not _reported:
        os.write(2, f"multiticket: {SIGNALS[signal.Signals(signum)]}\n".encode())
    os._exit(exit_code(signum))
