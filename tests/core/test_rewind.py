import random

import numpy as np
import torch
from torch import nn

from multiticket.core.rewind import RewindPoint


def test_capture_copies_and_restore_is_by_value(tmp_path):
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.randn(3, 4)).sum().backward()
    opt.step()
    point = RewindPoint.capture(net, step=7, optimizers=[opt], extra={"counter": [1]})
    saved = point.weights["weight"].clone()
    with torch.no_grad():
        net.weight.add_(1.0)  # mutate the model after capture
    opt.step()
    assert torch.equal(point.weights["weight"], saved)
    assert point.optimizers[0]["state"][0]["step"] == 1
    point.restore_weights(net)
    assert torch.equal(net.weight, saved)
    with torch.no_grad():
        net.weight.add_(1.0)  # mutating after restore must not touch the rewind point
    assert torch.equal(point.weights["weight"], saved)


def test_rng_restore_replays_randomness():
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    point = RewindPoint.capture(nn.Linear(1, 1), step=0)
    a = (torch.rand(3), np.random.rand(3), random.random())
    point.restore_rng()
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_save_load_round_trip(tmp_path):
    net = nn.Linear(4, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(3, 4)).sum().backward()
    opt.step()
    point = RewindPoint.capture(net, 5, [opt], {"n": 3})
    point.save(tmp_path)
    back = RewindPoint.load(tmp_path)
    assert back.step == 5 and back.extra == {"n": 3}
    assert all(torch.equal(back.weights[k], v) for k, v in point.weights.items())
    opt2 = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    back.restore_optimizers([opt2])
    assert torch.equal(opt2.state[net.weight]["momentum_buffer"], opt.state[net.weight]["momentum_buffer"])
