"""SIGINT and SIGTERM as one line and exit code 130 / 143, whenever they arrive.

The handlers are installed first thing (``python -m multiticket`` installs them before importing
anything else of multiticket): a signal raises :class:`Interrupted` (a ``KeyboardInterrupt``, so
every ``except BaseException`` / ``finally`` that cleans up, such as the local pool stopping its
workers, runs as for Ctrl-C) and is remembered. A signal can land anywhere, in the middle of a
lazy import too, after which later code may fail in odd ways (a half-initialised module, a
``RecursionError``); so once a signal arrived, whatever exception ends the command is reported as
the interruption. Every write is atomic, so a rerun resumes. Only stdlib imports here.
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
    raise Interrupted(signum)


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
    try:
        yield
    finally:
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


def entry() -> int:
    """The ``multiticket`` command: handlers first, then import and run the CLI."""
    install()
    try:
        from multiticket.cli import main

        return main()
    except BaseException as exc:  # noqa: BLE001 - a signal during the imports above
        code = None if isinstance(exc, SystemExit) else report(lambda line: print(line, file=sys.stderr), exc)
        if code is None:
            raise
        return code
