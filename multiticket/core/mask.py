"""``Mask``: which entries of which parameters are alive. A validated mapping name -> bool tensor.

Masks are values: set operations return new masks, and nothing here touches a model except
:meth:`Mask.apply_`. On disk a mask is a safetensors file of uint8 tensors (1 = alive).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from multiticket.core.tensorfile import check_safetensors, load_tensors
from multiticket.errors import UserError


@dataclass(frozen=True)
class LayerSparsity:
    """Sparsity of one parameter: ``alive`` of ``numel`` entries remain."""

    name: str
    numel: int
    alive: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.alive / self.numel if self.numel else 0.0


class Mask(Mapping[str, torch.Tensor]):
    """Parameter name -> bool tensor (True = alive). Immutable from the outside."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        data: dict[str, torch.Tensor] = {}
        for name, t in tensors.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"mask entry '{name}' is not a tensor")
            if t.dtype != torch.bool:
                if t.dtype.is_floating_point or t.dtype.is_complex:
                    raise TypeError(f"mask entry '{name}' has dtype {t.dtype}, expected bool")
                if bool(((t != 0) & (t != 1)).any()):
                    raise ValueError(f"mask entry '{name}' has values other than 0 and 1")
                t = t.bool()
            data[name] = t.detach()
        self._data = data

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def ones(cls, module: nn.Module, names: list[str]) -> Mask:
        """A dense mask over ``names`` of ``module``'s parameters."""
        params = dict(module.named_parameters())
        missing = [n for n in names if n not in params]
        if missing:
            raise KeyError(f"no parameter named {missing[0]!r}")
        return cls({n: torch.ones_like(params[n], dtype=torch.bool, device="cpu") for n in names})

    @staticmethod
    def check_file(path: Path | str) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape of a mask file in parameter order, from its header alone (no
        tensor is read): a file whose header, dtypes, shapes (1 to 5 dimensions, not empty) or
        ``order`` metadata do not describe a mask is a UserError naming it."""
        header = check_safetensors(path)
        meta = header.pop("__metadata__", {})
        try:
            order = json.loads(meta["order"]) if "order" in meta else list(header)
        except (ValueError, RecursionError):
            order = None
        if not (isinstance(order, list) and all(isinstance(n, str) for n in order) and sorted(order) == sorted(header)):
            raise UserError(f"{path}: metadata 'order' does not list exactly the file's tensors")
        for n, e in header.items():
            if e["dtype"] not in ("BOOL", "U8"):
                raise UserError(f"{path}: not a mask: tensor '{n}' has dtype {e['dtype']}")
            if not 1 <= len(e["shape"]) <= 5 or 0 in e["shape"]:
                raise UserError(f"{path}: not a mask: tensor '{n}' has shape {e['shape']}")
        return {n: tuple(header[n]["shape"]) for n in order}

    @classmethod
    def load(cls, path: Path | str) -> Mask:
        """Read a mask; parameter order (model order) is restored from the file's metadata."""
        order = list(cls.check_file(path))
        tensors = load_tensors(path)
        try:
            return cls({n: tensors[n] for n in order})
        except ValueError as exc:
            raise UserError(f"{path}: not a mask: {exc}") from None

    def save(self, path: Path | str) -> None:
        """Write as safetensors (uint8), keeping the parameter order in the metadata (safetensors
        itself sorts keys). Callers wanting atomicity write to a temp name first."""
        save_file({n: t.to(torch.uint8).contiguous().cpu() for n, t in self._data.items()}, str(path),
                  metadata={"order": json.dumps(list(self._data))})

    # -- mapping ----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask) or list(self) != list(other):
            return False
        return all(torch.equal(self[n], other[n]) for n in self)

    def __repr__(self) -> str:
        return f"Mask({len(self)} tensors, {self.num_alive}/{self.numel} alive, sparsity {self.sparsity:.4f})"

    # -- counts -----------------------------------------------------------------------------
    @property
    def numel(self) -> int:
        return sum(t.numel() for t in self._data.values())

    @property
    def num_alive(self) -> int:
        return sum(int(t.sum()) for t in self._data.values())

    @property
    def sparsity(self) -> float:
        """Fraction of masked entries over all entries of all tensors in the mask."""
        total = self.numel
        return 1.0 - self.num_alive / total if total else 0.0

    def alive_counts(self) -> dict[str, int]:
        return {n: int(t.sum()) for n, t in self._data.items()}

    def report(self) -> list[LayerSparsity]:
        """Per-parameter sparsity, in mask order."""
        return [LayerSparsity(n, t.numel(), int(t.sum())) for n, t in self._data.items()]

    # -- algebra ----------------------------------------------------------------------------
    def _check_compatible(self, other: Mask) -> None:
        if set(self) != set(other):
            raise ValueError("masks cover different parameters")
        for n in self:
            if self[n].shape != other[n].shape:
                raise ValueError(f"masks disagree on the shape of '{n}'")

    def union(self, other: Mask) -> Mask:
        self._check_compatible(other)
        return Mask({n: self[n] | other[n] for n in self})

    def intersection(self, other: Mask) -> Mask:
        self._check_compatible(other)
        return Mask({n: self[n] & other[n] for n in self})

    __or__ = union
    __and__ = intersection

    def jaccard(self, other: Mask) -> float:
        """|alive ∩ alive'| / |alive ∪ alive'| over all tensors (1.0 when both are empty)."""
        self._check_compatible(other)
        inter = sum(int((self[n] & other[n]).sum()) for n in self)
        union = sum(int((self[n] | other[n]).sum()) for n in self)
        return inter / union if union else 1.0

    def jaccard_per_layer(self, other: Mask) -> dict[str, float]:
        self._check_compatible(other)
        out = {}
        for n in self:
            union = int((self[n] | other[n]).sum())
            out[n] = int((self[n] & other[n]).sum()) / union if union else 1.0
        return out

    def hamming(self, other: Mask, normalized: bool = True) -> float:
        """Entries on which the masks differ (as a fraction of all entries when ``normalized``)."""
        self._check_compatible(other)
        diff = sum(int((self[n] ^ other[n]).sum()) for n in self)
        return diff / self.numel if normalized and self.numel else float(diff)

    # -- model interaction ------------------------------------------------------------------
    @torch.no_grad()
    def apply_(self, module: nn.Module) -> None:
        """Zero the pruned entries of ``module``'s parameters in place."""
        params = dict(module.named_parameters())
        for n, m in self._data.items():
            p = params[n]
            p.mul_(m.to(device=p.device, dtype=p.dtype))

    def validate_against(self, module: nn.Module) -> None:
        """Raise if a name is unknown to ``module`` or a shape differs."""
        params = dict(module.named_parameters())
        for n, m in self._data.items():
            if n not in params:
                raise KeyError(f"mask names '{n}', which the model does not have")
            if params[n].shape != m.shape:
                raise ValueError(f"mask '{n}' has shape {tuple(m.shape)}, parameter {tuple(params[n].shape)}")
