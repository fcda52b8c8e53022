"""Mid-level checkpoints: a long unit resumes where a killed run stopped, bit for bit on CPU.

A checkpoint is a :class:`RewindPoint` taken at a point where the adapter says training can be
resumed (``TrainHooks.on_resumable``: after an optimizer step for the toy and HF adapters, at the
start of a rollout for SB3), holding the full state dict, optimizer states, RNG states and the
adapter's :meth:`~multiticket.core.adapter.DomainAdapter.resume_state` (for SB3: the vectorised
environments, last observations, episode buffers and, off-policy, the replay buffer), plus the
rewind points the unit has captured so far (the dense unit captures θ_0 and θ_k on its way).

Layout inside the unit's directory (removed when the unit finishes, since the unit directory is
cleared and rewritten then)::

    seed_<s>/<control>/level_<L>/checkpoint/step_<n>/
        weights.safetensors  state.{safetensors,json}  [state.pickle]  core.{safetensors,json}  meta.json
        [rewind_<k>/{weights.safetensors, state.safetensors, state.json}]  DONE

Nothing is unpickled when a checkpoint is read, except ``state.pickle`` (an SB3 unit's environments),
which is signed with this user's key (:mod:`multiticket.core.signing`). A checkpoint that fails its
checksums, whose signature does not verify (written by someone else, or modified), or that is not
what multiticket writes is reported in one line and not used: its unit restarts from an older
checkpoint or from the start (it is only a shortcut). Checkpoints of older versions (``state.pt``,
``core.pt``) are read through the allowlist of :mod:`multiticket.core.legacy`.

Each checkpoint is written into a hidden temporary directory, checksummed (``DONE``), then renamed
into place, and only then are older checkpoints deleted: a kill at any moment leaves the previous
checkpoint or the new one intact. A checkpoint whose checksums do not match is reported and
skipped (the next older one, or the start of the unit, is used instead), never loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiticket.core.rewind import RewindPoint
from multiticket.core.statefile import load_tree, save_tree
from multiticket.core.store import RunStore, fsync_dir
from multiticket.errors import UserError

CHECKPOINT_DIR = "checkpoint"


@dataclass
class Checkpoint:
    """Training state at ``point.step``, rewind points captured before it, seconds trained so far,
    and the core's own state at that step (e.g. targeted dropout's generator)."""

    point: RewindPoint
    captured: dict[int, RewindPoint] = field(default_factory=dict)
    train_seconds: float = 0.0
    core: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return self.point.step


class CheckpointStore:
    """Writes and finds the checkpoints of one unit directory."""

    def __init__(self, store: RunStore, unit_dir: Path, warn: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.root = Path(unit_dir) / CHECKPOINT_DIR
        self.warn = warn or (lambda text: None)

    def save(self, ckpt: Checkpoint) -> Path:
        """Write ``ckpt`` crash-safely, then delete every older checkpoint of the unit."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".step_{ckpt.step}.", suffix=".tmp", dir=self.root))
        try:
            files = ckpt.point.save(tmp)
            for k, point in sorted(ckpt.captured.items()):
                files += [f"rewind_{k}/{name}" for name in point.save(tmp / f"rewind_{k}")]
            files += save_tree(tmp, "core", ckpt.core)
            meta = {"step": ckpt.step, "captured": sorted(ckpt.captured), "train_seconds": ckpt.train_seconds}
            (tmp / "meta.json").write_text(json.dumps(meta) + "\n")
            files.append("meta.json")
            for name in files:
                with open(tmp / name, "rb+") as fh:
                    os.fsync(fh.fileno())
            self.store.finish(tmp, files)
            final = self.root / f"step_{ckpt.step}"
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in self._candidates():
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def _candidates(self) -> list[Path]:
        """Checkpoint directories, newest first (hidden temporaries of killed writes excluded)."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()]
        return sorted(found, key=lambda p: int(p.name[5:]), reverse=True)

    def latest(self) -> Checkpoint | None:
        """The newest intact checkpoint; corrupt ones are reported and skipped, never loaded."""
        for d in self._candidates():
            if not self.store.is_done(d):
                self.warn(f"{d}: checkpoint is incomplete or corrupt (checksum mismatch); not used")
                continue
            try:
                meta = json.loads((d / "meta.json").read_text())
                point = RewindPoint.load(d)
                if not all(isinstance(k, int) and not isinstance(k, bool) for k in meta["captured"]):
                    raise UserError(f"{d / 'meta.json'}: captured steps are not integers")
                captured = {k: RewindPoint.load(d / f"rewind_{k}") for k in meta["captured"]}
                core = load_tree(d, "core")
                if not isinstance(core, dict):
                    raise UserError(f"{d}: core state is not a mapping")
            except UserError as exc:  # refused (unsigned, unexpected content): one line, then restart
                self.warn(f"{exc}; checkpoint not used")
                continue
            except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is skipped, not fatal
                self.warn(f"{d}: checkpoint cannot be read ({type(exc).__name__}); not used")
                continue
            return Checkpoint(point, captured, float(meta.get("train_seconds", 0.0)), core)
        return None

    def clear_temporaries(self) -> None:
        """Remove half-written checkpoint directories left by a kill."""
        if self.root.is_dir():
            for p in self.root.glob(".step_*.tmp"):
                shutil.rmtree(p, ignore_errors=True)
