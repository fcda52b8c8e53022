"""Errors that the CLI turns into one line on stderr and an exit code, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (task file, flag, path, unknown env or model): exit code 2, nothing written.

    The message names the file and/or field it is about, e.g. ``tasks/x.yaml: prune.rate: ...``.
    """

    exit_code = 2


class RunFailure(Exception):
    """A run that started but could not finish (NaN loss, disk full): exit code 1."""

    exit_code = 1
