"""``multiticket export`` for ``domain: torch`` (issue #34): a user's MLP (nn.Sequential of Linear
layers) pruned at ``prune.structure: neurons`` exports compact to a folder (safetensors and JSON)
that a plain torch script loads with the user's own ``build_model``, in a process that never
imports multiticket: fewer parameters, the masked ticket's outputs (removed neurons' constant
outputs folded into the next layer's bias)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("torch_pruning")

from multiticket.cli import main as cli_main  # noqa: E402
from tests.runsnap import only_run, refusing, unit_mask  # noqa: E402

MODULE = '''
import torch
from torch import nn

def build_model(seed, args):
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3))

def _data(g, n):
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()

def batches(seed, start, args):
    step = start
    while True:
        yield _data(torch.Generator().manual_seed(seed * 100003 + step), 32)
        step += 1

def loss(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])

def evaluate(model, args):
    x, y = _data(torch.Generator().manual_seed(999), 128)
    return {"accuracy": float((model(x).argmax(1) == y).float().mean())}
'''

#: plain torch: the user's module and the recipe of multiticket.adapters.torch_export's docstring
PLAIN = refusing("multiticket") + r"""
import torch
from safetensors.torch import load_file
folder, masked, module_dir = sys.argv[1:4]
sys.path.insert(0, module_dir)
from mlp_task import build_model
spec = json.load(open(folder + "/export.json"))
model = build_model(0, spec["args"])
for name, (n_in, n_out) in spec["linear"].items():
    bias = model.get_submodule(name).bias is not None
    model.set_submodule(name, torch.nn.Linear(n_in, n_out, bias=bias))
model.load_state_dict(load_file(folder + "/model.safetensors"))
dense = build_model(0, spec["args"])
dense.load_state_dict(load_file(masked))
x = torch.randn(256, 6, generator=torch.Generator().manual_seed(5))
with torch.no_grad():
    out = {"compact": model(x).tolist(), "masked": dense(x).tolist(),
           "parameters": [sum(p.numel() for p in m.parameters()) for m in (model, dense)]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two levels of neurons at rate 0.5 (28 hidden neurons -> 14 -> 7), biases outside the scope."""
    tmp = tmp_path_factory.mktemp("mlp")
    (tmp / "mlp_task.py").write_text(MODULE)
    task = {"name": "mlp", "domain": "torch", "seeds": [0], "train": {"steps": 20},
            "prune": {"rate": 0.5, "levels": 2, "structure": "neurons"}, "rewind": {"step": 2},
            "controls": ["random_mask"], "torch": {"module": "mlp_task", "lr": 0.1}}
    (tmp / "t.yaml").write_text(yaml.safe_dump(task))
    assert cli_main(["run", str(tmp / "t.yaml"), "--out", str(tmp / "out"), "--quiet"]) == 0
    return only_run(tmp / "out"), tmp


def test_the_compact_folder_loads_in_plain_torch_with_the_tickets_outputs(mlp_run: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    run, module_dir = mlp_run
    out = tmp_path / "compact"
    args = ["export", str(run), "--seed", "0", "--level", "2", "--compact", "--trust-code", "--out", str(out)]
    assert cli_main(args) == 0
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "export.json"}
    mask = unit_mask(run, "ticket", 2)
    alive = [int(mask[f"{i}.weight"].any(1).sum()) for i in (0, 2)]
    assert sum(alive) == 7 and bool(mask["4.weight"].all())  # the output layer is kept whole
    spec = json.loads((out / "export.json").read_text())
    assert spec["format"] == "multiticket-torch" and spec["module"] == "mlp_task"
    assert spec["linear"] == {"0": [6, alive[0]], "2": [alive[0], alive[1]], "4": [alive[1], 3]}
    masked = run / "seed_0/ticket/level_2/final.safetensors"
    done = subprocess.run([sys.executable, "-I", "-c", PLAIN, str(out), str(masked), str(module_dir)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    small, dense = result["parameters"]
    # a removed neuron of layer 0: its row, its bias, its column of layer 2; of layer 2: the same (of the rest)
    assert small == dense - (16 - alive[0]) * (6 + 1 + 12) - (12 - alive[1]) * (alive[0] + 1 + 3)
    assert torch.allclose(torch.tensor(result["compact"]), torch.tensor(result["masked"]), atol=1e-5, rtol=0)


def test_a_plain_export_keeps_the_shapes_and_untrusted_code_is_refused(mlp_run: tuple[Path, Path],
                                                                       tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = mlp_run
    out = tmp_path / "plain"
    assert cli_main(["export", str(run), "--seed", "0", "--level", "1", "--trust-code", "--out", str(out)]) == 0
    assert json.loads((out / "export.json").read_text())["linear"] == {}
    assert cli_main(["export", str(run), "--seed", "0", "--level", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--trust-code" in capsys.readouterr().err
