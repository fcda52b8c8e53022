"""The compact torch export removes dead Conv channels where that is exact: a channel whose output
is zero after its activation (its bias pruned too), or a constant a consumer's bias absorbs (a Conv
that pads nothing, a Linear after a flatten, with BatchNorm between); a nonzero constant meeting
zero padding stays, and ``export.json`` says why. Each folder is loaded by plain torch (the recipe
of multiticket.adapters.torch_export's docstring) in a process that never imports multiticket, with
the masked ticket's outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

pytest.importorskip("torch_pruning")

from multiticket.adapters import torch_export  # noqa: E402
from multiticket.adapters.channel_removal import remove_dead  # noqa: E402
from multiticket.adapters.torch import TorchAdapter  # noqa: E402
from multiticket.adapters.torch_export import export_folder  # noqa: E402
from multiticket.cli import main as cli_main  # noqa: E402
from multiticket.config import load_task  # noqa: E402
from multiticket.errors import UserError  # noqa: E402
from tests.runsnap import only_run, refusing, unit_mask  # noqa: E402

#: tiny CNNs on 1x8x8 images, picked by ``args["kind"]``
MODULE = '''
import torch
from torch import nn

def build_model(seed, args):
    kind = args["kind"]
    if kind == "padded":  # Conv -> ReLU -> Conv(padding=1)
        return nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                             nn.Flatten(), nn.Linear(8 * 36, 3))
    if kind == "valid":  # Conv -> ReLU -> Conv(padding=0)
        return nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Conv2d(6, 8, 3), nn.ReLU(),
                             nn.Flatten(), nn.Linear(8 * 16, 3))
    return nn.Sequential(nn.Conv2d(1, 6, 3, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 36, 3))  # "bn"

def prunable(model):
    return [n for n, _ in model.named_parameters()]

def _data(g, n):
    x = torch.randn(n, 1, 8, 8, generator=g)
    return x, (x[:, 0, :4].mean((1, 2)) > 0).long() + (x[:, 0, 4:].mean((1, 2)) > 0).long()

def batches(seed, start, args):
    step = start
    while True:
        yield _data(torch.Generator().manual_seed(seed * 100003 + step), 16)
        step += 1

def loss(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])

def evaluate(model, args):
    x, y = _data(torch.Generator().manual_seed(999), 64)
    return {"accuracy": float((model(x).argmax(1) == y).float().mean())}
'''

#: plain torch: the user's module and the loading recipe of multiticket.adapters.torch_export's docstring
PLAIN = refusing("multiticket") + r"""
import torch
from safetensors.torch import load_file
folder, masked, module_dir = sys.argv[1:4]
sys.path.insert(0, module_dir)
from cnn_task import build_model
spec = json.load(open(folder + "/export.json"))
model = build_model(0, spec["args"])
for name, (n_in, n_out) in spec["linear"].items():
    bias = model.get_submodule(name).bias is not None
    model.set_submodule(name, torch.nn.Linear(n_in, n_out, bias=bias))
for name, c in spec.get("conv", {}).items():
    old = model.get_submodule(name)
    model.set_submodule(name, type(old)(c["in_channels"], c["out_channels"], old.kernel_size, old.stride,
                                        old.padding, old.dilation, old.groups, old.bias is not None,
                                        old.padding_mode))
for name, n in spec.get("batchnorm", {}).items():
    old = model.get_submodule(name)
    model.set_submodule(name, type(old)(n, old.eps, old.momentum, old.affine, old.track_running_stats))
model.load_state_dict(load_file(folder + "/model.safetensors"))
dense = build_model(0, spec["args"])
dense.load_state_dict(load_file(masked))
model.eval(), dense.eval()
x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(5))
with torch.no_grad():
    out = {"compact": model(x).tolist(), "masked": dense(x).tolist(),
           "parameters": [sum(p.numel() for p in m.parameters()) for m in (model, dense)]}
assert not any(m == "multiticket" or m.startswith("multiticket.") for m in sys.modules)
print(json.dumps(out))
"""


def _task(tmp: Path, kind: str, **prune: object) -> Path:
    (tmp / "cnn_task.py").write_text(MODULE)
    task = {"name": f"cnn-{kind}", "domain": "torch", "seeds": [0], "train": {"steps": 12},
            "prune": {"rate": 0.5, "levels": 1, "structure": "neurons", **prune}, "rewind": {"step": 2},
            "controls": [], "torch": {"module": "cnn_task", "lr": 0.05, "args": {"kind": kind}}}
    (tmp / "task.yaml").write_text(yaml.safe_dump(task))
    return tmp / "task.yaml"


def _plain(folder: Path, masked: Path, module_dir: Path) -> dict:
    """What the plain torch script reads from the folder: outputs of both models, their sizes."""
    done = subprocess.run([sys.executable, "-I", "-c", PLAIN, str(folder), str(masked), str(module_dir)],
                          capture_output=True, text=True, timeout=120, cwd=folder.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert torch.allclose(torch.tensor(result["compact"]), torch.tensor(result["masked"]), atol=1e-5, rtol=0)
    return result


def _ticket(tmp: Path, kind: str, dead: dict[str, list[int]],
            values: dict[str, dict[int, float]]) -> tuple[TorchAdapter, dict[str, torch.Tensor]]:
    """The model of ``kind`` with the rows ``dead`` (by layer) masked and some entries of its
    tensors (biases, BatchNorm statistics) set by hand, and its mask; its masked state saved as
    ``masked.safetensors`` beside the module."""
    task = load_task(_task(tmp, kind))
    adapter = TorchAdapter(task.config, task.section, tmp)
    adapter.build(0)
    params = dict(adapter.module.named_parameters())
    mask = {f"{n}.weight": torch.ones_like(params[f"{n}.weight"], dtype=torch.bool) for n in dead}
    with torch.no_grad():
        for layer, rows in dead.items():
            mask[f"{layer}.weight"][rows] = False
            params[f"{layer}.weight"][rows] = 0.0
        for name, entries in values.items():
            owner, attr = name.rsplit(".", 1)
            tensor = getattr(adapter.module.get_submodule(owner), attr)
            for i, v in entries.items():
                tensor[i] = v
    save_file({k: v.detach().clone().contiguous() for k, v in adapter.module.state_dict().items()},
              str(tmp / "masked.safetensors"))
    return adapter, mask


def test_a_ticket_with_pruned_biases_exports_narrower_through_a_padded_consumer(tmp_path: Path) -> None:
    """(a) a tiny IMP run, biases in the scope: a removed channel outputs ReLU(0) = 0, which the
    next Conv's zero padding cannot tell from a live one's border, so every dead channel goes."""
    path = _task(tmp_path, "padded", biases=True, strategy="layerwise_magnitude")
    assert cli_main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    run = only_run(tmp_path / "out")
    mask = unit_mask(run, "ticket", 1)
    alive = [int(mask[f"{i}.weight"].reshape(mask[f"{i}.weight"].shape[0], -1).any(1).sum()) for i in (0, 2)]
    assert alive[0] < 6 and alive[1] < 8 and not bool(mask["0.bias"].all())
    out = tmp_path / "compact"
    assert cli_main(["export", str(run), "--seed", "0", "--level", "1", "--compact", "--trust-code",
                     "--out", str(out)]) == 0
    spec = json.loads((out / "export.json").read_text())
    assert spec["conv"] == {"0": {"in_channels": 1, "out_channels": alive[0]},
                            "2": {"in_channels": alive[0], "out_channels": alive[1]}}
    assert spec["linear"] == {"5": [alive[1] * 36, 3]} and spec["batchnorm"] == {} and spec["dead_kept"] == []
    result = _plain(out, run / "seed_0/ticket/level_1/final.safetensors", tmp_path)
    small, dense = result["parameters"]
    assert small == dense - (6 - alive[0]) * (9 + 1 + 8 * 9) - (8 - alive[1]) * (alive[0] * 9 + 1 + 36 * 3)


def test_a_constant_channel_is_folded_into_a_consumer_that_pads_nothing(tmp_path: Path) -> None:
    """(b) biases kept (nonzero): ReLU(b) reaches a padding-0 Conv and, after a flatten, a Linear;
    both biases take it, and both layers narrow."""
    adapter, mask = _ticket(tmp_path, "valid", {"0": [1, 4], "2": [2]}, {"0.bias": {1: 0.5, 4: 0.3}, "2.bias": {2: 0.7}})
    bias_before = adapter.module[2].bias.detach().clone()
    done = export_folder(adapter, tmp_path / "compact", mask, True)
    assert done["neurons_removed"] == done["channels_removed"] == 3 and done["dead_kept"] == []
    assert done["conv"] == {"0": {"in_channels": 1, "out_channels": 4}, "2": {"in_channels": 4, "out_channels": 7}}
    assert done["linear"] == {"5": [7 * 16, 3]}
    assert not torch.equal(adapter.module[2].bias, bias_before[[0, 1, 3, 4, 5, 6, 7]])  # folded
    result = _plain(tmp_path / "compact", tmp_path / "masked.safetensors", tmp_path)
    assert result["parameters"][0] == result["parameters"][1] - 2 * (9 + 1 + 8 * 9) - (4 * 9 + 1 + 16 * 3)


def test_a_nonzero_constant_meeting_zero_padding_stays_and_export_json_says_why(tmp_path: Path) -> None:
    """(c) channel 1's ReLU(0.5) would meet the padded Conv's zeros: it stays; channel 4's ReLU(-0.5)
    is exactly 0 and goes, padding or not."""
    adapter, mask = _ticket(tmp_path, "padded", {"0": [1, 4]}, {"0.bias": {1: 0.5, 4: -0.5}})
    done = export_folder(adapter, tmp_path / "compact", mask, True)
    assert done["conv"] == {"0": {"in_channels": 1, "out_channels": 5}, "2": {"in_channels": 5, "out_channels": 8}}
    spec = json.loads((tmp_path / "compact" / "export.json").read_text())
    (kept,) = spec["dead_kept"]
    assert kept["layer"] == "0" and kept["channels"] == 1 and "2 pads its input with zeros" in kept["why"]
    _plain(tmp_path / "compact", tmp_path / "masked.safetensors", tmp_path)


def test_batchnorm_between_a_conv_and_a_linear_after_a_flatten(tmp_path: Path) -> None:
    """(d) Conv (no bias) -> BatchNorm -> ReLU -> flatten -> Linear: in eval mode a dead channel
    outputs ReLU(beta - gamma * mean / sqrt(var + eps)), folded per position into the Linear's bias;
    the BatchNorm loses the channel's features."""
    stats = {"1.running_mean": {0: 0.3, 3: -0.4, 5: 0.2}, "1.running_var": {0: 2.0, 3: 0.5, 5: 1.5},
             "1.bias": {0: 0.6, 3: 0.1, 5: -0.2}}
    adapter, mask = _ticket(tmp_path, "bn", {"0": [0, 3, 5]}, stats)
    done = export_folder(adapter, tmp_path / "compact", mask, True)
    assert done["conv"] == {"0": {"in_channels": 1, "out_channels": 3}} and done["batchnorm"] == {"1": 3}
    assert done["linear"] == {"4": [3 * 36, 3]} and done["dead_kept"] == []
    result = _plain(tmp_path / "compact", tmp_path / "masked.safetensors", tmp_path)
    assert result["parameters"][0] == result["parameters"][1] - 3 * (9 + 2 + 36 * 3)


def test_channels_tied_by_a_residual_sum_or_a_grouped_conv_stay() -> None:
    """What torch-pruning couples to other layers' channels is never removed (it would take live
    channels with it); each is counted with its reason."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
            self.dw, self.head = nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.a(x))
            return self.head(self.dw(h + self.b(h)))

    net = Net().eval()
    with torch.no_grad():
        net.a.weight[1] = 0.0
        net.dw.weight[2] = 0.0
    x = torch.randn(4, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    before = net(x)
    done = remove_dead(net, (x,), {net.a: [1], net.dw: [2]})
    assert done.removed == {} and torch.equal(net(x), before)
    assert [(k["layer"], k["channels"]) for k in done.kept_list()] == [("a", 1), ("dw", 1)]
    assert "residual sum" in done.kept_list()[0]["why"] and "grouped" in done.kept_list()[1]["why"]


def test_a_compact_model_that_differs_from_the_ticket_fails_and_writes_nothing(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe check is the safety net: a removal gone wrong (here: a bias nudged afterwards)
    stops the export in one line, before the folder exists."""
    adapter, mask = _ticket(tmp_path, "valid", {"0": [1]}, {"0.bias": {1: 0.5}})

    def wrong(root: nn.Module, inputs: tuple[torch.Tensor, ...], dead: dict) -> object:
        done = remove_dead(root, inputs, dead)
        with torch.no_grad():
            root[2].bias[0] += 1e-3
        return done

    monkeypatch.setattr(torch_export, "remove_dead", wrong)
    with pytest.raises(UserError, match="outputs differ from the ticket's by "):
        export_folder(adapter, tmp_path / "compact", mask, True)
    assert not (tmp_path / "compact").exists()
