"""The run store: one directory per resolved config, one sub-directory per unit of work.

Layout (the run-directory contract of docs/usage.md; docs/architecture.md follows one unit into it)::

    <out>/<name>-<hash8>/
      config.yaml
      baselines.json        (what trivial predictors score: multiticket.launch.baselines)
      seed_<s>/rewind/step_<k>/{weights.safetensors, state.safetensors, state.json, DONE}
      seed_<s>/<control>/level_<L>/{mask.safetensors, final.safetensors, metrics.json, DONE}
      summary.csv

Locks: the driver of a run holds ``.lock`` (one driver per run directory); every unit is trained
under its own lock file ``.locks/seed_<s>.<control>.level_<L>.lock`` (``fcntl.flock``), so
workers on several processes or nodes write different units concurrently, and a unit that two
processes are asked to run (a duplicated array task) is trained once: the second waits, then
finds it finished.

Every file is written to a temporary name in its own directory, fsynced and renamed, so a crash
or a kill never leaves a truncated file under a final name. A write that fails because the disk
is full, a quota or ``ulimit -f`` is hit, or the directory is read-only or not a directory
becomes one :class:`UserError` naming the file (:func:`storage_errors`), its temporary removed.
Unit directories are never written through a symbolic link. ``DONE`` is written last and holds
the SHA-256 of every artifact of its unit; a unit counts as finished only if its ``DONE`` exists
and every checksum matches, so a corrupt or half-written unit is recomputed, never loaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from multiticket.errors import RunFailure, UserError, storage_error

DONE = "DONE"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def storage_errors(path: Path | str) -> Iterator[None]:
    """Turn a full disk, a quota, a file-size limit, a read-only or a missing directory met by
    the writes in the block into one :class:`UserError` naming ``path`` (libraries such as
    safetensors report them without the file name, or not as ``OSError``)."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        error = storage_error(exc, path)
        if error is None:
            raise
        raise error from exc


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)``, fsync the result and rename it onto ``path``; a storage failure
    is one :class:`UserError` naming ``path``, and the temporary is removed whatever happens."""
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            write(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_text_if_changed(path: Path, text: str) -> bool:
    """Atomically (re)write ``path`` unless it already holds ``text``; True if written. A file
    of another size is replaced unread, and a symbolic link is replaced, never followed (so a
    huge, garbled or planted file costs nothing)."""
    data = text.encode()
    with storage_errors(path):
        same = (not path.is_symlink() and path.is_file() and path.stat().st_size == len(data)
                and path.read_bytes() == data)
    if same:
        return False
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return True


def refuse_links_below(root: Path, path: Path) -> None:
    """Raise :class:`UserError` unless ``path`` lies inside ``root`` with no symbolic link on the
    way from ``root`` down to it (``path`` included): writing there would land outside ``root``.
    ``root`` itself may be a link: the user named it."""
    try:
        below = Path(path).relative_to(root)
    except ValueError:
        raise UserError(f"{path}: outside {root}; multiticket writes only inside the directory it was given") from None
    if ".." in below.parts:
        raise UserError(f"{path}: outside {root}; multiticket writes only inside the directory it was given")
    current = Path(root)
    for part in below.parts:
        current = current / part
        if current.is_symlink():
            raise UserError(f"{current}: is a symbolic link; multiticket does not write through links inside "
                            f"{root} (remove it, then rerun)")


def write_inside(root: Path, path: Path, write: Callable[[Path], object]) -> None:
    """The one way analysis writes its outputs (pages, plots, tables): :func:`atomic_write` after
    :func:`refuse_links_below`, so nothing is written through a link or outside ``root``."""
    refuse_links_below(root, path)
    atomic_write(path, write)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Unit:
    """One trained network: a seed, a control (``ticket`` for the IMP chain) and a level."""

    seed: int
    control: str
    level: int

    def relpath(self) -> Path:
        return Path(f"seed_{self.seed}") / self.control / f"level_{self.level}"


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- units ------------------------------------------------------------------------------
    def unit_dir(self, unit: Unit) -> Path:
        return self.root / unit.relpath()

    def rewind_dir(self, seed: int, step: int) -> Path:
        return self.root / f"seed_{seed}" / "rewind" / f"step_{step}"

    def done_files(self, directory: Path) -> dict[str, str] | None:
        """File name -> SHA-256 as listed by ``directory``'s ``DONE``; None when it is absent,
        unreadable, over 1 MB, or names anything outside that directory (absolute, ``..``)."""
        done = directory / DONE
        try:
            if not done.is_file() or done.stat().st_size > 1 << 20:
                return None
            files = json.loads(done.read_bytes())["files"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None
        if not isinstance(files, dict) or not all(
            isinstance(f, str) and isinstance(h, str) and all(p not in ("", ".", "..") for p in f.split("/"))
            for f, h in files.items()
        ):
            return None
        return files

    def is_done(self, directory: Path) -> bool:
        """``DONE`` exists and every artifact it lists has the recorded checksum."""
        files = self.done_files(directory)
        if files is None:
            return False
        return all((directory / f).is_file() and sha256(directory / f) == digest for f, digest in files.items())

    def problems(self, directory: Path) -> list[str]:
        """Why a unit that has a ``DONE`` is not finished: unreadable ``DONE``, or an artifact
        missing or failing its checksum (one line each). Empty when ``DONE`` is absent."""
        done = directory / DONE
        if not done.is_file():
            return []
        files = self.done_files(directory)
        if files is None:
            return [f"{done}: unreadable or truncated"]
        out = []
        for name, digest in files.items():
            path = directory / name
            if not path.is_file():
                out.append(f"{path}: missing")
            elif sha256(path) != digest:
                out.append(f"{path}: corrupt (checksum mismatch)")
        return out

    def begin(self, directory: Path) -> None:
        """Clear a directory that holds an unfinished or corrupt unit before recomputing it.
        A symbolic link on the way from the run directory is refused (one line): following it
        would write, or delete, outside the run directory."""
        self.refuse_links(directory)
        with storage_errors(directory):
            if directory.exists():
                shutil.rmtree(directory)
            directory.mkdir(parents=True)

    def refuse_links(self, directory: Path) -> None:
        """Raise :class:`UserError` if ``directory`` or a parent below the run root is a symlink."""
        try:
            Path(directory).relative_to(self.root)
        except ValueError:
            return
        refuse_links_below(self.root, directory)

    def write_file(self, directory: Path, name: str, write: Callable[[Path], None]) -> None:
        atomic_write(directory / name, write)

    def finish(self, directory: Path, files: list[str]) -> None:
        """Write ``DONE`` with the checksums of ``files`` (last, atomically)."""
        record = {"files": {f: sha256(directory / f) for f in files}}
        atomic_write_text(directory / DONE, json.dumps(record, indent=1, sort_keys=True) + "\n")

    def metrics(self, unit: Unit) -> dict[str, Any] | None:
        path = self.unit_dir(unit) / "metrics.json"
        if not self.is_done(self.unit_dir(unit)):
            return None
        return json.loads(path.read_text())

    def clear_temporaries(self) -> None:
        """Remove the temporaries a killed process left in the run directory itself (unit
        directories are cleared whole before a unit is recomputed). Call under :meth:`locked`;
        files younger than a minute are left alone, as a ``report`` may be writing right now."""
        now = time.time()
        for tmp in self.root.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if tmp.is_file() and now - tmp.stat().st_mtime > 60:
                    tmp.unlink()

    # -- locking ----------------------------------------------------------------------------
    def lock_path(self, unit: Unit) -> Path:
        return self.root / ".locks" / f"seed_{unit.seed}.{unit.control}.level_{unit.level}.lock"

    @contextlib.contextmanager
    def unit_lock(self, unit: Unit) -> Iterator[None]:
        """Exclusive lock on one unit, waiting for a process that holds it to finish. A unit
        directory reached through a symbolic link is refused before anything is read or trained."""
        self.refuse_links(self.unit_dir(unit))
        path = self.lock_path(unit)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh: IO[str] = open(path, "a")  # noqa: SIM115 - held for the block
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            yield
        finally:
            fh.close()

    def is_running(self, unit: Unit) -> bool:
        """True while some process (on any node sharing the directory) holds the unit's lock."""
        path = self.lock_path(unit)
        if not path.is_file():
            return False
        with open(path, "a") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock on the run directory: a second process gets a clear error."""
        self.root.mkdir(parents=True, exist_ok=True)
        fh: IO[str] = open(self.root / ".lock", "a")  # noqa: SIM115 - held for the block
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunFailure(f"{self.root}: another multiticket process is running this run directory") from None
            yield
        finally:
            fh.close()
