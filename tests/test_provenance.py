"""provenance.json (with the domain facts an adapter declares) and the run-name warning
(multiticket/provenance.py)."""

from __future__ import annotations

import json

import pytest
import torch

from multiticket.config import load_task
from multiticket.core.adapter import DomainAdapter
from multiticket.errors import UserError
from multiticket.paths import TASKS_DIR
from multiticket.provenance import (
    PROVENANCE,
    adapter_facts,
    command_line,
    name_warning,
    provenance_record,
    read_provenance,
)
from multiticket.schema import Strict

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


class _Declaring(DomainAdapter):
    """An adapter that declares every domain fact (nothing else of it is used here)."""

    domain = "declaring"
    Section = Strict
    step_unit = "frames"
    eval_every_key = "declaring.eval_every"
    input_features = True
    layer_role = staticmethod(lambda name: "trunk" if name.startswith("trunk.") else None)
    metric = property(lambda self: "score")
    higher_is_better = property(lambda self: True)
    module = property(lambda self: torch.nn.Linear(2, 2))
    build = default_prunable = train = evaluate = lambda self, *a: None  # type: ignore[assignment]

    def header_facts(self) -> dict[str, str]:
        return {"camera": "front", "resolution": "84x84"}

    def identity(self) -> str:
        return "front camera, 84x84"

    def input_names(self) -> list[str]:
        return ["x", "y"]


def test_the_domain_facts_round_trip_through_provenance_json(tmp_path):
    from multiticket.analysis.rundata import run_facts

    adapter = _Declaring(None, Strict(), tmp_path)
    layers = ["trunk.0.weight", "trunk.2.weight", "head.weight"]
    (tmp_path / PROVENANCE).write_text(provenance_record(None, adapter_facts(adapter, layers), "multiticket run t"))
    record = read_provenance(tmp_path)
    facts = run_facts({"domain": "declaring"}, record)
    assert facts == adapter.domain_facts(layers)
    assert facts.layer_roles == {"trunk.0.weight": "trunk", "trunk.2.weight": "trunk"}  # head: by position
    assert (facts.step_unit, facts.eval_every_key, facts.identity) == ("frames", "declaring.eval_every",
                                                                        "front camera, 84x84")
    assert list(facts.header.items()) == [("camera", "front"), ("resolution", "84x84")]  # in declared order
    assert facts.input_names == ["x", "y"]
    assert record["model_class"] == "torch.nn.modules.linear.Linear"  # the adapter's provenance beside them


def test_a_declared_fact_outside_the_bounds_is_one_line_naming_the_adapter(tmp_path):
    class Spaced(_Declaring):
        layer_role = staticmethod(lambda name: "a role with spaces")

    with pytest.raises(UserError, match=r"^domain 'declaring': .*Spaced declares layer_roles\.w: String should"):
        Spaced(None, Strict(), tmp_path).domain_facts(["w"])


@pytest.mark.parametrize(("facts", "field"), [
    ({"layer_roles": {"w": "<b>x</b>"}}, "domain_facts.layer_roles.w"),
    ({"header": {f"k{i}": "v" for i in range(40)}}, "domain_facts.header"),
    ({"step_unit": ["env steps"]}, "domain_facts.step_unit"),
    ({"input_names": "x"}, "domain_facts.input_names"),
])
def test_malformed_domain_facts_are_a_user_error_naming_the_field(tmp_path, facts, field):
    (tmp_path / PROVENANCE).write_text(json.dumps({"commands": [], "domain_facts": facts}))
    with pytest.raises(UserError, match=rf"^{tmp_path / PROVENANCE}: {field}"):
        read_provenance(tmp_path)
