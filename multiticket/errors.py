"""Errors that the CLI turns into one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import errno


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


#: storage failures that are the user's to fix, with the words used to report them
STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def storage_error(exc: BaseException) -> UserError | None:
    """A one-line :class:`UserError` naming the path for a disk-full / read-only / permission
    failure, or None for any other error. Every write is atomic, so nothing is half-written."""
    if not isinstance(exc, OSError) or exc.errno not in STORAGE_ERRNOS:
        return None
    path = exc.filename or "output directory"
    return UserError(f"{path}: cannot write: {STORAGE_ERRNOS[exc.errno]}; fix it and rerun to resume")
