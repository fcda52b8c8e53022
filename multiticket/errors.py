"""Errors that the CLI turns into one line on stderr and an exit code, never a traceback."""

from __future__ import annotations


class _OneLine(Exception):
    """An error whose message is always one line (user input may contain newlines)."""

    def __init__(self, message: str) -> None:
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


class UserError(_OneLine):
    """Bad input (task file, flag, path, unknown env or model): exit code 2, nothing written.

    The message names the file and/or field it is about, e.g. ``tasks/x.yaml: prune.rate: ...``.
    """

    exit_code = 2


class RunFailure(_OneLine):
    """A run that started but could not finish (NaN loss, disk full): exit code 1."""

    exit_code = 1
