"""multiticket.core.sparse: a masked module made sparse gives the masked module's outputs, in the
layout its zeros call for, and survives a save/load round trip."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from multiticket.core import sparse
from multiticket.core.sparse import SparseLinear, SparseLSTM

pytestmark = pytest.mark.filterwarnings("ignore:Sparse (CSR|BSR) tensor support is in beta")


def _prune(module: nn.Module, fraction: float, seed: int = 0) -> None:
    """Zero a random ``fraction`` of every weight matrix (a stand-in for a ticket's mask)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("weight") and p.dim() == 2:
                p.mul_(torch.rand(p.shape, generator=g) >= fraction)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 3))


def test_a_sparsified_mlp_gives_the_masked_outputs_and_keeps_dense_layers_below_the_threshold() -> None:
    net = _mlp()
    _prune(net[0], 0.9)
    _prune(net[2], 0.85)
    _prune(net[4], 0.3)
    x = torch.randn(17, 32)
    with torch.no_grad():
        expected = net(x)
        swapped = sparse.sparsify(net, min_sparsity=0.8)
        got = net(x)
    assert swapped == {"0": "csr", "2": "csr"}
    assert isinstance(net[0], SparseLinear) and isinstance(net[4], nn.Linear)
    assert net[0].weight.layout == torch.sparse_csr and net[0].weight.crow_indices().dtype == torch.int32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(net(x[0]), expected[0], atol=1e-6)  # unbatched and leading dims
    assert net(x.reshape(17, 1, 32)).shape == (17, 1, 3)


def test_block_structured_zeros_get_bsr_and_unstructured_csr() -> None:
    torch.manual_seed(1)
    w = torch.randn(64, 96)
    blocks = torch.rand(2, 3) >= 0.5
    blocks[0, 0] = True
    w_block = w * blocks.repeat_interleave(32, 0).repeat_interleave(32, 1)
    assert sparse.to_sparse(w_block).layout == torch.sparse_bsr
    assert sparse.to_sparse(w * (torch.rand(64, 96) >= 0.5)).layout == torch.sparse_csr
    assert sparse.to_sparse(w_block, "csr").layout == torch.sparse_csr
    with pytest.raises(ValueError, match="bsr: no block size"):
        sparse.to_sparse(torch.randn(10, 10), "bsr")
    layer = nn.Linear(96, 64)
    with torch.no_grad():
        layer.weight.copy_(w_block)
    x = torch.randn(5, 96)
    sparse_layer = SparseLinear.from_linear(layer)
    with torch.no_grad():
        torch.testing.assert_close(sparse_layer(x), layer(x), rtol=1e-5, atol=1e-5)
    assert "layout=bsr" in repr(sparse_layer)


@pytest.mark.parametrize("batch_first", [True, False])
def test_a_sparse_lstm_gives_the_masked_lstms_outputs_and_states(batch_first: bool) -> None:
    torch.manual_seed(2)
    lstm = nn.LSTM(12, 20, num_layers=2, batch_first=batch_first).eval()
    _prune(lstm, 0.9)
    x = torch.randn(3, 7, 12) if batch_first else torch.randn(7, 3, 12)
    h0 = (torch.randn(2, 3, 20), torch.randn(2, 3, 20))
    holder = nn.Sequential(lstm)
    with torch.no_grad():
        expected, (h, c) = lstm(x, h0)
        assert sparse.sparsify(holder) == {"0": "csr"}
        got, (h2, c2) = holder[0](x, h0)
    assert isinstance(holder[0], SparseLSTM)
    for a, b in ((got, expected), (h2, h), (c2, c)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_names_restrict_what_is_swapped_and_stored_values_count_the_nonzeros() -> None:
    net = _mlp()
    _prune(net, 0.9)
    dense = sparse.stored_values(net)
    assert sparse.sparsify(net, min_sparsity=0.5, names={"2"}) == {"2": "csr"}
    assert isinstance(net[0], nn.Linear) and isinstance(net[2], SparseLinear)
    assert sparse.stored_values(net) == dense - 64 * 48 + int(net[2].weight.values().numel())
    assert 0.85 < sparse.sparsity(net[2].weight.to_dense()) < 0.95


def test_save_and_load_round_trip_is_exact(tmp_path: Path) -> None:
    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(8, 16, batch_first=True)
            self.head = nn.Linear(16, 64)
            self.out = nn.Linear(64, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.head(self.lstm(x)[0]))

    torch.manual_seed(3)
    model = LM().eval()
    _prune(model, 0.9)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.weight[:16, :16] = torch.randn(16, 16)  # one full 16 x 16 block of four: BSR
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        expected = model(x)
        assert sparse.sparsify(model, min_sparsity=0.7) == {"lstm": "csr", "head": "bsr", "out": "csr"}
        path = tmp_path / "ticket.safetensors"
        sparse.save_sparse(model, path)
        fresh = LM().eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert sparse.load_sparse(fresh, path) == {"lstm": "csr", "head": "bsr", "out": "csr"}
        got = fresh(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    state = fresh.state_dict()
    for name, t in model.state_dict().items():
        assert state[name].layout == t.layout
        assert torch.equal(state[name].to_dense(), t.to_dense())
    assert sparse.sparse_state_layouts(state)["head.weight"] == "bsr"
    dense_path = tmp_path / "dense.safetensors"
    sparse.save_sparse(LM(), dense_path)
    assert path.stat().st_size < dense_path.stat().st_size


def test_a_tied_weight_is_stored_once_and_read_under_both_names(tmp_path: Path) -> None:
    emb, head = nn.Embedding(50, 8), nn.Linear(8, 50)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    sparse.save_sparse(model, tmp_path / "tied.safetensors")
    state = sparse.read_sparse(tmp_path / "tied.safetensors")
    assert torch.equal(state["0.weight"], emb.weight) and torch.equal(state["1.weight"], emb.weight)
    fresh = nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 50))
    assert sparse.load_sparse(fresh, tmp_path / "tied.safetensors") == {}
    assert torch.equal(fresh[1].bias, head.bias)  # type: ignore[arg-type]


def test_bad_layouts_are_refused() -> None:
    with pytest.raises(ValueError, match="layout"):
        sparse.to_sparse(torch.zeros(4, 4), "coo")
    with pytest.raises(ValueError, match="unidirectional"):
        SparseLSTM(nn.LSTM(4, 4, bidirectional=True))
