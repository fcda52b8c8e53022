"""``multiticket export`` / ``Run.export``: one finished unit as a model its own library loads.

The network is rebuilt from the run directory's validated ``config.yaml`` (never unpickled from
it), its final weights (safetensors) are loaded and its mask applied, and the domain's adapter
writes it: for SB3 one zip that plain ``ALGO.load`` reads; ``compact``, its dead neurons removed
from the producing and the consuming layers (a narrower ``net_arch``:
:mod:`multiticket.adapters.sb3_export`), which is what ``prune.structure: neurons`` tickets are
for. For transformers a folder plain ``from_pretrained`` reads; ``compact``, the pruned FFN neurons
of a ``prune.structure: heads`` ticket removed (:mod:`multiticket.adapters.hf.compact`), or the
LSTM LM's dead hidden units of a ``units`` ticket (:mod:`multiticket.adapters.hf.lstm_compact`).
For the torch domain safetensors plus ``export.json`` (:mod:`multiticket.adapters.torch_export`).
An adapter offers this through an ``export_model(path, mask, compact, unit_dir)`` method; a domain
without one (the toy domain) is refused in one line. ``sparse``, for any domain (it needs no
``export_model``): the masked network's pruned Linear / LSTM layers of at least ``min_sparsity``
zeros as CSR (or BSR) tensors in one safetensors file (:mod:`multiticket.core.sparse`), which
:func:`multiticket.core.sparse.load_sparse` reads into a freshly built network of the same
architecture; it pays only for large layers at high sparsity (docs/results.md). Nothing is
written until every input is checked, and the file appears atomically (a symlink at the path is
replaced, never written through).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from multiticket.config import resolve_task
from multiticket.core.mask import Mask
from multiticket.core.sparse import DEFAULT_MIN_SPARSITY, save_sparse, sparsify, stored_values
from multiticket.core.store import RunStore, Unit
from multiticket.core.tensorfile import load_tensors
from multiticket.domains import adapter_class
from multiticket.errors import UserError
from multiticket.rundir import check_finished_unit, read_run_config

CONTROL = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class Exported:
    """Where the export went and what it holds (parameters, removed neurons, ``net_arch``...)."""

    path: Path
    summary: dict[str, Any]


def default_path(run_dir: Path, seed: int, level: int, control: str, compact: bool, sparse: bool = False) -> Path:
    """``<run name>-seed<S>-<control>-level<L>[-compact|-sparse]`` in the working directory (the
    adapter adds its suffix, ``.zip`` for SB3; a sparse export ``.safetensors``)."""
    ending = "-compact" if compact else "-sparse" if sparse else ""
    return Path.cwd() / f"{run_dir.resolve().name}-seed{seed}-{control}-level{level}{ending}"


def _task(run_dir: Path, trust_code: bool) -> Any:
    """The run's task, validated; a config naming user code is refused unless ``trust_code``."""
    run = read_run_config(run_dir)
    task = resolve_task(run.config, run.path, user_code=False, run_dir=run_dir)
    modules = getattr(task.section, "user_modules", None)
    named = tuple(modules()) if callable(modules) else ()
    if named and not trust_code:
        raise UserError(f"{run_dir}/config.yaml: names user code ({', '.join(named[:3])}), which export would "
                        "import and run; pass --trust-code if you trust this run directory and the modules on your path")
    return resolve_task(run.config, run.path, run_dir=run_dir) if named else task


def _unit_dir(run_dir: Path, seed: int, level: int, control: str) -> Path:
    """The finished unit's directory, its record and mask header checked (UserError otherwise)."""
    if not CONTROL.fullmatch(control):
        raise UserError(f"--control: '{control}' is no control name")
    if level < 0:
        raise UserError(f"--level: must be >= 0, got {level}")
    unit = Unit(seed, control, level)
    store = RunStore(run_dir)
    d = store.unit_dir(unit)
    if not store.is_done(d):
        raise UserError(f"{run_dir}: {unit.relpath()} is not a finished unit")
    check_finished_unit(d, unit)
    return d


def _out_path(out: Path | str | None, run_dir: Path, seed: int, level: int, control: str, compact: bool,
              sparse: bool = False) -> Path:
    """Where to write, checked before anything is (a sparse file gets ``.safetensors`` when the
    name has no suffix, as SB3 adds ``.zip``)."""
    path = Path(out) if out is not None else default_path(run_dir, seed, level, control, compact, sparse)
    if sparse and not path.suffix:
        path = path.with_suffix(".safetensors")
    if path.is_dir():
        raise UserError(f"--out: {path} is a directory; name the file to write")
    if not path.parent.is_dir():
        raise UserError(f"--out: {path.parent} is no directory")
    return path


def _check_options(compact: bool, sparse: bool, min_sparsity: float) -> None:
    """The export options that cannot go together, refused before anything is read."""
    if sparse and compact:
        raise UserError("export: --sparse and --compact exclude each other (--sparse keeps every neuron, "
                        "its pruned weights as CSR; --compact removes whole neurons); pass one")
    if not 0.0 <= min_sparsity < 1.0:
        raise UserError(f"--min-sparsity: must be in [0, 1), got {min_sparsity}")


def export_unit(run_dir: Path | str, seed: int, level: int, control: str = "ticket", compact: bool = False,
                out: Path | str | None = None, trust_code: bool = False, sparse: bool = False,
                min_sparsity: float = DEFAULT_MIN_SPARSITY) -> Exported:
    """Export unit ``seed``/``control``/``level`` of ``run_dir`` (see the module docstring)."""
    _check_options(compact, sparse, min_sparsity)
    run_dir = Path(run_dir)
    task = _task(run_dir, trust_code)
    unit_dir = _unit_dir(run_dir, seed, level, control)
    path = _out_path(out, run_dir, seed, level, control, compact, sparse)
    cls = adapter_class(task.config.domain)
    if not sparse and not callable(getattr(cls, "export_model", None)):
        raise UserError(f"export: the '{task.config.domain}' domain's adapter has no export_model "
                        "(docs/extending.md); --sparse works for every domain")
    mask = Mask.load(unit_dir / "mask.safetensors")
    weights = load_tensors(unit_dir / "final.safetensors")
    with tempfile.TemporaryDirectory(prefix="multiticket-export-") as work:
        adapter = cls(task.config, task.section, Path(work), "cpu")
        try:
            adapter.build(seed)
            _load(adapter.module, weights, mask, unit_dir)
            if sparse:
                summary = _write_sparse(adapter.module, set(mask.keys()), path, min_sparsity)
            else:
                summary = adapter.export_model(path, mask, compact, unit_dir)
        finally:
            adapter.close()
    return Exported(Path(summary.pop("path", path)), summary)


def _write_sparse(module: torch.nn.Module, masked: set[str], path: Path, min_sparsity: float) -> dict[str, Any]:
    """The masked ``module`` with its masked Linear / LSTM layers of at least ``min_sparsity`` zeros
    made sparse, saved (:func:`save_sparse`) under a fresh temporary name beside ``path`` and
    renamed onto it: a reader never sees half a file, and a symlink at ``path`` is replaced, not
    followed. Only the mask's layers, so that an unpruned layer that happens to hold zeros stays as
    the network had it."""
    dense = stored_values(module)
    names = {name.rpartition(".")[0] for name in masked}
    with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" is no news to the reader
        warnings.filterwarnings("ignore", message="Sparse (CSR|BSR) tensor support is in beta", category=UserWarning)
        swapped = sparsify(module, min_sparsity, names=names)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # ours, not a planted link
    mode = stat.S_IMODE(os.stat(tmp).st_mode)  # 0o666 less the umask: safetensors' own file is 0o600
    try:
        save_sparse(module, tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"path": str(path), "sparse_layers": swapped, "stored_values": stored_values(module),
            "dense_values": dense, "min_sparsity": min_sparsity}


def _load(module: torch.nn.Module, weights: dict[str, torch.Tensor], mask: Mask, unit_dir: Path) -> None:
    """The unit's final weights into the rebuilt network, its mask applied (UserError on a mismatch)."""
    own = {n: tuple(t.shape) for n, t in module.state_dict().items()}
    if own != {n: tuple(t.shape) for n, t in weights.items()}:
        raise UserError(f"{unit_dir}/final.safetensors: does not match the network the run's config builds")
    try:
        mask.validate_against(module)
    except (KeyError, ValueError) as exc:
        raise UserError(f"{unit_dir}/mask.safetensors: {exc}") from None
    module.load_state_dict(weights, strict=True)
    mask.apply_(module)
