"""RL user modules next to the task file (issue 32): ``rl.imports``, ``module:EnvId`` and classes by
import path resolve from the task file's folder (``rl.module_dir``), as the torch domain's module
does, without ``PYTHONPATH``; ``config.yaml`` records the folder they were imported from (absolute,
not hashed), so pool workers import the same code; a run directory's recorded folder must be
absolute and outside it. Creating a custom environment shows Gymnasium's per-make warnings once
per process, and no ``render_mode`` warning for an environment that does not list ``rgb_array``."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("stable_baselines3")

import gymnasium as gym  # noqa: E402

from multiticket.adapters import sb3_envs  # noqa: E402
from multiticket.adapters.sb3_hyper import resolve_hyper  # noqa: E402
from multiticket.cli import main as cli_main  # noqa: E402
from multiticket.config import load_task, task_from_data  # noqa: E402
from multiticket.errors import UserError  # noqa: E402

MODULE = "near_task_env"
ENV_ID = "NearTask-v0"
SOURCE = f'''
import warnings
import gymnasium as gym
import numpy as np
from gymnasium import spaces

class Near(gym.Env):
    metadata = {{}}  # no render_modes: Gymnasium warns on every make

    def __init__(self, dim=2):
        self.dim = dim
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(2 * dim)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.dim, dtype=np.float32), {{}}

    def step(self, action):
        return np.zeros(self.dim, dtype=np.float32), 0.0, False, False, {{}}

class Counting(Near):
    made = 0

    def __init__(self, dim=2):
        super().__init__(dim)
        Counting.made += 1
        warnings.warn(f"made number {{Counting.made}}")

class Plain(Near):
    metadata = gym.Env.metadata  # render_modes [], so SB3's render_mode='rgb_array' is not among them

class Extra(gym.ObservationWrapper):
    pass

gym.register("{ENV_ID}", entry_point=Near, max_episode_steps=10)
gym.register("NearCounting-v0", entry_point=Counting, max_episode_steps=10)
gym.register("NearPlain-v0", entry_point=Plain, max_episode_steps=10)
'''


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The module is imported from nowhere else, and each test leaves ``sys.path`` as it found it."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    sys.modules.pop(MODULE, None)
    gym.registry.pop(ENV_ID, None)
    for env_id in ("NearCounting-v0", "NearPlain-v0"):
        gym.registry.pop(env_id, None)


def task_file(folder: Path, rl: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{MODULE}.py").write_text(SOURCE)
    data = {"name": "near", "domain": "rl", "seeds": [0], "train": {"steps": 64}, "rewind": {"step": 0},
            "prune": {"levels": 1}, "controls": [], "rl": {"algo": "ppo", "n_eval_episodes": 1, "tensorboard": False,
                                                           "overrides": {"n_steps": 32, "batch_size": 32, "n_epochs": 1,
                                                                         "policy_kwargs": {"net_arch": [8]}}, **rl}}
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("rl", [{"imports": [MODULE], "env": ENV_ID}, {"env": f"{MODULE}:{ENV_ID}"}])
def test_modules_resolve_next_to_the_task_file_and_the_folder_is_recorded(tmp_path: Path, rl: dict[str, Any]) -> None:
    folder = tmp_path / "project"
    task = load_task(task_file(folder, rl))
    assert sys.modules[MODULE].__file__ == str(folder / f"{MODULE}.py")
    assert task.resolved["rl"]["module_dir"] == str(folder.resolve())
    for env_id in (ENV_ID, "NearCounting-v0", "NearPlain-v0"):
        gym.registry.pop(env_id, None)
    moved = load_task(task_file(tmp_path / "elsewhere", rl))  # another project's module of the same name
    assert sys.modules[MODULE].__file__ == str(tmp_path / "elsewhere" / f"{MODULE}.py")
    assert moved.hash == task.hash  # not hashed: a moved project keeps its run names


def test_classes_by_import_path_resolve_next_to_the_task_file(tmp_path: Path) -> None:
    rl = {"env": "CartPole-v1", "overrides": {"n_steps": 32, "env_wrapper": f"{MODULE}.Extra"}}
    task = load_task(task_file(tmp_path, rl))
    assert task.section.module_dir == str(tmp_path.resolve())
    assert resolve_hyper("ppo", "CartPole-v1", None, task.section.overrides).wrappers[0][0].__module__ == MODULE


def test_no_user_module_records_no_folder_and_status_imports_nothing(tmp_path: Path) -> None:
    plain = load_task(task_file(tmp_path, {"env": "CartPole-v1"}))
    assert plain.section.module_dir is None and "module_dir" not in plain.resolved["rl"]
    status = load_task(task_file(tmp_path, {"imports": [MODULE], "env": ENV_ID}), user_code=False)
    assert MODULE not in sys.modules and status.section.module_dir is None


def test_a_written_module_dir_is_relative_to_the_task_file(tmp_path: Path) -> None:
    task_file(tmp_path / "code", {"env": "CartPole-v1"})
    path = task_file(tmp_path / "tasks", {"imports": [MODULE], "env": ENV_ID, "module_dir": "../code"})
    (tmp_path / "tasks" / f"{MODULE}.py").unlink()
    assert load_task(path).section.module_dir == str((tmp_path / "code").resolve())
    with pytest.raises(UserError, match=r"rl\.module_dir: no such folder"):
        load_task(path, ["rl.module_dir=../nowhere"])


def test_a_run_directorys_module_dir_must_be_absolute_and_outside_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "near-00000000"
    run_dir.mkdir(parents=True)
    data = yaml.safe_load(task_file(tmp_path / "project", {"imports": [MODULE], "env": ENV_ID}).read_text())
    source = run_dir / "config.yaml"
    for module_dir, why in ((".", "is relative"), (str(run_dir), "inside the run directory")):
        data["rl"]["module_dir"] = module_dir
        with pytest.raises(UserError, match=f"rl.module_dir: .*{why}"):
            task_from_data(data, source, user_code=False, run_dir=run_dir)
    data["rl"]["module_dir"] = str((tmp_path / "project").resolve())
    task = task_from_data(data, source, run_dir=run_dir)  # trusted: imported from the recorded folder
    assert task.section.module_dir == data["rl"]["module_dir"]
    assert sys.modules[MODULE].__file__ == str(tmp_path / "project" / f"{MODULE}.py")


def test_pool_workers_import_from_the_recorded_folder(tmp_path: Path) -> None:
    """No PYTHONPATH: the workers rebuild the task from config.yaml and find the module there."""
    out = tmp_path / "runs"
    path = task_file(tmp_path / "project", {"imports": [MODULE], "env": ENV_ID})
    assert cli_main(["run", str(path), "--out", str(out), "--quiet", "--workers", "2"]) == 0
    (run_dir,) = out.iterdir()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["rl"]["module_dir"] == str(path.parent.resolve())
    assert (run_dir / "seed_0/ticket/level_1/DONE").is_file()


def _shown(env_id: str, times: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The warnings displayed while making ``env_id`` ``times`` times, every filter at "always" (as
    when some library resets them between units)."""
    monkeypatch.setattr(sb3_envs, "_SHOWN", set())
    shown: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
        hyper = resolve_hyper("ppo", env_id, None, {})
        for seed in range(times):
            sb3_envs.make_env(env_id, hyper, seed=seed, n_envs=2, training=True).close()
    return shown


def test_per_make_warnings_show_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_task(task_file(tmp_path, {"imports": [MODULE], "env": ENV_ID}))
    shown = _shown(ENV_ID, 3, monkeypatch)
    assert len([m for m in shown if "render_modes" in m]) == 1, shown
    plain = _shown("NearPlain-v0", 2, monkeypatch)  # not asked for rgb_array, which it does not list
    assert not any("render_mode" in m for m in plain), plain
    distinct = _shown("NearCounting-v0", 2, monkeypatch)  # other warnings are not hidden
    assert [m for m in distinct if "made number" in m] == [f"made number {i}" for i in range(1, 5)], distinct


def test_an_environment_listing_rgb_array_still_gets_it() -> None:
    hyper = resolve_hyper("ppo", "CartPole-v1", None, {})
    venv = sb3_envs.make_env("CartPole-v1", hyper, seed=0, n_envs=1, training=True)
    assert venv.envs[0].unwrapped.render_mode == "rgb_array"  # as SB3's make_vec_env asks
    venv.close()
