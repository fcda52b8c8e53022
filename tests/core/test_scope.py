import pytest
from torch import nn

from multiticket.core.scope import rate_overrides, select, weights_of_types
from multiticket.errors import UserError


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight
        self.norm = nn.LayerNorm(4)


def test_default_by_module_type_and_biases_flag():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    default = weights_of_types(net)
    assert default == ["0.weight", "2.weight"]
    assert select(net, default) == ["0.weight", "2.weight"]
    assert select(net, default, include=["*"], biases=True) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert select(net, default, include=["*"]) == ["0.weight", "2.weight"]
    assert select(net, default, exclude=["2.*"]) == ["0.weight"]
    assert select(net, default, include=["re:0\\..*"]) == ["0.weight"]


def test_patterns_that_match_nothing_are_errors():
    net = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(UserError, match="prune.include: pattern 'nope.*'"):
        select(net, ["0.weight"], include=["nope.*"])
    with pytest.raises(UserError, match="prune.exclude"):
        select(net, ["0.weight"], exclude=["nope"])
    with pytest.raises(UserError, match="empty"):
        select(net, ["0.weight"], exclude=["0.*"])
    with pytest.raises(UserError, match="prune.rates"):
        rate_overrides(["0.weight"], {"x.*": 0.1})


def test_tied_weights_share_one_mask_name():
    net = Tied()
    names = select(net, [], include=["head.weight", "body.weight"])
    assert names == ["emb.weight", "body.weight"]  # the alias resolves to the canonical name
    assert "head.weight" not in weights_of_types(net)
    assert weights_of_types(net, (nn.Linear,)) == ["body.weight", "emb.weight"]
