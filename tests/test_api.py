"""The Python API: run a toy task through ``multiticket.run``, read its summary as a DataFrame, apply
a ticket to a fresh model and train it in a hand-written loop with the enforcer as a context manager."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import multiticket
from multiticket.adapters.toy import ToySection, make_dataset, make_mlp
from multiticket.cli import main as cli_main
from multiticket.errors import UserError

TASK = {
    "name": "toy-api", "domain": "toy", "seeds": [0], "train": {"steps": 120}, "rewind": {"step": 10},
    "prune": {"levels": 2}, "controls": ["random_reinit"],
    "toy": {"n_train": 512, "n_test": 256, "hidden": [32, 16], "lr": 0.05},
}


def test_import_is_cheap() -> None:
    code = "import sys, multiticket; print(sorted(m for m in ('torch', 'multiticket.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_summary_ticket_and_own_loop(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    run = multiticket.run(TASK, out=out, set={"toy.momentum": 0.5})
    assert run.path.parent == out and (run.path / "config.yaml").is_file()
    # the same run directory as the command line's
    path = tmp_path / "toy-api.yaml"
    path.write_text(yaml.safe_dump(TASK))
    assert cli_main(["run", str(path), "--out", str(out), "--quiet", "--set", "toy.momentum=0.5"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [run.path.name]

    df = run.summary()
    assert list(df.columns) == ["task", "domain", "seed", "control", "level", "sparsity", "metric", "value"]
    acc = df[df.metric == "accuracy"]
    assert sorted(zip(acc.control, acc.level)) == [("random_reinit", 1), ("random_reinit", 2),
                                                   ("ticket", 0), ("ticket", 1), ("ticket", 2)]
    assert acc.set_index(["control", "level"]).loc[("ticket", 2), "sparsity"] == pytest.approx(0.36, abs=1e-3)

    ticket = run.ticket(seed=0, level=2)
    assert torch.equal(ticket.mask["0.weight"], run.mask(0, 2)["0.weight"])
    final = run.final_weights(0, 2)
    assert all(torch.all(final[n][~m] == 0) for n, m in ticket.mask.items())

    torch.manual_seed(123)  # a fresh model of one's own, initialised differently
    model = make_mlp(32, [32, 16], 4)
    enforcer = ticket.apply(model)
    rewind = run.rewind_weights(0)
    for name, value in model.state_dict().items():  # rewound to step k, then masked
        expected = rewind[name] * ticket.mask[name] if name in ticket.mask else rewind[name]
        assert torch.equal(value, expected), name

    x, y, _, _ = make_dataset(ToySection(n_train=512, n_test=256))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    params = dict(model.named_parameters())
    with enforcer.attach([optimizer]):
        for step in range(30):
            batch = slice(16 * step, 16 * step + 16)
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for name, m in ticket.mask.items():
                assert torch.all(params[name].detach()[~m] == 0), (step, name)
    assert not enforcer.attached
    moved = params["0.weight"].detach() - rewind["0.weight"] * ticket.mask["0.weight"]
    assert bool((moved[ticket.mask["0.weight"]] != 0).any())  # the live weights trained

    reopened = multiticket.load_run(run.path)
    assert reopened.summary().equals(df)


def test_enforcer_context_attaches(tmp_path: Path) -> None:
    """``with enforcer:`` attaches the gradient hooks; an optimizer can join inside."""
    from multiticket.core.enforce import MaskEnforcer
    from multiticket.core.mask import Mask

    model = make_mlp(4, [8], 2)
    mask = Mask({"0.weight": torch.rand(8, 4) > 0.5})
    with MaskEnforcer(model, mask) as enforcer:
        optimizer = torch.optim.RMSprop(model.parameters(), lr=0.1)
        enforcer.add_optimizer(optimizer)
        for _ in range(3):
            model(torch.randn(5, 4)).sum().backward()
            optimizer.step()
            assert torch.all(model[0].weight.detach()[~mask["0.weight"]] == 0)
    assert not enforcer.attached


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="^<task toy-api>: train: required key is missing$"):
        multiticket.run({k: v for k, v in TASK.items() if k != "train"}, out=tmp_path)
    with pytest.raises(UserError, match="no such task file"):
        multiticket.run(tmp_path / "missing.yaml", out=tmp_path)
    with pytest.raises(UserError, match="not a run directory"):
        multiticket.load_run(tmp_path)
    with pytest.raises(UserError, match="unexpected keyword argument 'nope'"):
        multiticket.run(TASK, out=tmp_path, nope=1)
    assert list(tmp_path.iterdir()) == []


def test_an_error_found_building_the_adapter_names_the_override(tmp_path: Path, capsys) -> None:
    """A misspelled ``env_kwargs`` key: the error names the ``--set`` (or the API's ``set=`` entry)
    that caused it, not the task file it overrode, with the keyword the environment takes."""
    out = tmp_path / "out"
    assert cli_main(["run", "cartpole-ppo", "--set", "rl.env_kwargs.max_episode_stepz=100", "--out", str(out),
                     "--quiet", "--workers", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("multiticket: error: --set rl.env_kwargs.max_episode_stepz=100: "
                           "rl.env_kwargs.max_episode_stepz: CartPole-v1 takes no keyword 'max_episode_stepz' "
                           "(did you mean 'max_episode_steps'?"), line
    assert "max_episode_stepz" in line and not out.exists()
    with pytest.raises(UserError, match=r"^set rl.env_kwargs.max_episode_stepz=100: rl.env_kwargs.max_episode_stepz: CartPole-v1 takes no keyword"):
        multiticket.run("cartpole-ppo", out=out, set={"rl.env_kwargs.max_episode_stepz": 100})
    assert not out.exists()
