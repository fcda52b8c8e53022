"""Removing dead neurons of Linear layers with torch-pruning, exactly: shared by the compact exports
of SB3 policies (:mod:`multiticket.adapters.sb3_export`) and of the torch domain's models
(:mod:`multiticket.adapters.torch_export`).

A neuron of a Linear layer is *dead* when the mask prunes its whole row: its output is then the
constant act(b) whatever the input, so removing it and adding W[:, i]·act(b_i) to each consuming
layer's bias leaves every output unchanged (up to float reassociation). torch-pruning
(``DependencyGraph``, ``prune_linear_out_channels``) traces the network's forward and finds which
input columns of which consumers go with a row; written here: which rows are dead (from the mask)
and the bias folding (the constant each consumer receives is measured on a probe batch, and
checked constant). The torch domain's export also removes Conv channels and keeps what it cannot
remove exactly, saying why (:mod:`multiticket.adapters.channel_removal`); SB3 policies have Linear
hidden layers only, and a neuron that cannot go fails their export here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from multiticket.errors import UserError

M = TypeVar("M", bound=nn.Module)


def linears(module: nn.Module) -> list[nn.Linear]:
    """The Linear layers of ``module`` in module order: the candidates whose dead rows go."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def dead_rows(root: nn.Module, mask: Mapping[str, torch.Tensor], layer: nn.Module) -> list[int]:
    """The rows (output channels) of ``layer`` the mask prunes whole (none when its weight is not masked)."""
    names = {id(m): n for n, m in root.named_modules()}
    weight = mask.get(f"{names[id(layer)]}.weight") if id(layer) in names else None
    if weight is None:
        return []
    return [int(i) for i in (~weight.reshape(weight.shape[0], -1).any(1)).nonzero().squeeze(1)]


def consumer_inputs(root: nn.Module, inputs: Sequence[torch.Tensor],
                    layers: Sequence[M]) -> dict[M, torch.Tensor]:
    """The input each of ``layers`` receives on the probe batch (forward pre-hooks; a layer run
    twice: its first call's)."""
    seen: dict[M, torch.Tensor] = {}
    hooks = [layer.register_forward_pre_hook(lambda m, args: seen.setdefault(m, args[0].detach().clone()))
             for layer in layers]
    try:
        with torch.no_grad():
            root(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _consumers(group: Any, producer: nn.Linear) -> list[tuple[nn.Linear, list[int]]]:
    """The Linear layers whose input columns a torch-pruning group removes, with those columns."""
    out = []
    for dep, idxs in group:
        module = dep.target.module
        if isinstance(module, nn.Linear) and module is not producer and dep.handler.__name__ == "prune_in_channels":
            out.append((module, [int(i) for i in idxs]))
    return out


def remove_neurons(root: nn.Module, inputs: tuple[torch.Tensor, ...], rows: Mapping[nn.Linear, list[int]]) -> None:
    """Remove the ``rows`` of each layer of ``root`` and their columns in every consumer
    (torch-pruning traces ``root(*inputs)``), first folding each removed neuron's constant output
    into the consumers' biases."""
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(root, example_inputs=inputs)
    groups = [(layer, graph.get_pruning_group(layer, tp.prune_linear_out_channels, idxs=idxs))
              for layer, idxs in rows.items() if idxs]
    consumers = [(c, cols) for layer, group in groups for c, cols in _consumers(group, layer)]
    seen = consumer_inputs(root, inputs, [c for c, _ in consumers])
    with torch.no_grad():
        for consumer, cols in consumers:
            constant = seen[consumer][..., cols].reshape(-1, len(cols))
            if not torch.allclose(constant, constant[:1].expand_as(constant), atol=1e-6):
                raise UserError("export: --compact: a removed neuron's output is not constant (a layer between it "
                                "and its consumer is not element-wise)")
            if consumer.bias is None:
                raise UserError("export: --compact: a consumer of a removed neuron has no bias to take its output")
            consumer.bias.add_(consumer.weight[:, cols] @ constant[0])
    for _, group in groups:
        group.prune()
