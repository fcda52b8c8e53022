"""``multiticket export`` for ``domain: torch``: the ticket as a folder plain torch loads.

**Format.** A folder, written atomically, of two files: ``model.safetensors`` (the model's state
dict) and ``export.json`` (``format``, the user ``module`` and its ``args``, and under ``linear``
the ``[in_features, out_features]`` of every Linear layer whose shape the compact export changed,
by module name). Safetensors rather than ``torch.save`` of the module: reading it runs no code
(a pickled module would, and would still need the user's classes), and rather than
``torch.export``: a traced program is bound to the input signature it was traced with, while the
user's own ``build_model`` rebuilds any forward. A plain torch script loads it so::

    model = build_model(0, spec["args"])                  # the user's builder: any seed
    for name, (n_in, n_out) in spec["linear"].items():   # the narrowed layers
        bias = model.get_submodule(name).bias is not None
        model.set_submodule(name, torch.nn.Linear(n_in, n_out, bias=bias))
    model.load_state_dict(safetensors.torch.load_file(folder + "/model.safetensors"))

**Compact** (a ``prune.structure: neurons`` ticket; any all-zero row of an unstructured one): every
hidden Linear layer (each but the model's output layers, ``io_layers()``) loses its dead neurons,
and their consumers the matching input columns, their constant act(b) folded into the consumers'
biases (torch-pruning traces the forward: :mod:`multiticket.adapters.neuron_removal`). The probe
input is the first example batch (``batches(seed, 0, args)``, its first element when a tuple or
list) or, without a tensor there, ``ones_input(args)``; the compact model's outputs on it must be
within :data:`TOLERANCE` of the masked model's. Conv channels are left whole: a removed channel's
constant output meets the next layer's zero padding, which no bias absorbs.
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

from multiticket.adapters.neuron_removal import dead_rows, linears, remove_neurons
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


def hidden_rows(model: nn.Module, mask: Mapping[str, torch.Tensor], outputs: list[str]) -> dict[nn.Linear, list[int]]:
    """The dead rows of each hidden Linear layer; one left with no neuron is refused."""
    out_ids = {id(m) for name, m in model.named_modules()
               if any(name == o or name.startswith(f"{o}.") for o in outputs)}
    rows = {layer: dead_rows(model, mask, layer) for layer in linears(model) if id(layer) not in out_ids}
    for layer, dead in rows.items():
        if dead and len(dead) == layer.out_features:
            raise UserError("export: --compact: a hidden layer of the ticket keeps no neuron (the network's output "
                            "no longer depends on its input)")
    return {layer: dead for layer, dead in rows.items() if dead}


def compact(adapter: Any, mask: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Remove the dead neurons of the adapter's model in place (checked on a probe batch); the
    narrowed layers' widths and what was removed, in numbers."""
    try:
        import torch_pruning  # noqa: F401
    except ModuleNotFoundError:
        raise UserError("export: --compact needs torch-pruning (pip install 'multiticket[compact]')") from None
    model: nn.Module = adapter.module
    model.eval()
    x = probe_input(adapter)
    before = _outputs(model, x)
    shapes = {name: (m.in_features, m.out_features) for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    rows = hidden_rows(model, mask, adapter.io_layers()[1])
    try:
        remove_neurons(model, (x,), rows)
    except UserError:
        raise
    except Exception as exc:  # torch-pruning tracing the user's forward
        raise UserError(f"export: --compact: tracing the model's forward failed: {type(exc).__name__}: {exc}") from exc
    after = _outputs(model, x)
    diff = max((float((a - b).abs().max()) for a, b in zip(before, after)), default=0.0)
    if len(before) != len(after) or not diff <= TOLERANCE:
        raise UserError(f"export: --compact: the compact model's outputs differ from the ticket's by {diff:.3g}")
    linear = {name: [m.in_features, m.out_features] for name, m in model.named_modules()
              if isinstance(m, nn.Linear) and shapes.get(name) != (m.in_features, m.out_features)}
    return {"neurons_removed": sum(len(r) for r in rows.values()), "linear": linear, "max_abs_diff": diff,
            "net_arch": {name: m.out_features for name, m in model.named_modules() if isinstance(m, nn.Linear)}}


def export_folder(adapter: Any, path: Path, mask: Mapping[str, torch.Tensor], compact_it: bool) -> dict[str, Any]:
    """Write the adapter's model (the masked ticket) to the folder ``path`` atomically;
    ``compact_it``: its dead neurons removed first. Returns the summary ``multiticket export`` prints."""
    path = Path(path)
    if path.exists():
        raise UserError(f"--out: {path} exists; name a new folder to write")
    model: nn.Module = adapter.module
    dense = sum(p.numel() for p in model.parameters())
    summary: dict[str, Any] = compact(adapter, mask) if compact_it else {"linear": {}}
    summary.update(dense_parameters=dense, parameters=sum(p.numel() for p in model.parameters()))
    spec = {"format": FORMAT, "module": adapter.section.module, "args": adapter.section.args,
            "linear": summary["linear"], "parameters": summary["parameters"]}
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
