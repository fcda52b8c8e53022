"""An unstructured ticket for sparse inference: its pruned Linear and LSTM weights held in torch's
CSR (or BSR) layout, so that only the weights left are stored and multiplied.

A masked ticket is a dense network with zeros: the same bytes and the same time as the dense one.
:func:`sparsify` swaps, in place, each ``nn.Linear`` (for :class:`SparseLinear`) and each
unidirectional ``nn.LSTM`` (for :class:`SparseLSTM`) whose weights are at least ``min_sparsity``
zeros; the outputs stay those of the masked module up to float reassociation (the weights left
are the same numbers). :func:`save_sparse` writes the module's state as safetensors (a sparse
tensor as its index and value arrays, int32 indices) and :func:`load_sparse` reads it back into a
freshly built dense module of the same architecture.

- **Layout.** CSR, except where the zeros come in whole square blocks (BSR of 32 or 16: the
  nonzero blocks at least :data:`BSR_MIN_FILL` full), which unstructured magnitude tickets never
  are. CSR @ dense is what torch's CPU build runs (MKL sparse BLAS); dense @ CSR is a slow
  fallback, so a layer computes ``(W @ x.T).T``.
- **Where it does not pay** (``scripts/bench_compact.py``, docs/results.md, one CPU thread):
  a sparse product beats the dense one only for large layers at high sparsity with few rows per
  call. Small layers (a CartPole policy's 64 x 64, even 256 x 256) are 1.25-2.3x slower sparse at
  every sparsity and batch; MiniLM's layers gain from 90 % at one sequence (0.8x, 0.6x at 95 %)
  but not with 16 sequences, where the dense GEMM is efficient (0.9-3.8x); the LSTM steps run
  one by one in Python here against the dense LSTM's fused kernel (slower at width 128, faster
  only at width 650, batch 1, from 90 %). On disk, int32 indices make a CSR weight smaller than
  the dense one only above 50 % sparsity. Inference only: no gradients flow through the sparse
  weights. Removing whole neurons or heads (a compact ticket) pays everywhere instead.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

#: default: a layer is made sparse when at least this fraction of its weights is zero (from about
#: there its CSR file is clearly smaller; faster only for large layers, see above)
DEFAULT_MIN_SPARSITY = 0.8
#: BSR block sizes tried, largest first (smaller blocks are slower than CSR on the CPU)
BSR_BLOCKS = (32, 16)
#: BSR only when the stored blocks are at least this full of nonzeros
BSR_MIN_FILL = 0.9
LAYOUTS = ("auto", "csr", "bsr")
_SEP = "::"  # tensor name separator of a sparse tensor's parts in the file
_PARTS = ("crow_indices", "col_indices", "values")


def sparsity(t: torch.Tensor) -> float:
    """The fraction of exact zeros of a dense tensor (of stored zeros: 0 for a sparse one)."""
    if t.layout != torch.strided:
        return 1.0 - t.values().count_nonzero().item() / max(t.shape.numel(), 1)
    return 1.0 - t.count_nonzero().item() / max(t.numel(), 1)


def _bsr_block(w: torch.Tensor) -> int | None:
    """The largest block size of :data:`BSR_BLOCKS` whose nonzero blocks are full enough, or None."""
    nnz = int(w.count_nonzero())
    for b in BSR_BLOCKS:
        if w.dim() != 2 or w.shape[0] % b or w.shape[1] % b or nnz == 0:
            continue
        blocks = w.reshape(w.shape[0] // b, b, w.shape[1] // b, b).ne(0).any(3).any(1)
        if nnz / (int(blocks.sum()) * b * b) >= BSR_MIN_FILL:
            return b
    return None


def to_sparse(w: torch.Tensor, layout: str = "auto") -> torch.Tensor:
    """A 2-D weight as a CSR (or BSR, see the module docstring) tensor with int32 indices."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout: one of {LAYOUTS}, not {layout!r}")
    w = w.detach()
    block = _bsr_block(w) if layout in ("auto", "bsr") else None
    if layout == "bsr" and block is None:
        raise ValueError(f"bsr: no block size of {BSR_BLOCKS} fits a {tuple(w.shape)} weight's zeros")
    s = w.to_sparse_bsr((block, block)) if block else w.to_sparse_csr()
    make = torch.sparse_bsr_tensor if block else torch.sparse_csr_tensor
    return make(s.crow_indices().int(), s.col_indices().int(), s.values(), s.shape, check_invariants=False)


def _layout_name(t: torch.Tensor) -> str:
    return {torch.sparse_csr: "csr", torch.sparse_bsr: "bsr"}.get(t.layout, "dense")


def matmul_t(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x @ w.T`` for a 2-D ``x`` (rows = examples), ``w`` dense or sparse (computed as
    ``(w @ x.T).T``: the product torch's CPU sparse kernels take), contiguous."""
    if w.layout == torch.strided:
        return x @ w.t()
    return torch.sparse.mm(w, x.t()).t().contiguous()


class SparseLinear(nn.Module):
    """``nn.Linear`` for inference with a sparse weight (a buffer: it is not trained)."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, layout: str = "auto") -> SparseLinear:
        return cls(to_sparse(linear.weight, layout), linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = matmul_t(self.weight, x.reshape(-1, self.in_features))
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"layout={_layout_name(self.weight)}, sparsity={sparsity(self.weight):.3f}")


class SparseLSTM(nn.Module):
    """A unidirectional ``nn.LSTM`` (no ``proj_size``) for inference with sparse matrices: the
    input projection of every time step in one product per layer, then the steps one by one.
    Its buffers keep ``nn.LSTM``'s names (``weight_ih_l0``...); a matrix below the threshold stays
    dense. Dropout between layers is an identity at inference and left out."""

    def __init__(self, lstm: nn.LSTM, min_sparsity: float = DEFAULT_MIN_SPARSITY, layout: str = "auto") -> None:
        super().__init__()
        if lstm.bidirectional or lstm.proj_size:
            raise ValueError("SparseLSTM covers unidirectional LSTMs without proj_size")
        self.hidden_size, self.num_layers, self.batch_first = lstm.hidden_size, lstm.num_layers, lstm.batch_first
        for name, p in lstm.named_parameters():
            keep = name.startswith("weight") and sparsity(p) >= min_sparsity
            self.register_buffer(name, to_sparse(p, layout) if keep else p.detach().clone())
        self.has_bias = bool(lstm.bias)

    def _layer(self, k: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One layer over all steps of ``x`` (batch, time, features): (outputs, h_n, c_n)."""
        b, t, _ = x.shape
        gates = matmul_t(getattr(self, f"weight_ih_l{k}"), x.reshape(b * t, -1))
        if self.has_bias:
            gates = gates + getattr(self, f"bias_ih_l{k}") + getattr(self, f"bias_hh_l{k}")
        gates = gates.reshape(b, t, -1)
        w_hh, outs = getattr(self, f"weight_hh_l{k}"), []
        for step in range(t):
            i, f, g, o = (gates[:, step] + matmul_t(w_hh, h)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        return torch.stack(outs, 1), h, c

    def forward(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """As ``nn.LSTM.forward`` for a batched input."""
        x = x if self.batch_first else x.transpose(0, 1)
        zeros = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)
        h0, c0 = hx if hx is not None else (zeros, zeros)
        hs, cs = [], []
        for k in range(self.num_layers):
            x, h, c = self._layer(k, x, h0[k], c0[k])
            hs.append(h)
            cs.append(c)
        return (x if self.batch_first else x.transpose(0, 1)), (torch.stack(hs), torch.stack(cs))


def _swap(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, child, new)


def sparsify(module: nn.Module, min_sparsity: float = DEFAULT_MIN_SPARSITY, layout: str = "auto",
             names: Collection[str] | None = None) -> dict[str, str]:
    """Swap in place each Linear / LSTM of ``module`` (only those in ``names``, module names, when
    given) whose weights are at least ``min_sparsity`` zeros for its sparse twin; what was swapped,
    name -> layout of its (first) sparse weight. ``module`` itself must be a container."""
    done: dict[str, str] = {}
    for name, child in list(module.named_modules()):
        if not name or (names is not None and name not in names):
            continue
        if isinstance(child, nn.Linear) and sparsity(child.weight) >= min_sparsity:
            new: nn.Module = SparseLinear.from_linear(child, layout)
        elif isinstance(child, nn.LSTM) and not child.bidirectional and not child.proj_size:
            weights = [p for n, p in child.named_parameters() if n.startswith("weight")]
            if max(sparsity(w) for w in weights) < min_sparsity:
                continue
            new = SparseLSTM(child, min_sparsity, layout)
        else:
            continue
        _swap(module, name, new)
        done[name] = next(_layout_name(b) for b in new.buffers() if b.layout != torch.strided)
    return done


def stored_values(module: nn.Module) -> int:
    """Numbers the module stores for its weights: a sparse tensor's values, a dense one's entries
    (parameters and buffers, a tied tensor once); indices are not counted."""
    seen: dict[int, int] = {}
    for t in [*module.parameters(), *module.buffers()]:
        seen[id(t)] = t.values().numel() if t.layout != torch.strided else t.numel()
    return sum(seen.values())


def save_sparse(module: nn.Module, path: Path | str) -> None:
    """The module's state as safetensors: a sparse tensor as ``NAME::crow_indices``,
    ``NAME::col_indices`` and ``NAME::values``, its layout and shape in the file's metadata; a
    tensor shared under two names (tied embeddings) stored once, the other name an alias."""
    tensors: dict[str, torch.Tensor] = {}
    layouts: dict[str, dict[str, object]] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, t in module.state_dict().items():
        if t.layout == torch.strided:
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
            if key in first and t.numel() > 0:
                aliases[name] = first[key]
                continue
            first[key] = name
            tensors[name] = t.detach().contiguous()
            continue
        for part in _PARTS:
            value = getattr(t, part)()
            tensors[f"{name}{_SEP}{part}"] = (value if part == "values" else value.int()).contiguous()
        layouts[name] = {"layout": _layout_name(t), "shape": list(t.shape)}
    save_file(tensors, str(path), metadata={"multiticket.sparse": json.dumps(layouts),
                                            "multiticket.aliases": json.dumps(aliases)})


def read_sparse(path: Path | str) -> dict[str, torch.Tensor]:
    """The state :func:`save_sparse` wrote, its sparse tensors rebuilt (and checked)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    layouts, aliases = (json.loads(meta.get(k, "{}")) for k in ("multiticket.sparse", "multiticket.aliases"))
    flat = load_file(str(path))
    out = {k: v for k, v in flat.items() if _SEP not in k}
    for name, spec in layouts.items():
        make = torch.sparse_bsr_tensor if spec["layout"] == "bsr" else torch.sparse_csr_tensor
        crow, col, values = (flat[f"{name}{_SEP}{p}"] for p in _PARTS)
        out[name] = make(crow, col, values, tuple(spec["shape"]), check_invariants=True)  # a file: checked
    out.update({alias: out[kept] for alias, kept in aliases.items()})
    return out


def load_sparse(module: nn.Module, path: Path | str) -> dict[str, str]:
    """Load a :func:`save_sparse` file into ``module``, a freshly built dense module of the same
    architecture: the weights loaded (strictly), then each layer that was sparse in the file given
    the file's sparse tensors as they are; what was swapped, as :func:`sparsify` says."""
    state = read_sparse(path)
    module.load_state_dict({k: (v.to_dense() if v.layout != torch.strided else v) for k, v in state.items()},
                           strict=True)
    owners: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        if v.layout != torch.strided:
            owner, _, leaf = k.rpartition(".")
            owners.setdefault(owner, {})[leaf] = v
    done: dict[str, str] = {}
    for name, tensors in owners.items():
        child = module.get_submodule(name)
        if isinstance(child, nn.Linear) and set(tensors) == {"weight"}:
            new: nn.Module = SparseLinear(tensors["weight"], child.bias)
        elif isinstance(child, nn.LSTM):
            new = SparseLSTM(child, min_sparsity=2.0)  # all dense, then the file's sparse matrices
            for leaf, t in tensors.items():
                setattr(new, leaf, t)
        else:
            raise ValueError(f"{path}: '{name}' holds a sparse tensor but is no Linear or LSTM")
        _swap(module, name, new)
        done[name] = _layout_name(next(iter(tensors.values())))
    return done


def sparse_state_layouts(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Name -> layout (``dense``, ``csr``, ``bsr``) of each tensor of a state dict."""
    return {k: _layout_name(v) for k, v in state.items()}
