"""Random and mutated task files: the loader raises UserError or succeeds, never anything else."""

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multiticket.cli import main
from multiticket.config import load_task
from multiticket.errors import UserError
from multiticket.paths import TASKS_DIR

BASE = yaml.safe_load((TASKS_DIR / "toy-mlp.yaml").read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))


ALL_PATHS = list(_paths(BASE))


@st.composite
def mutated(draw):
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        node = data
        for k in path[:-1]:
            if not isinstance(node, dict) or k not in node:
                break
            node = node[k]
        else:
            if isinstance(node, dict):
                action = draw(st.sampled_from(["replace", "delete", "add"]))
                if action == "replace":
                    node[path[-1]] = draw(values)
                elif action == "delete":
                    node.pop(path[-1], None)
                else:
                    node[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return data


def _check(tmp_path: Path, text: str) -> None:
    f = tmp_path / "task.yaml"
    f.write_text(text)
    try:
        load_task(f)
    except UserError as exc:
        msg = str(exc)
        assert msg.startswith(str(f)) and "\n" not in msg, msg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_task_files(tmp_path, data):
    _check(tmp_path, yaml.safe_dump(data))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_random_text(tmp_path, text):
    _check(tmp_path, text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(override=st.text(max_size=30))
def test_random_overrides(override):
    try:
        load_task(TASKS_DIR / "toy-mlp.yaml", [override])
    except UserError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("text", ["train: 5\nname: x\ndomain: toy\n", "name: x\ndomain: toy\ntrain: {steps: 1}\nprune: [1]\n",
                                  "\x00\x01", "name: x\ndomain: toy\ntrain: {steps: 1}\nseeds: abc\n"])
def test_cli_exit_2_no_traceback(tmp_path, capsys, text):
    f = tmp_path / "t.yaml"
    f.write_text(text)
    assert main(["run", str(f), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
