"""Errors that the CLI turns into one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import errno
import re


class _OneLine(Exception):
    """An error whose message is always one line (user input may contain newlines)."""

    def __init__(self, message: str) -> None:
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


class UserError(_OneLine):
    """Bad input (task file, flag, path, unknown env or model): exit code 2, nothing written.

    The message names the file and/or field it is about, e.g. ``tasks/x.yaml: prune.rate: ...``.
    """

    exit_code = 2


class UserErrors(UserError):
    """Several errors of bad input found together (:mod:`multiticket.config.collect`): the CLI prints
    each of :attr:`lines` as its own line; ``str()`` joins them for the Python API."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = [_OneLine(line).args[0] for line in lines]
        super().__init__(" | ".join(self.lines))


class RunFailure(_OneLine):
    """A run that started but could not finish (NaN loss, disk full): exit code 1."""

    exit_code = 1


#: storage failures that are the user's to fix, with the words used to report them
STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (file-size limit, e.g. ulimit -f)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "not a directory",
}

#: how Rust's I/O errors (safetensors' ``SafetensorError``) end: "... (os error 28)"
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def storage_errno(exc: BaseException) -> int | None:
    """The errno of a storage failure the user can fix, whether ``exc`` is an ``OSError`` or a
    library's wrapping of one that keeps only the text (safetensors' ``SafetensorError``)."""
    if isinstance(exc, _OneLine):
        return None
    if isinstance(exc, OSError):
        code = exc.errno
    else:
        found = _RUST_OS_ERROR.search(str(exc))
        code = int(found.group(1)) if found else None
    return code if code in STORAGE_ERRNOS else None


def storage_error(exc: BaseException, path: object = None) -> UserError | None:
    """A one-line :class:`UserError` naming the path for a disk-full / quota / file-size /
    read-only / permission failure, or None for any other error. The file named is the one the
    error names, unless that is a temporary (``*.tmp``); else ``path`` (safetensors' errors name
    none). Every write is atomic, so nothing is half-written."""
    code = storage_errno(exc)
    if code is None:
        return None
    filename = getattr(exc, "filename", None)
    if isinstance(filename, str) and filename and not filename.endswith(".tmp"):
        where: object = filename
    else:
        where = path if path is not None else "output directory"
    return UserError(f"{where}: cannot write: {STORAGE_ERRNOS[code]}; fix it and rerun to resume")
