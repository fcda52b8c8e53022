import pytest
import torch
from torch import nn

from multiticket.core.mask import Mask


def _mask():
    return Mask({"a": torch.tensor([[1, 0], [1, 1]], dtype=torch.bool), "b": torch.tensor([0, 0, 1], dtype=torch.bool)})


def test_counts_and_report():
    m = _mask()
    assert m.numel == 7 and m.num_alive == 4
    assert m.sparsity == pytest.approx(3 / 7)
    rep = {r.name: r for r in m.report()}
    assert rep["a"].alive == 3 and rep["b"].sparsity == pytest.approx(2 / 3)


def test_safetensors_round_trip(tmp_path):
    m = _mask()
    m.save(tmp_path / "m.safetensors")
    back = Mask.load(tmp_path / "m.safetensors")
    assert back == m and back["a"].dtype == torch.bool
    ordered = Mask({"z": m["a"], "a": m["b"]})
    ordered.save(tmp_path / "o.safetensors")
    assert list(Mask.load(tmp_path / "o.safetensors")) == ["z", "a"]  # model order, not sorted


def test_set_algebra():
    m = _mask()
    other = Mask({"a": torch.tensor([[1, 1], [0, 1]], dtype=torch.bool), "b": torch.tensor([1, 0, 1], dtype=torch.bool)})
    assert (m | other).num_alive == 6
    assert (m & other).num_alive == 3
    assert m.jaccard(other) == pytest.approx(3 / 6)
    assert m.hamming(other) == pytest.approx(3 / 7)
    assert m.hamming(other, normalized=False) == 3
    assert m.jaccard_per_layer(other)["a"] == pytest.approx(2 / 4)
    assert m.jaccard(m) == 1.0


def test_validation():
    with pytest.raises(TypeError):
        Mask({"a": torch.ones(3)})
    with pytest.raises(ValueError):
        Mask({"a": torch.tensor([0, 2])})
    with pytest.raises(ValueError):
        _mask().union(Mask({"a": torch.ones(2, 2, dtype=torch.bool), "b": torch.ones(4, dtype=torch.bool)}))


def test_apply_zeroes_in_place_and_validates():
    lin = nn.Linear(2, 2)
    m = Mask({"weight": torch.tensor([[True, False], [False, True]])})
    m.apply_(lin)
    assert lin.weight[0, 1] == 0 and lin.weight[1, 0] == 0 and lin.weight[0, 0] != 0
    with pytest.raises(ValueError):
        Mask({"weight": torch.ones(3, dtype=torch.bool)}).validate_against(lin)
