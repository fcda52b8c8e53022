"""``domain: torch`` on the shipped example (examples/digits_cnn): the usual run directory, masks
exact after every step and at the planned counts, the same results on the 2-worker pool as in
process, and one-line errors (exit 2, nothing under --out) for a bad user module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from multiticket.adapters.torch import TorchAdapter, TorchSection
from multiticket.cli import main
from multiticket.config import load_task
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.hooks import LevelHooks
from multiticket.core.mask import Mask
from tests.runsnap import only_run, snapshot

pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits_cnn"
#: a tiny budget: 40 steps of 16 images, a 4-channel CNN
TINY = ["--set", "train.steps=40", "--set", "rewind.step=4", "--set", "torch.args={channels: 4, hidden: 16, batch_size: 16}",
        "--set", "controls=[random_reinit, random_mask]", "--levels", "2"]  # fmt: skip


def _run(out: Path, *extra: str) -> Path:
    assert main(["run", str(EXAMPLE / "task.yaml"), "--out", str(out), "--quiet", *TINY, *extra]) == 0
    return only_run(out)


def test_example_writes_the_usual_run_directory_with_exact_masks(tmp_path):
    run = _run(tmp_path / "out")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["domain"] == "torch" and config["torch"]["module_dir"] == str(EXAMPLE.resolve())
    units = sorted(str(p.parent.relative_to(run)) for p in run.rglob("DONE") if "level_" in str(p))
    assert len(units) == 7  # dense + 2 levels x (ticket, random_reinit, random_mask)
    names = ["0.weight", "2.weight", "6.weight", "8.weight"]  # Conv2d and Linear weights
    for unit in units:
        d = run / unit
        mask, final = Mask.load(d / "mask.safetensors"), load_file(str(d / "final.safetensors"))
        record = json.loads((d / "metrics.json").read_text())
        assert list(mask) == names and record["metric"] == "accuracy" and 0 <= record["metrics"]["accuracy"] <= 1
        assert record["alive"] == mask.num_alive and record["prunable"] == mask.numel
        assert record["sparsity"] == pytest.approx(record["planned_sparsity"], abs=1e-3)
        assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
    assert "summary.csv" in {p.name for p in run.iterdir()}


def test_the_same_results_on_the_two_worker_pool(tmp_path):
    """Pool workers import the user module from the recorded module_dir."""
    assert snapshot(_run(tmp_path / "a")) == snapshot(_run(tmp_path / "b", "--workers", "2"))


def _adapter(tmp_path: Path) -> TorchAdapter:
    task = load_task(EXAMPLE / "task.yaml", ["torch.args={channels: 4, hidden: 16, batch_size: 16}"])
    return TorchAdapter(task.config, task.section, tmp_path)


def test_pruned_weights_are_zero_after_every_step_and_batches_replay(tmp_path):
    adapter = _adapter(tmp_path)
    adapter.build(0)
    params = dict(adapter.module.named_parameters())
    g = torch.Generator().manual_seed(1)
    mask = Mask({n: torch.rand(params[n].shape, generator=g) > 0.5 for n in adapter.default_prunable()})
    enforcer = MaskEnforcer(adapter.module, mask, grads=adapter.grad_masking).attach()
    hooks = LevelHooks(adapter, enforcer, 0)
    checked = []
    original = hooks.on_step

    def on_step(step: int, logs: dict | None = None) -> None:
        assert all(torch.count_nonzero(params[n].detach()[~m]) == 0 for n, m in mask.items()), step
        checked.append(step)
        original(step, logs)

    hooks.on_step = on_step  # type: ignore[method-assign]
    adapter.train(0, 30, hooks)
    enforcer.detach()
    assert checked == list(range(1, 31))
    first = [b[1] for _, b in zip(range(5), adapter.user.batches(0, 25, adapter.section.args))]
    again = [b[1] for _, b in zip(range(30), adapter.user.batches(0, 0, adapter.section.args))][25:]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def _task(tmp_path: Path, code: str | None, **section) -> Path:
    if code is not None:
        (tmp_path / "mytask.py").write_text(code)
    task = {"name": "mine", "domain": "torch", "train": {"steps": 4}, "prune": {"levels": 1}, "controls": [],
            "rewind": {"step": 0}, "torch": {"module": "mytask", **section}}  # fmt: skip
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


GOOD = """
import torch
def build_model(seed, args): return torch.nn.Linear(4, 2)
def batches(seed, start, args):
    for _ in range(args.get("n", 10**9)):
        yield torch.ones(3, 4), torch.zeros(3, dtype=torch.long)
def loss(model, batch): return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
def evaluate(model, args): return {"acc": 1.0}
"""


@pytest.mark.parametrize(
    ("code", "section", "message"),
    [
        (None, {}, "torch.module: no module 'mytask' in {dir} or on sys.path"),
        (
            "def build_model(seed, args): pass\n",
            {},
            "torch.module: 'mytask' has no function batches, loss, evaluate "
            "(it needs build_model, batches, loss, evaluate)",
        ),
        ("raise RuntimeError('boom')\n", {}, "torch.module: importing 'mytask' failed: RuntimeError: boom"),
        (
            GOOD.replace("torch.nn.Linear(4, 2)", "[1]"),
            {},
            "torch.module: mytask.build_model returned a list, not a torch.nn.Module",
        ),
        (
            GOOD,
            {"args": {"n": 2}},
            "torch.module: mytask.batches(seed, 0, args) ended at step 2; it must yield one "
            "batch per step up to train.steps (4): loop over epochs",
        ),
        (GOOD, {}, "torch.metric: 'accuracy' is not among what mytask.evaluate returned (acc)"),
        (GOOD + "def baselines(args): return {'majority_rate': float('nan')}\n", {"metric": "acc"},
         "torch.module: mytask.baselines must return a dict of finite numbers"),
    ],
)
def test_a_bad_user_module_is_one_line_and_exit_2(tmp_path, capsys, code, section, message):
    path = _task(tmp_path, code, **section)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(message.format(dir=tmp_path.resolve())), line
    if "evaluate returned" not in message and "ended at step" not in message:  # caught before training
        assert not out.exists()


def test_good_module_trains_and_module_dir_is_not_hashed(tmp_path):
    path = _task(tmp_path, GOOD, metric="acc")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "mytask.py").write_text(GOOD)
    (moved / "task.yaml").write_text(path.read_text())
    assert load_task(moved / "task.yaml").run_name == load_task(path).run_name
    assert TorchSection(module="mytask").module_dir is None


def test_the_user_modules_baselines_are_recorded(tmp_path):
    path = _task(tmp_path, GOOD + "def baselines(args): return {'majority_rate': 0.5}\n", metric="acc")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    record = json.loads((only_run(tmp_path / "out") / "baselines.json").read_text())
    assert record == {"baselines": {"majority_rate": 0.5}, "domain": "torch", "format": 1}


def test_every_control_early_bird_and_targeted_dropout(tmp_path):
    """What the other domains get, on the example: every control of one level, the early-bird
    search and targeted dropout's prune_dense_td, each unit with its planned counts."""
    controls = (
        "[random_reinit, random_mask, random_mask_global, permuted_init, permuted_mask, one_shot, "
        "rewind_init, early_bird, prune_dense, prune_dense_td]"
    )
    run = _run(
        tmp_path / "out",
        "--levels",
        "1",
        "--set",
        f"controls={controls}",
        "--set",
        "early_bird={interval: 4}",
        "--set",
        "targeted_dropout={alpha: 0.5, gamma: 0.5}",
    )
    done = {str(p.parent.relative_to(run)) for p in run.rglob("DONE") if "level_1" in str(p)}
    for control in ["ticket", *controls.strip("[]").split(", ")]:
        assert f"seed_0/{control}/level_1" in done, control
        d = run / f"seed_0/{control}/level_1"
        mask, final = Mask.load(d / "mask.safetensors"), load_file(str(d / "final.safetensors"))
        assert mask.sparsity == pytest.approx(0.2, abs=1e-3), control
        assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items()), control
