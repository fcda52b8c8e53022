"""A unit's ticket as a transformers folder, without storing its weights twice.

``save_pretrained`` writes ``hf_model/model.safetensors``; the core has already written the same
weights as the unit's ``final.safetensors`` (tensors under the same names). A MiniLM unit would
keep 91 MB twice (15 GB for the Chen et al. study), so when the two files hold exactly the same
tensors, ``model.safetensors`` becomes a hard link to ``final.safetensors``: one copy on disk,
two regular files to every reader (no symbolic link, which a run directory may not contain).
Models whose saved state differs (tied weights that ``save_pretrained`` drops) keep their own copy.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

#: the folder of a unit directory that ``from_pretrained`` loads
HF_FOLDER = "hf_model"
WEIGHTS = "model.safetensors"


def export_folder(model: Any, tokenizer: Any, level_dir: Path) -> Path:
    """Write model and tokenizer to ``level_dir/hf_model``, sharing the weights file with the
    unit's ``final.safetensors`` when they are identical; return the folder."""
    target = Path(level_dir) / HF_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    share_if_identical(target / WEIGHTS, Path(level_dir) / "final.safetensors")
    return target


def same_tensors(a: Path, b: Path) -> bool:
    """Do two safetensors files hold the same names, dtypes and values (metadata aside)?"""
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]) for k in x)


def share_if_identical(copy: Path, original: Path) -> bool:
    """Replace ``copy`` by a hard link to ``original`` when both hold the same tensors; True if
    linked. Atomic (link under a temporary name, then rename over ``copy``); a file system
    without hard links keeps the copy."""
    if not (copy.is_file() and original.is_file()) or os.path.samefile(copy, original):
        return False
    if not same_tensors(copy, original):
        return False
    tmp = copy.with_name(f".{copy.name}.link.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(original, tmp)
    except OSError:
        return False
    os.replace(tmp, copy)
    return True
