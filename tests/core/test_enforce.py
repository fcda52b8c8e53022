import pytest
import torch
from torch import nn

from multiticket.core.enforce import ZERO_PRESERVING, MaskEnforcer, needs_rezero
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


#: every zero-preserving optimizer with the options that touch a zero-gradient entry
ZERO_PRESERVING_CASES = {
    "sgd_plain": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd_maximize_dampening": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.5, maximize=True,
                                                        weight_decay=0.1),
    "sgd_nesterov_for_loop": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01,
                                                       foreach=False),
    "adam_amsgrad_wd": lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True, weight_decay=0.1),
    "adam_for_loop": lambda p: torch.optim.Adam(p, lr=0.01, foreach=False),
    "adam_fused": lambda p: torch.optim.Adam(p, lr=0.01, fused=True),
    "adamw_amsgrad": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.5, amsgrad=True),
    "adamw_fused": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.5, fused=True),
    "rmsprop_centered": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.9, centered=True, weight_decay=0.1),
    "rmsprop_sb3_a2c": lambda p: torch.optim.RMSprop(p, lr=7e-4, alpha=0.99, eps=1e-5),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1, weight_decay=0.1, initial_accumulator_value=0.5),
    "adamax": lambda p: torch.optim.Adamax(p, lr=0.01, weight_decay=0.1),
    "nadam_decoupled": lambda p: torch.optim.NAdam(p, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    "radam": lambda p: torch.optim.RAdam(p, lr=0.01, weight_decay=0.1),
    "adadelta": lambda p: torch.optim.Adadelta(p, lr=1.0, weight_decay=0.1),
    "rprop": lambda p: torch.optim.Rprop(p, lr=0.01),
}


def test_every_zero_preserving_optimizer_is_covered():
    assert {type(make([torch.zeros(1, requires_grad=True)])) for make in ZERO_PRESERVING_CASES.values()} == set(
        ZERO_PRESERVING)


@pytest.mark.parametrize("name", list(ZERO_PRESERVING_CASES))
def test_zero_preserving_optimizers_keep_pruned_weights_exact_without_a_step_hook(name):
    """The enforcer trusts these optimizers' arithmetic: no step post-hook, and still exact zeros
    after every single step (moments warm from dense training first, as after a restore)."""
    net = _net()
    opt = ZERO_PRESERVING_CASES[name](net.parameters())
    _train(net, opt, steps=10)  # dense state: moments, momentum, accumulators all non-zero
    mask = _random_mask(net)
    MaskEnforcer(net, mask).attach([opt])
    assert not needs_rezero(opt) and not opt._optimizer_step_post_hooks
    params = dict(net.named_parameters())
    for _ in range(40):
        _train(net, opt, steps=1, clip=1.0)
        for n, m in mask.items():
            assert torch.count_nonzero(params[n][~m]) == 0, n
    for n, m in mask.items():
        assert torch.count_nonzero(params[n][m]) == int(m.sum()), "live weights must still train"


class _NoisySGD(torch.optim.SGD):
    """A subclass whose step moves every weight, zero gradient or not (like Muon's orthogonalised
    update): the enforcer must not trust subclasses of zero-preserving optimizers."""

    @torch.no_grad()
    def step(self, closure=None):
        out = super().step(closure)
        for g in self.param_groups:
            for p in g["params"]:
                p.add_(0.01)
        return out


@pytest.mark.parametrize("strict", [False, True])
def test_other_optimizers_and_strict_mode_rezero_after_every_step(strict):
    net = _net()
    mask = _random_mask(net)
    opt = _NoisySGD(net.parameters(), lr=0.1) if not strict else torch.optim.Adam(net.parameters(), lr=0.01)
    MaskEnforcer(net, mask, strict=strict).attach([opt])
    assert len(opt._optimizer_step_post_hooks) == 1
    _train(net, opt, steps=20)
    params = dict(net.named_parameters())
    for n, m in mask.items():
        assert torch.count_nonzero(params[n][~m]) == 0, n


def _train_and_get(grads: str, opt_name: str, steps: int = 30) -> dict[str, torch.Tensor]:
    net = _net()
    mask = _random_mask(net)
    opt = OPTIMIZERS[opt_name](net.parameters())
    MaskEnforcer(net, mask, grads=grads).attach([opt])
    _train(net, opt, steps=steps)
    return {n: p.detach().clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_step_mode_is_bit_identical_to_hook_mode_when_nothing_reads_gradients_in_between(name):
    hook, step = _train_and_get("hook", name), _train_and_get("step", name)
    mask = _random_mask(_net())
    for n in hook:
        assert torch.equal(hook[n], step[n]), n
    for n, m in mask.items():
        assert torch.count_nonzero(step[n][~m]) == 0, n


def test_step_mode_masks_gradients_right_before_the_step_with_no_tensor_hooks():
    net = _net()
    mask = _random_mask(net)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    MaskEnforcer(net, mask, grads="step").attach([opt])
    params = dict(net.named_parameters())
    assert not any(p._post_accumulate_grad_hooks for p in params.values())
    assert len(opt._optimizer_step_pre_hooks) == 1 and not opt._optimizer_step_post_hooks
    net(torch.randn(4, 8)).sum().backward()
    assert any(torch.count_nonzero(params[n].grad[~m]) > 0 for n, m in mask.items())  # not yet masked
    opt.step()
    for n, m in mask.items():
        assert torch.count_nonzero(params[n].grad[~m]) == 0, n
        assert torch.count_nonzero(params[n][~m]) == 0, n


def test_step_mode_skips_parameters_the_backward_did_not_reach():
    net = _net()
    mask = _random_mask(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    MaskEnforcer(net, mask, grads="step").attach([opt])
    for _ in range(5):
        h = net[0](torch.randn(4, 8)).sum()  # only the first layer gets a gradient
        opt.zero_grad(set_to_none=True)
        h.backward()
        opt.step()
    w = dict(net.named_parameters())["0.weight"]
    assert dict(net.named_parameters())["2.weight"].grad is None
    assert torch.count_nonzero(w[~mask["0.weight"]]) == 0


def test_step_mode_detach_and_bad_value():
    net = _net()
    mask = _random_mask(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    enforcer = MaskEnforcer(net, mask, grads="step").attach([opt])
    assert enforcer.attached
    enforcer.detach()
    assert not enforcer.attached and not opt._optimizer_step_pre_hooks
    with pytest.raises(ValueError, match="grads"):
        MaskEnforcer(net, mask, grads="backward")  # type: ignore[arg-type]
