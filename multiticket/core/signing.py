"""Signed pickles: the only pickles multiticket reads back from a run directory.

A run directory may come from someone else, so nothing in it is unpickled unless this user's own
multiticket wrote it. What only a pickle can hold (SB3's vectorised environments inside a mid-level
checkpoint) is stored with an HMAC-SHA256 of its bytes, keyed by a secret that lives outside every
run directory: a per-user key file, created on first use (mode 0600) at ``$MULTITICKET_KEY_FILE``,
by default ``$XDG_CONFIG_HOME/multiticket/checkpoint.key`` (``~/.config/...``). A file whose
signature does not verify under this key is refused before a single byte is unpickled. Nodes that
resume each other's checkpoints (Ray, Slurm) need the same key file (docs/scale.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import pickle
import secrets
import stat
from pathlib import Path
from typing import Any

from multiticket.errors import UserError

KEY_ENV = "MULTITICKET_KEY_FILE"
MAGIC = b"multiticket-signed-pickle/1"
_KEY_BYTES = 32


def key_file() -> Path:
    """Where this user's signing key lives (``$MULTITICKET_KEY_FILE`` or the config directory)."""
    explicit = os.environ.get(KEY_ENV)
    if explicit:
        return Path(explicit).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "multiticket" / "checkpoint.key"


def _create(path: Path) -> None:
    """Write a fresh random key at ``path`` (0600), unless another process got there first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(_KEY_BYTES) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # link, not rename: never replace a key in use
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _create_or_explain(path: Path) -> None:
    """:func:`_create`, with a key location that cannot be written as one line that says so."""
    if path.is_symlink():  # exists() is False for a dangling link
        raise UserError(f"{path}: signing key ({KEY_ENV}) is a symbolic link to nothing; remove it, or point "
                        f"{KEY_ENV} at a key file")
    try:
        _create(path)
    except OSError as exc:
        raise UserError(f"{path}: cannot create the signing key ({exc.strerror or exc}); set {KEY_ENV} to a "
                        "file in a folder you can write") from None


def _check_private(path: Path, info: os.stat_result) -> None:
    """Refuse a key that others could read or write (like ssh with a private key): anyone who can
    read it can sign a checkpoint this user's multiticket would unpickle."""
    if info.st_mode & 0o077:
        raise UserError(f"{path}: signing key ({KEY_ENV}) is accessible by group or others (mode "
                        f"{stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}")


def signing_key() -> bytes:
    """This user's key (created on first use); a one-line error if it is unusable."""
    path = key_file()
    if not path.exists():
        _create_or_explain(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path}: signing key ({KEY_ENV}) is not a regular file")
        _check_private(path, info)
        text = path.read_text().strip()
        key = bytes.fromhex(text)
    except FileNotFoundError:
        raise UserError(f"{path}: signing key ({KEY_ENV}) vanished while being read") from None
    except PermissionError:
        raise UserError(f"{path}: signing key ({KEY_ENV}) cannot be read (permission denied)") from None
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path}: signing key ({KEY_ENV}) is not a hex string; delete it to get a new one") from None
    if len(key) < 16:
        raise UserError(f"{path}: signing key ({KEY_ENV}) is shorter than 16 bytes; delete it to get a new one")
    return key


def _digest(key: bytes, payload: bytes) -> str:
    return hmac.new(key, MAGIC + b"\0" + payload, hashlib.sha256).hexdigest()


def write_signed_pickle(path: Path, obj: Any) -> None:
    """Pickle ``obj`` into ``path``, prefixed by a header line with its HMAC under this user's key."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    header = MAGIC + b" " + _digest(signing_key(), payload).encode() + b"\n"
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(payload)


def read_signed_pickle(path: Path) -> Any:
    """Unpickle ``path`` only if its signature verifies under this user's key; else one line."""
    data = Path(path).read_bytes()
    head, sep, payload = data.partition(b"\n")
    magic, _, digest = head.partition(b" ")
    if not sep or magic != MAGIC or len(digest) != 64:
        raise UserError(f"{path}: not a signed multiticket file; not loaded")
    if not hmac.compare_digest(digest.decode("ascii", "replace"), _digest(signing_key(), payload)):
        raise UserError(
            f"{path}: signature does not match this user's key ({key_file()}); written elsewhere or modified, "
            "not loaded"
        )
    return pickle.loads(payload)  # noqa: S301 - signed by this user's own key just above
