"""``rl.env_kwargs`` (issue 32): a keyword the environment does not take fails when the task loads,
in one line naming ``rl.env_kwargs.<key>`` and, when a ``--set`` gave it, that ``--set``, with the
closest keyword the environment takes; exit code 2, nothing written. An environment whose
constructor takes ``**kwargs`` is left to decide; a keyword from ``rl.overrides.env_kwargs`` fails
when the environment is made, with the same hint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("stable_baselines3")

import gymnasium as gym  # noqa: E402

from multiticket.adapters.sb3_env_spec import accepted_env_kwargs, env_kwargs_problem  # noqa: E402
from multiticket.adapters.sb3_envs import make_env  # noqa: E402
from multiticket.adapters.sb3_hyper import resolve_hyper  # noqa: E402
from multiticket.cli import main as cli_main  # noqa: E402
from multiticket.config import load_task  # noqa: E402
from multiticket.errors import UserError  # noqa: E402

HINT = "CartPole-v1 takes no keyword 'max_episode_stepz' (did you mean 'max_episode_steps'?"


def task_file(tmp_path: Path, **rl: Any) -> Path:
    data = {"name": "kw", "domain": "rl", "seeds": [0], "train": {"steps": 64}, "rewind": {"step": 0},
            "prune": {"levels": 1}, "controls": [], "rl": {"env": "CartPole-v1", "algo": "ppo", **rl}}
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_misspelled_keyword_from_set_names_the_set_and_the_closest_keyword(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        load_task(task_file(tmp_path), ["rl.env_kwargs.max_episode_stepz=10"])
    message = str(caught.value)
    assert message.startswith("--set rl.env_kwargs.max_episode_stepz=10: rl.env_kwargs.max_episode_stepz: "), message
    assert HINT in message and "\n" not in message


def test_a_misspelled_keyword_in_the_task_file_names_the_file(tmp_path: Path) -> None:
    path = task_file(tmp_path, env_kwargs={"max_episode_stepz": 10})
    with pytest.raises(UserError) as caught:
        load_task(path)
    assert str(caught.value).startswith(f"{path}: rl.env_kwargs.max_episode_stepz: {HINT}"), str(caught.value)


def test_cli_one_line_exit_2_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    code = cli_main(["run", str(task_file(tmp_path)), "--out", str(out), "--quiet",
                     "--set", "rl.env_kwargs.max_episode_stepz=10"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--set rl.env_kwargs.max_episode_stepz=10: rl.env_kwargs.max_episode_stepz:" in err and HINT in err
    assert not out.exists()


def test_accepted_keywords_load(tmp_path: Path) -> None:
    task = load_task(task_file(tmp_path), ["rl.env_kwargs.max_episode_steps=10", "rl.env_kwargs.sutton_barto_reward=true"])
    assert task.section.env_kwargs == {"max_episode_steps": 10, "sutton_barto_reward": True}


def test_status_checks_no_keyword(tmp_path: Path) -> None:
    """Without user code (``status``) the environment is not looked at, so its keywords are not either."""
    task = load_task(task_file(tmp_path, env_kwargs={"anything": 1}), user_code=False)
    assert task.section.env_kwargs == {"anything": 1}


class TakesAnything(gym.Env):
    """A constructor taking ``**kwargs``: which keywords it accepts is its own business."""

    def __init__(self, **kwargs: Any) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,))
        self.action_space = gym.spaces.Discrete(2)


def test_a_constructor_with_var_keywords_is_not_checked() -> None:
    gym.register("TestTakesAnything-v0", entry_point=TakesAnything)
    try:
        assert accepted_env_kwargs("TestTakesAnything-v0") is None
        assert env_kwargs_problem("TestTakesAnything-v0", {"whatever": 1}) is None
    finally:
        gym.registry.pop("TestTakesAnything-v0", None)
    assert env_kwargs_problem("CartPole-v1", {"render_mode": None, "max_episode_steps": 5}) is None


def test_a_keyword_from_the_overrides_fails_when_made_with_the_hint() -> None:
    hyper = resolve_hyper("ppo", "CartPole-v1", None, {"env_kwargs": {"max_episode_stepz": 10}})
    with pytest.raises(UserError) as caught:
        make_env("CartPole-v1", hyper, seed=0, n_envs=1, training=True)
    assert str(caught.value).startswith(f"rl.env_kwargs.max_episode_stepz: {HINT}"), str(caught.value)
