from collections.abc import Callable

from multiticket import interrupts  # first: SIGINT/SIGTERM handlers before any other import


def _cli_main() -> Callable[[], int]:
    """The command line's ``main``, imported under the handlers (a signal then is one line too)."""
    from multiticket.cli import main

    return main


raise SystemExit(interrupts.console(_cli_main))
