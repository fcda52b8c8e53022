"""Removing the dead channels of Conv layers, and the dead neurons of Linear ones, wherever that is
exact: the torch domain's compact export (:mod:`multiticket.adapters.torch_export`).

A row of a Linear or Conv1d/2d/3d weight that the mask prunes whole is *dead*: whatever the input,
the channel outputs its bias, and after what lies between it and its consumers (BatchNorm in eval
mode, element-wise activations, pooling, flatten) a constant. torch-pruning's ``DependencyGraph``
traces the forward and says which entries of which layers go with the channel (BatchNorm features,
a consumer's input channels, a Linear's columns after a flatten: one per position); written here
is when removing them is exact, judged on the value each consumer receives from the channel on the
probe batch (measured, never assumed from the activation's type):

- **exactly zero** (its bias pruned too and act(0) = 0, or act(b) = 0): removed, nothing to fold;
- **a constant that a bias absorbs**: a Linear consumer's bias gains ``W[:, cols] @ c`` (one c per
  flattened position); a Conv consumer that pads with no zeros (``padding`` 0 or ``'valid'``, or a
  ``padding_mode`` that copies the constant: reflect, replicate, circular) reads c at every tap,
  so its bias gains ``c * W[:, ch].sum()``;
- **else kept whole**, and said why (:meth:`Removal.kept_list`): a zero-padded consumer (its
  border taps read 0, not c, and no bias absorbs a difference that depends on the position), a
  consumer without a bias, a value not constant over the batch and positions, a channel tied to
  another layer's (a residual sum: removing it would remove live channels there), one that reaches
  the model's output or a layer whose channels do not come apart (LayerNorm, GroupNorm, a grouped
  or transposed convolution). Grouped convolutions keep their own channels too.

The graph is traced again after each layer's removal (torch-pruning caches concatenation sizes),
and each layer's values are measured afresh: every removal before it was exact, so the channels
left see what they saw in the masked model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from multiticket.adapters.neuron_removal import consumer_inputs

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: the layers whose dead rows go: a Linear layer's neurons, a convolution's output channels
PRODUCERS = (nn.Linear, *CONVS)
#: normalisations over several channels: a channel removed changes what the others are divided by
ACROSS_CHANNELS = tuple(t for t in (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, getattr(nn, "RMSNorm", None))
                        if isinstance(t, type))
#: a measured value counts as constant over the batch and positions within this
CONSTANT_ATOL = 1e-6

#: one consumer's share of one removed channel: ``(consumer, what its bias gains)``
Fold = tuple[nn.Module, torch.Tensor]


@dataclass
class Removal:
    """What :func:`remove_dead` did: rows removed per layer name, dead rows kept per (layer, why)."""

    removed: dict[str, int] = field(default_factory=dict)
    kept: dict[tuple[str, str], int] = field(default_factory=dict)

    def keep(self, layer: str, why: str, n: int) -> None:
        self.kept[(layer, why)] = self.kept.get((layer, why), 0) + n

    def kept_list(self) -> list[dict[str, Any]]:
        """For ``export.json``: ``[{layer, channels, why}]``, in the order they were found."""
        return [{"layer": layer, "channels": n, "why": why} for (layer, why), n in self.kept.items()]


def producers(module: nn.Module) -> list[nn.Module]:
    """The Linear and Conv1d/2d/3d layers of ``module`` in module order: the candidates."""
    return [m for m in module.modules() if isinstance(m, PRODUCERS)]


def zero_pads(conv: _ConvNd) -> bool:
    """Whether ``conv`` reads zeros beyond its input's border (a constant channel then is not)."""
    if conv.padding_mode != "zeros":
        return False  # reflect, replicate, circular: the border repeats the constant
    padding, dilation, kernel = conv.padding, conv.dilation, conv.kernel_size
    if isinstance(padding, str):
        return padding == "same" and any(d * (k - 1) for d, k in zip(dilation, kernel))
    return any(padding)


def _obstacle(module: Any, handler: str, producer: nn.Module, names: Mapping[int, str]) -> str | None:
    """Why a group member (not a consumer) forbids removing the channels it holds; None: it is fine."""
    from torch_pruning import ops

    name = names.get(id(module), type(module).__name__)
    if isinstance(module, _BatchNorm) or (module is producer and handler == "prune_out_channels"):
        return None  # one affine map per channel (eval mode): its entries go with the channel
    if isinstance(module, ops._OutputOp):
        return "the channel reaches the model's output"
    if isinstance(module, ACROSS_CHANNELS):
        return f"it reaches {name} ({type(module).__name__}), which normalises across channels"
    if isinstance(module, CONVS) and module.groups != 1:
        return f"it reaches {name}, a grouped convolution, whose channels go with its groups"
    if isinstance(module, PRODUCERS) and handler == "prune_out_channels":
        return f"tied to the channels of {name} (a residual sum): removing it would remove live ones there"
    if isinstance(module, nn.Module) and next(module.parameters(), None) is None \
            and next(module.buffers(), None) is None:
        return None  # activations, pooling, flatten, concatenation: nothing of theirs to narrow
    return f"it reaches {name} ({type(module).__name__}), whose channels do not come apart exactly"


def _is_consumer(module: Any, handler: str) -> bool:
    """A layer whose input columns (channels) go with the channel, its bias taking the constant."""
    if handler != "prune_in_channels":
        return False
    return isinstance(module, nn.Linear) or (isinstance(module, CONVS) and module.groups == 1)


def _fold(consumer: nn.Module, seen: torch.Tensor, cols: list[int], name: str) -> tuple[str | None, Any]:
    """``(why the channel must stay, None)`` or ``(None, what the consumer's bias gains)`` for the
    columns ``cols`` of its input that one removed channel feeds (None: exactly zero, nothing)."""
    weight = consumer.weight
    assert isinstance(weight, torch.Tensor)
    if isinstance(consumer, nn.Linear):
        values = seen.reshape(-1, seen.shape[-1])[:, cols]  # a row per sample (and token)
        taps = weight[:, cols]
    else:  # a row per sample and position; the kernel's taps summed: each reads the constant
        channels = seen.movedim(seen.dim() - weight.dim() + 1, -1)
        values = channels.reshape(-1, channels.shape[-1])[:, cols]
        taps = weight[:, cols].flatten(2).sum(2)
    if not bool(values.any()):
        return None, None
    if not torch.allclose(values, values[:1].expand_as(values), atol=CONSTANT_ATOL, rtol=0):
        return (f"its output at {name} is not one constant over the probe batch and positions (a layer between "
                "them is not element-wise)", None)
    if isinstance(consumer, CONVS) and zero_pads(consumer):
        return (f"{name} pads its input with zeros and the channel's constant output is not 0: the border taps "
                "read 0 instead, a difference no bias absorbs", None)
    if getattr(consumer, "bias", None) is None:
        return f"{name} has no bias to take the channel's constant output", None
    return None, taps @ values[0]


def _judge(root: nn.Module, inputs: tuple[torch.Tensor, ...], producer: nn.Module, group: Any,
           names: Mapping[int, str]) -> tuple[dict[int, str], dict[int, list[Fold]]]:
    """For one layer's torch-pruning group of dead channels: why each channel that must stay
    stays, and what the consumers' biases gain for each of the others."""
    why: dict[int, str] = {}
    consumers: list[tuple[nn.Module, dict[int, list[int]]]] = []
    for item in group:
        dep, idxs = item
        module, handler = dep.target.module, dep.handler.__name__
        if _is_consumer(module, handler):
            cols: dict[int, list[int]] = {}
            for col, channel in zip(idxs, item.root_idxs):
                cols.setdefault(int(channel), []).append(int(col))
            consumers.append((module, cols))
        elif (problem := _obstacle(module, handler, producer, names)) is not None:
            for channel in item.root_idxs:
                why.setdefault(int(channel), problem)
    seen = consumer_inputs(root, inputs, [c for c, _ in consumers])
    folds: dict[int, list[Fold]] = {}
    with torch.no_grad():
        for consumer, by_channel in consumers:
            for channel, columns in by_channel.items():
                problem, gain = _fold(consumer, seen[consumer], columns, names.get(id(consumer), "?"))
                if problem is not None:
                    why.setdefault(channel, problem)
                elif gain is not None:
                    folds.setdefault(channel, []).append((consumer, gain))
    return why, folds


def remove_dead(root: nn.Module, inputs: tuple[torch.Tensor, ...], dead: Mapping[nn.Module, Sequence[int]]) -> Removal:
    """Remove from ``root`` (in place) every dead row of ``dead`` whose removal is exact, with its
    BatchNorm entries and its consumers' columns, its constant folded into their biases; the rest
    stay, with the reason (see the module docstring)."""
    import torch_pruning as tp

    names = {id(m): n for n, m in root.named_modules()}
    out = Removal()
    graph = None
    for layer, rows in dead.items():
        name = names[id(layer)]
        if not rows:
            continue
        if isinstance(layer, CONVS) and layer.groups != 1:
            out.keep(name, "a grouped convolution: its channels are tied to its groups", len(rows))
            continue
        if graph is None:
            graph = tp.DependencyGraph().build_dependency(root, example_inputs=inputs)
        handler = tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else tp.prune_conv_out_channels
        why, folds = _judge(root, inputs, layer, graph.get_pruning_group(layer, handler, idxs=list(rows)), names)
        for channel in rows:
            if channel in why:
                out.keep(name, why[channel], 1)
        gone = [int(r) for r in rows if r not in why]
        if not gone:
            continue
        with torch.no_grad():
            for consumer, gain in (f for r in gone for f in folds.get(r, [])):
                bias = consumer.bias
                assert isinstance(bias, torch.Tensor)
                bias.add_(gain)
        graph.get_pruning_group(layer, handler, idxs=gone).prune()
        out.removed[name] = len(gone)
        graph = None  # traced again: torch-pruning's concatenation sizes are those of the trace
    return out
