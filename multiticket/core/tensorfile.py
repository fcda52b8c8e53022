"""Safetensors files read from a run directory, checked before they are read.

A run directory may come from someone else, and ``safetensors`` trusts a file's header: one that
claims a 2^62-byte header or tensor fails deep inside the library, or asks for that much memory.
:func:`check_safetensors` reads only the header and checks it against the file's size (every
tensor's byte range inside the file and matching its dtype and shape), so a malformed file is a
one-line :class:`UserError` naming it, before any tensor is read.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from multiticket.errors import UserError

#: bytes per element of every dtype safetensors writes
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
            "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
#: the largest header read (a model with a hundred thousand tensors has a header of a few MB)
MAX_HEADER_BYTES = 64 << 20


def _bad(path: Path, what: str) -> UserError:
    return UserError(f"{path}: not a valid safetensors file: {what}")


def _check_entry(path: Path, name: str, entry: Any, data_bytes: int) -> None:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _bad(path, f"tensor '{name}': expected dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in ITEMSIZE:
        raise _bad(path, f"tensor '{name}': unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d <= data_bytes for d in shape):
        raise _bad(path, f"tensor '{name}': shape must be a list of non-negative integers that fit the file")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_bytes):
        raise _bad(path, f"tensor '{name}': data_offsets outside the file ({data_bytes} data bytes)")
    if offsets[1] - offsets[0] != math.prod(shape) * ITEMSIZE[dtype]:
        raise _bad(path, f"tensor '{name}': data_offsets do not match its dtype and shape")


def check_safetensors(path: Path | str) -> dict[str, Any]:
    """The header of a safetensors file (tensor name -> entry, ``__metadata__``), checked
    against the file's size; UserError naming the file when it is not a sound safetensors file."""
    path = Path(path)
    try:
        if not path.is_file():
            raise UserError(f"{path}: missing or not a regular file")
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 2 <= n <= min(size - 8, MAX_HEADER_BYTES):
                raise _bad(path, f"header length {n} does not fit a file of {size} bytes")
            raw = fh.read(n)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad(path, "header is not JSON") from None
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _bad(path, "__metadata__ must map names to strings")
    data_bytes = size - 8 - n
    for name, entry in header.items():
        if name != "__metadata__":
            _check_entry(path, name, entry, data_bytes)
    return header


def load_tensors(path: Path | str) -> dict[str, torch.Tensor]:
    """Every tensor of a checked safetensors file (see :func:`check_safetensors`)."""
    check_safetensors(path)
    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise _bad(Path(path), str(exc).splitlines()[0] if str(exc) else "unreadable") from None
