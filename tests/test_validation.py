"""The collecting pass (multiticket/config/collect.py): every validation error of one command, one line
each, exit 2 and nothing written; an error a --set (or --seeds / --levels) caused names that override."""

from __future__ import annotations

import pytest

from multiticket.api import resolve_task
from multiticket.cli import main
from multiticket.config.collect import line, override_labels
from multiticket.errors import UserError, UserErrors
from multiticket.paths import TASKS_DIR

TOY = TASKS_DIR / "toy-mlp.yaml"


def _errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("multiticket: error: ")]


def test_a_set_error_names_the_override_not_the_shipped_file(tmp_path, capsys):
    assert main(["run", "toy-mlp", "--out", str(tmp_path / "runs"), "--set", "rewind.step=999999"]) == 2
    steps = resolve_task("toy-mlp").config.train.steps
    assert _errors(capsys) == [f"multiticket: error: --set rewind.step=999999: rewind.step: must be below train.steps ({steps})"]
    assert not (tmp_path / "runs").exists()



def test_a_cross_field_error_names_the_override_of_the_other_key(tmp_path, capsys):
    """The rule is about rewind.step, but the --set that broke it changed train.steps."""
    pytest.importorskip("stable_baselines3")
    assert resolve_task("cartpole-ppo").config.rewind.step == 2048  # an absolute step, not a share of training
    assert main(["run", "cartpole-ppo", "--out", str(tmp_path / "runs"), "--set", "train.steps=100"]) == 2
    assert _errors(capsys) == ["multiticket: error: --set train.steps=100: rewind.step: must be below train.steps (100)"]
    assert not (tmp_path / "runs").exists()
    # a key merely sharing a prefix is not named
    assert line("t.yaml", ("rewind.step", "must be below train.steps (5)"), [("train.step", "--set train.step=5")]) == (
        "t.yaml: rewind.step: must be below train.steps (5)")

def test_an_error_of_the_file_itself_still_names_the_file():
    with pytest.raises(UserError) as err:
        resolve_task({**resolve_task("toy-mlp").resolved, "rewind": {"step": 10**6}})
    assert str(err.value).startswith("<task toy-mlp>: rewind.step: must be below train.steps")
    assert not isinstance(err.value, UserErrors)


def test_three_errors_in_one_command_give_three_lines(tmp_path, capsys):
    args = ["run", "toy-mlp", "--out", str(tmp_path / "runs"), "--set", "rewind.step=999999",
            "--set", "controls=[transfer_mask]", "--set", "toy.lrr=0.1"]
    assert main(args) == 2
    assert _errors(capsys) == [
        "multiticket: error: --set rewind.step=999999: rewind.step: must be below train.steps (1500)",
        "multiticket: error: --set controls=[transfer_mask]: controls: transfer_mask exists only in runs made by "
        "'multiticket transfer'",
        "multiticket: error: --set toy.lrr=0.1: toy.lrr: unknown key (did you mean 'lr'?)",
    ]
    assert not (tmp_path / "runs").exists()


def test_field_errors_of_every_section_are_collected(tmp_path, capsys):
    """Field errors stop the cross-field rules (they need a valid config) but not each other."""
    args = ["run", str(TOY), "--out", str(tmp_path / "runs"), "--set", "prune.rate=2", "--levels", "500",
            "--set", "toy.hidden=wide"]
    assert main(args) == 2
    errors = _errors(capsys)
    assert len(errors) == 3, errors
    assert errors[0].startswith("multiticket: error: --set prune.rate=2: prune.rate: Input should be less than 1")
    assert errors[1].startswith("multiticket: error: --levels 500: prune.levels: Input should be less than or equal to 100")
    assert errors[2].startswith("multiticket: error: --set toy.hidden=wide: toy.hidden")


def test_rl_errors_of_the_common_keys_the_section_and_the_action_space_together(tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    args = ["run", "cartpole-ppo", "--out", str(tmp_path / "runs"), "--set", "rewind.step=999999",
            "--set", "rl.overrides.lerning_rate=3", "--set", "rl.algo=sac"]
    assert main(args) == 2
    assert _errors(capsys) == [
        "multiticket: error: --set rewind.step=999999: rewind.step: must be below train.steps (40000)",
        "multiticket: error: --set rl.overrides.lerning_rate=3: rl.overrides: unknown SAC hyperparameter "
        "'lerning_rate' (did you mean 'learning_rate'?)",
        "multiticket: error: --set rl.algo=sac: rl.algo: SAC needs a Box action space; 'CartPole-v1' has Discrete(2)",
    ]
    args[-1] = "rl.env=CartPol-v1"
    assert main(args) == 2
    errors = _errors(capsys)
    assert len(errors) == 3 and errors[1].startswith(
        "multiticket: error: --set rl.env=CartPol-v1: rl.env: unknown Gymnasium environment 'CartPol-v1' (did you mean "
        "'CartPole-v1'?"), errors
    assert not (tmp_path / "runs").exists()


def test_the_python_api_gets_every_line_in_one_error():
    with pytest.raises(UserErrors) as err:
        resolve_task("toy-mlp", {"rewind.step": 999999, "controls": ["transfer_mask"]})
    assert len(err.value.lines) == 2 and err.value.lines[0].startswith("set rewind.step=999999: rewind.step: must be below")
    assert "\n" not in str(err.value) and str(err.value) == " | ".join(err.value.lines)


def test_an_error_is_named_by_the_override_that_set_it_or_a_section_around_it():
    labels = override_labels(["rl={env: X}", "rl.overrides.lr=3", "rl.env=Y"], seeds=[1, 2], levels=None)
    assert line("t.yaml", ("rl.env", "unknown"), labels) == "--set rl.env=Y: rl.env: unknown"  # the later one wins
    assert line("t.yaml", ("rl.overrides", "bad"), labels) == "--set rl.overrides.lr=3: rl.overrides: bad"
    assert line("t.yaml", ("rl.algo", "bad"), labels) == "--set rl={env: X}: rl.algo: bad"
    assert line("t.yaml", ("seeds", "too many"), labels) == "--seeds 1,2: seeds: too many"
    assert line("t.yaml", ("prune.rate", "bad"), labels) == "t.yaml: prune.rate: bad"


def test_a_sweep_reports_the_errors_of_all_its_tasks_together(tmp_path, capsys):
    """A rewind-step error, an env typo, an action-space mismatch and a hyperparameter typo: in one
    task an unknown env has no action space to check, so the sweep's two grid points hold them."""
    pytest.importorskip("stable_baselines3")
    sweep = tmp_path / "s.yaml"
    sweep.write_text("tasks: [cartpole-ppo]\nset: [rewind.step=999999, rl.overrides.lerning_rate=3, rl.algo=dqn]\n"
                     "grid: {rl.env: [CartPol-v1, Pendulum-v1]}\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "runs")]) == 2
    errors = [e.removeprefix(f"multiticket: error: {sweep}: ") for e in _errors(capsys)]
    assert len(errors) == 4, errors
    assert errors[0] == "rewind.step=999999: rewind.step: must be below train.steps (40000)"
    assert errors[1].startswith('rl.env="CartPol-v1": rl.env: unknown Gymnasium environment \'CartPol-v1\' (did you mean')
    assert errors[2] == ("rl.overrides.lerning_rate=3: rl.overrides: unknown DQN hyperparameter 'lerning_rate' "
                         "(did you mean 'learning_rate'?)")
    assert errors[3].startswith("rl.algo=dqn: rl.algo: DQN needs a Discrete action space; 'Pendulum-v1' has Box")
    assert not (tmp_path / "runs").exists()


def test_a_sweep_over_environments_warns_that_the_names_do_not_describe_them(tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    sweep = tmp_path / "s.yaml"
    sweep.write_text("tasks: [cartpole-ppo]\ngrid: {rl.env: [CartPole-v1, Acrobot-v1]}\n")
    (tmp_path / "file").write_text("")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "file")]) == 2  # stops before any work
    err = capsys.readouterr().err.splitlines()
    assert [e for e in err if "warning" in e] == [
        "multiticket: warning: the run name 'cartpole-ppo' no longer describes the run (rl.env=Acrobot-v1); it "
        "stays, so that existing run directories keep their names: the report header shows what ran"]
    assert err[-1].startswith("multiticket: error: --out: ")
