import pytest
import torch
from torch import nn

from multiticket.core.enforce import MaskEnforcer
from multiticket.core.mask import Mask

OPTIMIZERS = {
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.5),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.9, weight_decay=0.1),
}


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def _random_mask(net):
    g = torch.Generator().manual_seed(1)
    return Mask({n: torch.rand(p.shape, generator=g) > 0.6 for n, p in net.named_parameters() if n.endswith("weight")})


def _train(net, opt, steps=200, clip=None):
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        x = torch.randn(32, 8, generator=g)
        loss = net(x).pow(2).mean() + net(x).sum() * 0.01
        opt.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_pruned_weights_and_moments_stay_exactly_zero(name):
    net = _net()
    mask = _random_mask(net)
    opt = OPTIMIZERS[name](net.parameters())
    MaskEnforcer(net, mask).attach([opt])
    _train(net, opt, clip=1.0)
    params = dict(net.named_parameters())
    for n, m in mask.items():
        p = params[n]
        assert torch.count_nonzero(p[~m]) == 0, n
        assert torch.count_nonzero(p[m]) == int(m.sum()), "live weights must still train"
        for key, value in opt.state[p].items():
            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                assert torch.count_nonzero(value[~m]) == 0, (n, key)


def test_restored_dense_optimizer_state_cannot_revive_pruned_weights():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    _train(net, opt, steps=20)  # dense momentum buffers
    mask = _random_mask(net)
    MaskEnforcer(net, mask).attach([opt])
    _train(net, opt, steps=20)
    params = dict(net.named_parameters())
    for n, m in mask.items():
        assert torch.count_nonzero(params[n][~m]) == 0
        assert torch.count_nonzero(opt.state[params[n]]["momentum_buffer"][~m]) == 0


def test_gradients_of_pruned_entries_are_zero_before_step():
    net = _net()
    mask = _random_mask(net)
    MaskEnforcer(net, mask).attach()
    net(torch.randn(4, 8)).sum().backward()
    params = dict(net.named_parameters())
    for n, m in mask.items():
        assert torch.count_nonzero(params[n].grad[~m]) == 0


def test_detach_removes_hooks_and_optimizer_added_later_is_hooked():
    net = _net()
    mask = _random_mask(net)
    enforcer = MaskEnforcer(net, mask).attach()
    opt = torch.optim.AdamW(net.parameters(), lr=0.01, weight_decay=0.5)
    enforcer.add_optimizer(opt)
    enforcer.add_optimizer(opt)  # idempotent
    _train(net, opt, steps=20)
    w = dict(net.named_parameters())["0.weight"]
    assert torch.count_nonzero(w[~mask["0.weight"]]) == 0
    enforcer.detach()
    assert not enforcer.attached
    _train(net, opt, steps=5)
    assert torch.count_nonzero(w[~mask["0.weight"]]) > 0  # no longer enforced


def test_bf16_autocast_keeps_masks_exact():
    net = _net()
    mask = _random_mask(net)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    MaskEnforcer(net, mask).attach([opt])
    for _ in range(30):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = net(torch.randn(16, 8)).float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    params = dict(net.named_parameters())
    for n, m in mask.items():
        assert torch.count_nonzero(params[n][~m]) == 0
