"""``multiticket export`` for ``domain: torch``: the ticket as a folder plain torch loads.

**Format.** A folder, written atomically, of two files: ``model.safetensors`` (the model's state
dict) and ``export.json``: ``format``, the user ``module`` and its ``args``, and the layers whose
shape the compact export changed, by module name: under ``linear`` their ``[in_features,
out_features]``, under ``conv`` their ``{in_channels, out_channels}``, under ``batchnorm`` their
``num_features`` (a folder written before Conv channels were removed has only ``linear``: read the
other two with ``.get(key, {})``); ``dead_kept`` lists the dead channels (neurons) left in place,
``[{layer, channels, why}]``. Safetensors rather than ``torch.save`` of the module: reading it runs
no code (a pickled module would, and would still need the user's classes), and rather than
``torch.export``: a traced program is bound to the input signature it was traced with, while the
user's own ``build_model`` rebuilds any forward. A plain torch script loads it so::

    model = build_model(0, spec["args"])                     # the user's builder: any seed
    for name, (n_in, n_out) in spec["linear"].items():      # the narrowed layers
        bias = model.get_submodule(name).bias is not None
        model.set_submodule(name, torch.nn.Linear(n_in, n_out, bias=bias))
    for name, c in spec.get("conv", {}).items():
        old = model.get_submodule(name)                      # Conv1d/2d/3d: the same type and hyperparameters
        model.set_submodule(name, type(old)(c["in_channels"], c["out_channels"], old.kernel_size, old.stride,
                                            old.padding, old.dilation, old.groups, old.bias is not None,
                                            old.padding_mode))
    for name, n in spec.get("batchnorm", {}).items():
        old = model.get_submodule(name)
        model.set_submodule(name, type(old)(n, old.eps, old.momentum, old.affine, old.track_running_stats))
    model.load_state_dict(safetensors.torch.load_file(folder + "/model.safetensors"))

**Compact** (a ``prune.structure: neurons`` ticket; any all-zero row of an unstructured one): every
hidden Linear and Conv1d/2d/3d layer (each but the model's output layers, ``io_layers()``) loses
its dead neurons or output channels wherever that is exact, and their consumers the matching input
columns or channels (BatchNorm layers between them the matching features), the constant output of
each folded into the consumers' biases (torch-pruning traces the forward:
:mod:`multiticket.adapters.channel_removal`, which says when a channel stays: chiefly a nonzero
constant meeting a consumer's zero padding, which no bias absorbs). The probe input is the first
example batch (``batches(seed, 0, args)``, its first element when a tuple or list) or, without a
tensor there, ``ones_input(args)``; the model is in eval mode (BatchNorm's running statistics). The
compact model's outputs on it must be within :data:`TOLERANCE` of the masked model's, or the
export fails and writes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from multiticket.adapters.channel_removal import CONVS, PRODUCERS, producers, remove_dead
from multiticket.adapters.neuron_removal import dead_rows
from multiticket.errors import UserError

#: largest difference between the masked and the compact model's outputs that counts as equal
TOLERANCE = 1e-5
FORMAT = "multiticket-torch"


def probe_input(adapter: Any, n: int = 16) -> torch.Tensor:
    """A batch of the model's input (see the module docstring), on the model's device."""
    batch = adapter.scoring_batches(adapter.seed, 1)[0]
    example = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    if not isinstance(example, torch.Tensor):
        if not callable(getattr(adapter.user, "ones_input", None)):
            raise UserError(f"torch.module: {adapter.section.module}: export --compact needs a tensor input: the "
                            f"batches are {type(batch).__name__}; define ones_input(args)")
        example = torch.as_tensor(adapter.user.ones_input(adapter.section.args), dtype=torch.float32)
    return example[:n].to(next(adapter.module.parameters()).device)


def _outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(x)
    return [t.detach().clone() for t in (out if isinstance(out, tuple | list) else (out,))]


def hidden_rows(model: nn.Module, mask: Mapping[str, torch.Tensor], outputs: list[str]) -> dict[nn.Module, list[int]]:
    """The dead rows of each hidden Linear and Conv layer; one left with no neuron is refused."""
    out_ids = {id(m) for name, m in model.named_modules()
               if any(name == o or name.startswith(f"{o}.") for o in outputs)}
    rows = {layer: dead_rows(model, mask, layer) for layer in producers(model) if id(layer) not in out_ids}
    for layer, dead in rows.items():
        if dead and len(dead) == _weight(layer).shape[0]:
            raise UserError("export: --compact: a hidden layer of the ticket keeps no neuron (the network's output "
                            "no longer depends on its input)")
    return {layer: dead for layer, dead in rows.items() if dead}


def _weight(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def shapes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """What ``export.json`` says of each Linear, Conv and BatchNorm layer, by kind and name."""
    out: dict[str, dict[str, Any]] = {"linear": {}, "conv": {}, "batchnorm": {}}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            out["linear"][name] = [m.in_features, m.out_features]
        elif isinstance(m, CONVS):
            out["conv"][name] = {"in_channels": m.in_channels, "out_channels": m.out_channels}
        elif isinstance(m, _BatchNorm):
            out["batchnorm"][name] = m.num_features
    return out


def _max_diff(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
    """The largest difference between the two models' outputs; refused above :data:`TOLERANCE`."""
    if [t.shape for t in before] != [t.shape for t in after]:
        raise UserError("export: --compact: the compact model's outputs have other shapes than the ticket's "
                        f"({[tuple(t.shape) for t in after]} for {[tuple(t.shape) for t in before]})")
    diff = max((float((a - b).abs().max()) for a, b in zip(before, after)), default=0.0)
    if not diff <= TOLERANCE:
        raise UserError(f"export: --compact: the compact model's outputs differ from the ticket's by {diff:.3g}")
    return diff


def compact(adapter: Any, mask: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Remove the dead neurons and channels of the adapter's model in place where exact (checked
    on a probe batch); the narrowed layers' shapes, what was removed and what was kept, and why."""
    try:
        import torch_pruning  # noqa: F401
    except ModuleNotFoundError:
        raise UserError("export: --compact needs torch-pruning (pip install 'multiticket[compact]')") from None
    model: nn.Module = adapter.module
    model.eval()
    x = probe_input(adapter)
    before, old = _outputs(model, x), shapes(model)
    rows = hidden_rows(model, mask, adapter.io_layers()[1])
    try:
        removal = remove_dead(model, (x,), rows)
    except UserError:
        raise
    except Exception as exc:  # torch-pruning tracing the user's forward
        raise UserError(f"export: --compact: tracing the model's forward failed: {type(exc).__name__}: {exc}") from exc
    diff = _max_diff(before, _outputs(model, x))
    new = shapes(model)
    changed = {kind: {n: v for n, v in layers.items() if old[kind].get(n) != v} for kind, layers in new.items()}
    convs = {n for n, m in model.named_modules() if isinstance(m, CONVS)}
    return {"neurons_removed": sum(removal.removed.values()),
            "channels_removed": sum(n for name, n in removal.removed.items() if name in convs),
            "dead_kept": removal.kept_list(), **changed, "max_abs_diff": diff,
            "net_arch": {name: _weight(m).shape[0] for name, m in model.named_modules() if isinstance(m, PRODUCERS)}}


def export_folder(adapter: Any, path: Path, mask: Mapping[str, torch.Tensor], compact_it: bool) -> dict[str, Any]:
    """Write the adapter's model (the masked ticket) to the folder ``path`` atomically;
    ``compact_it``: its dead neurons and channels removed first. Returns the summary ``multiticket export`` prints."""
    path = Path(path)
    if path.exists():
        raise UserError(f"--out: {path} exists; name a new folder to write")
    model: nn.Module = adapter.module
    dense = sum(p.numel() for p in model.parameters())
    summary: dict[str, Any] = (compact(adapter, mask) if compact_it
                               else {"linear": {}, "conv": {}, "batchnorm": {}, "dead_kept": []})
    summary.update(dense_parameters=dense, parameters=sum(p.numel() for p in model.parameters()))
    spec = {"format": FORMAT, "module": adapter.section.module, "args": adapter.section.args,
            **{key: summary[key] for key in ("linear", "conv", "batchnorm", "dead_kept", "parameters")}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        save_file({k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"))
        (tmp / "export.json").write_text(json.dumps(spec, indent=1, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"path": str(path), **summary}
