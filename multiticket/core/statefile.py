"""State trees on disk without unpickling: one safetensors file plus one JSON skeleton.

Rewind points, mid-level checkpoints, the prune-only controls' dense state and instability state
are nested dicts / lists / tuples of tensors, numpy arrays, numpy scalars, ints, floats, strings,
bools and None (optimizer state dicts, RNG states, counters, running statistics, replay buffers).
:func:`save_tree` writes such a tree as ``<stem>.safetensors`` (every tensor and array) and
``<stem>.json`` (the structure, with references into the safetensors file); :func:`load_tree`
reads them back exactly, validating every node: anything unexpected is one line naming the file.

The one exception is an object that only a pickle can hold, wrapped by its adapter in
:class:`Pickled` (SB3's vectorised environments in a mid-level checkpoint): such objects go into
``<stem>.pickle``, signed with this user's key (:mod:`multiticket.core.signing`) and refused
unless the signature verifies. Directories written before this format hold ``<stem>.pt`` instead,
read through an allowlist (:mod:`multiticket.core.legacy`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from multiticket.core.legacy import load_legacy
from multiticket.core.signing import read_signed_pickle, write_signed_pickle
from multiticket.core.store import atomic_write
from multiticket.errors import UserError

FORMAT = "multiticket-state/1"
#: numpy dtype kinds a tree may hold (bool, signed, unsigned, float); object arrays never
_NUMPY_KINDS = "biuf"
_MAX_DEPTH = 64


@dataclass
class Pickled:
    """An object only a pickle can hold; stored signed, loaded only if the signature verifies."""

    value: Any


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.pickled: list[Any] = []
        self._storages: set[int] = set()

    def tensor(self, t: torch.Tensor) -> str:
        t = t.detach().to("cpu").contiguous()
        if t.layout != torch.strided or t.is_quantized:
            raise TypeError(f"cannot store a {t.layout} tensor")
        ptr = t.untyped_storage().data_ptr()
        if ptr in self._storages and t.numel():  # safetensors refuses tensors sharing memory
            t = t.clone()
        self._storages.add(t.untyped_storage().data_ptr())
        key = str(len(self.tensors))
        self.tensors[key] = t
        return key

    def node(self, x: Any, where: str) -> Any:  # noqa: PLR0911 - one branch per node type
        if isinstance(x, np.generic):  # before float: np.float64 is a float
            if x.dtype.kind not in _NUMPY_KINDS:
                raise TypeError(f"{where}: cannot store a numpy scalar of dtype {x.dtype}")
            return {"$npscalar": x.dtype.str, "value": self.node(x.item(), where)}
        if x is None or isinstance(x, bool | int | str):
            return x
        if isinstance(x, float):
            return x if math.isfinite(x) else {"$float": repr(x)}
        if isinstance(x, torch.Tensor):
            return {"$tensor": self.tensor(x)}
        if isinstance(x, np.ndarray):
            if x.dtype.kind not in _NUMPY_KINDS:
                raise TypeError(f"{where}: cannot store a numpy array of dtype {x.dtype}")
            native = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))
            return {"$ndarray": self.tensor(torch.from_numpy(native)), "dtype": native.dtype.str}
        if isinstance(x, tuple):
            return {"$tuple": [self.node(v, f"{where}[{i}]") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [self.node(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, dict):
            return self.mapping(x, where)
        if isinstance(x, Pickled):
            self.pickled.append(x.value)
            return {"$pickled": len(self.pickled) - 1}
        raise TypeError(f"{where}: cannot store a {type(x).__module__}.{type(x).__qualname__} (wrap it in Pickled?)")

    def mapping(self, x: dict[Any, Any], where: str) -> Any:
        if all(isinstance(k, str) and not k.startswith("$") for k in x):
            return {k: self.node(v, f"{where}.{k}") for k, v in x.items()}
        for k in x:
            if isinstance(k, bool) or not isinstance(k, int | str):
                raise TypeError(f"{where}: cannot store a dict key of type {type(k).__name__}")
        return {"$dict": [[k, self.node(v, f"{where}.{k}")] for k, v in x.items()]}


def tree_files(stem: str, pickled: bool = False) -> list[str]:
    """File names of a tree saved under ``stem`` (the signed pickle only if it holds one)."""
    return [f"{stem}.safetensors", f"{stem}.json", *([f"{stem}.pickle"] if pickled else [])]


def save_tree(directory: Path, stem: str, tree: Any) -> list[str]:
    """Write ``tree`` into ``directory`` (each file atomically); returns the file names written."""
    enc = _Encoder()
    skeleton = {"format": FORMAT, "tree": enc.node(tree, stem)}
    directory = Path(directory)
    atomic_write(directory / f"{stem}.safetensors", lambda p: save_file(enc.tensors, str(p)))
    atomic_write(directory / f"{stem}.json", lambda p: p.write_text(json.dumps(skeleton, allow_nan=False) + "\n"))
    if enc.pickled:
        atomic_write(directory / f"{stem}.pickle", lambda p: write_signed_pickle(p, enc.pickled))
    return tree_files(stem, bool(enc.pickled))


def saved_files(directory: Path, stem: str) -> list[str]:
    """The files of the tree ``stem`` that exist in ``directory`` (new format or legacy ``.pt``)."""
    names = [*tree_files(stem, pickled=True), f"{stem}.pt"]
    return [n for n in names if (Path(directory) / n).is_file()]


def has_tree(directory: Path, stem: str) -> bool:
    return bool(saved_files(directory, stem))


def load_tree(directory: Path, stem: str) -> Any:
    """Read the tree ``stem`` from ``directory``; a legacy ``<stem>.pt`` if the new files are absent."""
    directory = Path(directory)
    skeleton_file = directory / f"{stem}.json"
    if not skeleton_file.is_file() and (directory / f"{stem}.pt").is_file():
        return load_legacy(directory / f"{stem}.pt")
    return _Decoder(directory, stem).load()


class _Decoder:
    """Rebuilds a tree from its skeleton, checking every node; errors name the file."""

    def __init__(self, directory: Path, stem: str) -> None:
        self.directory, self.stem = directory, stem
        self.skeleton_file = directory / f"{stem}.json"
        self.used: set[str] = set()
        self.tensors: dict[str, torch.Tensor] = {}
        self.pickled: list[Any] | None = None

    def fail(self, why: str, file: Path | None = None) -> UserError:
        return UserError(f"{file or self.skeleton_file}: {why}; not loaded")

    def load(self) -> Any:
        try:
            data = json.loads(self.skeleton_file.read_bytes().decode("utf-8"), parse_constant=_no_constant)
        except FileNotFoundError:
            raise self.fail("missing") from None
        except (ValueError, RecursionError, UnicodeDecodeError) as exc:
            raise self.fail(f"not a valid state skeleton ({type(exc).__name__})") from None
        if not isinstance(data, dict) or set(data) != {"format", "tree"} or data["format"] != FORMAT:
            raise self.fail(f"not a {FORMAT} skeleton")
        tensor_file = self.directory / f"{self.stem}.safetensors"
        try:
            self.tensors = load_file(str(tensor_file))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise self.fail(f"unreadable ({type(exc).__name__})", tensor_file) from None
        tree = self.node(data["tree"], 0)
        unused = set(self.tensors) - self.used
        if unused:
            raise self.fail(f"holds {len(unused)} tensor(s) its skeleton does not name", tensor_file)
        return tree

    def node(self, x: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise self.fail(f"nested deeper than {_MAX_DEPTH} levels")
        if x is None or isinstance(x, bool | int | float | str):
            return x
        if isinstance(x, list):
            return [self.node(v, depth + 1) for v in x]
        if not isinstance(x, dict):
            raise self.fail(f"unexpected {type(x).__name__} node")
        marker = [k for k in x if k.startswith("$")]
        if not marker:
            return {k: self.node(v, depth + 1) for k, v in x.items()}
        return self.marked(marker[0], x, depth)

    def marked(self, marker: str, x: dict[str, Any], depth: int) -> Any:  # noqa: PLR0911 - one branch per marker
        value = x[marker]
        if marker == "$float" and set(x) == {marker} and value in ("nan", "inf", "-inf"):
            return float(value)
        if marker == "$tensor" and set(x) == {marker}:
            return self.tensor(value)
        if marker == "$ndarray" and set(x) == {marker, "dtype"}:
            return self.ndarray(self.tensor(value), x["dtype"])
        if marker == "$npscalar" and set(x) == {marker, "value"}:
            return self.scalar(value, self.node(x["value"], depth + 1))
        if marker == "$tuple" and set(x) == {marker} and isinstance(value, list):
            return tuple(self.node(v, depth + 1) for v in value)
        if marker == "$dict" and set(x) == {marker} and isinstance(value, list):
            return self.pairs(value, depth)
        if marker == "$pickled" and set(x) == {marker} and isinstance(value, int) and not isinstance(value, bool):
            return Pickled(self.pickled_object(value))
        raise self.fail(f"unexpected node {json.dumps(marker)[:40]}")

    def tensor(self, key: Any) -> torch.Tensor:
        if not isinstance(key, str) or key not in self.tensors:
            raise self.fail(f"names a tensor {json.dumps(key)[:40]} that is not in {self.stem}.safetensors")
        if key in self.used:
            raise self.fail(f"names tensor {key} twice")
        self.used.add(key)
        return self.tensors[key]

    def ndarray(self, t: torch.Tensor, dtype: Any) -> np.ndarray:
        expected = _numpy_dtype(dtype, self.fail)
        try:
            arr = t.numpy()
        except TypeError:
            arr = None
        if arr is None or arr.dtype != expected:
            raise self.fail(f"array of dtype {t.dtype} where the skeleton says {expected}")
        return arr

    def scalar(self, dtype_text: Any, item: Any) -> np.generic:
        dtype = _numpy_dtype(dtype_text, self.fail)
        if not isinstance(item, bool | int | float):
            raise self.fail(f"numpy scalar of {dtype} holds a {type(item).__name__}")
        try:
            return dtype.type(item)
        except (OverflowError, ValueError):
            raise self.fail(f"numpy scalar out of range for {dtype}") from None

    def pairs(self, items: list[Any], depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for item in items:
            if not (isinstance(item, list) and len(item) == 2) or isinstance(item[0], bool) \
                    or not isinstance(item[0], int | str):
                raise self.fail("malformed $dict entry")
            out[item[0]] = self.node(item[1], depth + 1)
        return out

    def pickled_object(self, index: int) -> Any:
        if self.pickled is None:
            path = self.directory / f"{self.stem}.pickle"
            if not path.is_file():
                raise self.fail(f"refers to {path.name}, which is missing")
            objects = read_signed_pickle(path)
            if not isinstance(objects, list):
                raise self.fail("signed pickle holds no list", path)
            self.pickled = objects
        if not 0 <= index < len(self.pickled):
            raise self.fail(f"refers to pickled object {index} of {len(self.pickled)}")
        return self.pickled[index]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _numpy_dtype(text: Any, fail: Any) -> np.dtype:
    """A numpy dtype from its string, only of the plain kinds a tree may hold."""
    try:
        dtype = np.dtype(text) if isinstance(text, str) and len(text) <= 8 else None
    except Exception:  # noqa: BLE001 - numpy raises TypeError, ValueError or SyntaxError here
        dtype = None
    if dtype is None or dtype.kind not in _NUMPY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise fail(f"unsupported numpy dtype {json.dumps(text)[:40]}")
    return dtype.newbyteorder("=")
