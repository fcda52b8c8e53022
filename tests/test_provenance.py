"""provenance.json and the run-name warning (multiticket/provenance.py)."""

from __future__ import annotations

import json

import pytest

from multiticket.config import load_task
from multiticket.errors import UserError
from multiticket.paths import TASKS_DIR
from multiticket.provenance import PROVENANCE, command_line, name_warning, provenance_record, read_provenance

DQN = TASKS_DIR / "cartpole-dqn.yaml"
BERT = TASKS_DIR / "rotten-tomatoes-bert.yaml"


def _resolved(path, overrides):
    """The resolved config as ``--set`` leaves it (without validating the domain section)."""
    import yaml

    from multiticket.config import apply_overrides

    return apply_overrides(yaml.safe_load(path.read_text()), overrides)


@pytest.mark.parametrize(("path", "overrides", "changed"), [
    (DQN, ["rl.env=Acrobot-v1"], "rl.env=Acrobot-v1"),
    (DQN, ["rl.algo=ppo", "rl.env=Acrobot-v1"], "rl.env=Acrobot-v1, rl.algo=ppo"),
    (BERT, ["nlp.dataset=imdb"], "nlp.dataset=imdb"),
    (BERT, ["nlp.pretrained=prajjwal1/bert-tiny"], "nlp.pretrained=prajjwal1/bert-tiny"),
])
def test_a_set_that_changes_what_the_name_describes_is_one_warning(path, overrides, changed):
    warning = name_warning("x", _resolved(path, overrides), path)
    assert warning is not None and "\n" not in warning
    assert warning.startswith(f"the run name 'x' no longer describes the run ({changed});")


@pytest.mark.parametrize("overrides", [[], ["rl.env=CartPole-v1"], ["rl.algo=DQN"], ["train.steps=10"]])
def test_no_warning_when_the_name_still_fits(overrides):
    assert name_warning("cartpole-dqn", _resolved(DQN, overrides), DQN) is None


def test_the_resolved_task_keeps_its_name_and_hash_under_the_warning():
    pytest.importorskip("stable_baselines3")
    task = load_task(DQN, ["rl.env=Acrobot-v1"])
    assert task.config.name == "cartpole-dqn" and task.run_name.startswith("cartpole-dqn-")
    assert name_warning(task.config.name, task.resolved, task.source) is not None


def test_commands_accumulate_once_each_and_the_record_round_trips(tmp_path):
    facts = {"model_class": "m.C", "hyperparameters": {"lr": 0.1}}
    first = command_line(["run", "t", "--set", "a=b c"])
    assert first == "multiticket run t --set 'a=b c'"
    (tmp_path / PROVENANCE).write_text(provenance_record(None, facts, first))
    again = provenance_record(read_provenance(tmp_path), facts, first)
    assert json.loads(again)["commands"] == [first]
    (tmp_path / PROVENANCE).write_text(provenance_record(read_provenance(tmp_path), facts, "multiticket run t2"))
    assert read_provenance(tmp_path)["commands"] == [first, "multiticket run t2"]
    assert read_provenance(tmp_path / "nowhere") is None


@pytest.mark.parametrize("text", ["[1]", "{", json.dumps({"commands": [1]}), json.dumps({"model_class": "x" * 400})])
def test_a_malformed_record_is_a_user_error(tmp_path, text):
    (tmp_path / PROVENANCE).write_text(text)
    with pytest.raises(UserError, match=rf"^{tmp_path / PROVENANCE}: "):
        read_provenance(tmp_path)


def test_a_python_api_run_records_its_call(tmp_path):
    import multiticket

    task = {"name": "toy-api", "domain": "toy", "train": {"steps": 20}, "toy": {"n_train": 256, "n_test": 128}}
    run = multiticket.run(task, out=tmp_path, levels=0, set={"toy.lr": 0.1})
    (command,) = read_provenance(run.path)["commands"]
    assert command == f"python: multiticket.run({task!r}, set={{'toy.lr': 0.1}}, seeds=None, levels=0)"


def test_a_huge_command_line_is_cut_to_stay_readable():
    assert len(command_line(["run", "x" * 10_000])) == 4002
