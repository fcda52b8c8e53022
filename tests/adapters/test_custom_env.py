"""Custom environments: a module's own Gymnasium environment through ``rl.imports`` and through
``module:EnvId``, in this process and on the 2-worker pool, with ``rl.env_kwargs``, a wrapper, a
features extractor, an activation and a policy class by import path; bad paths fail in one line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("stable_baselines3")

import gymnasium as gym  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from multiticket.cli import main as cli_main  # noqa: E402

MODULE = "tests.adapters.reach_env"
ENV_ID = "TestReach-v0"


def _forget() -> None:
    sys.modules.pop(MODULE, None)
    gym.registry.pop(ENV_ID, None)


@pytest.fixture(autouse=True)
def _unregistered() -> Iterator[None]:
    """Each test starts with the module not imported and the environment not registered here."""
    _forget()
    yield
    _forget()


def task_file(tmp_path: Path, rl: dict[str, Any], **top: Any) -> Path:
    rl = {"algo": "ppo", "n_eval_episodes": 1, "tensorboard": False,
          "overrides": {"n_steps": 32, "batch_size": 32, "n_epochs": 1, "policy_kwargs": {"net_arch": [16]}}, **rl}
    data = {"name": "reach", "domain": "rl", "train": {"steps": 128}, "rewind": {"step": 32},
            "prune": {"levels": 1}, "controls": ["random_reinit"], "rl": rl, **top}
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(path: Path, out: Path, *extra: str) -> int:
    return cli_main(["run", str(path), "--out", str(out), "--quiet", *extra])


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("how", ["imports", "module:EnvId"])
def test_custom_env_trains(tmp_path: Path, how: str, workers: int) -> None:
    env = f"{MODULE}:{ENV_ID}" if how == "module:EnvId" else ENV_ID
    rl = {"env": env, "env_kwargs": {"dim": 3}, **({"imports": [MODULE]} if how == "imports" else {})}
    rl["overrides"] = {"n_steps": 32, "batch_size": 32, "n_epochs": 1, "policy": f"{MODULE}.MyPolicy",
                       "env_wrapper": [{f"{MODULE}.AppendOne": {"value": 0.5}}],
                       "policy_kwargs": {"net_arch": [16], "activation_fn": "torch.nn.Hardswish",
                                         "features_extractor_class": f"{MODULE}.Linear8"}}
    out = tmp_path / "runs"
    assert run(task_file(tmp_path, rl), out, "--workers", str(workers)) == 0
    (run_dir,) = out.iterdir()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())["rl"]
    assert config["env"] == env and config.get("imports", []) == rl.get("imports", [])
    for control in ("ticket", "random_reinit"):  # level 1 is trained by a worker on the pool
        weights = load_file(str(run_dir / f"seed_0/{control}/level_1/final.safetensors"))
        # env_kwargs dim=3, plus the wrapper's feature: 4 inputs into the extractor's 8 features
        assert tuple(weights["features_extractor.linear.weight"].shape) == (8, 4)
        assert tuple(weights["mlp_extractor.policy_net.0.weight"].shape) == (16, 8)


def test_imports_recorded_and_hashed_only_when_set(tmp_path: Path) -> None:
    from multiticket.config import load_task

    plain = load_task(task_file(tmp_path, {"env": "CartPole-v1"}))
    assert "imports" not in plain.resolved["rl"]
    task = load_task(task_file(tmp_path, {"env": ENV_ID, "imports": [MODULE]}))
    assert task.resolved["rl"]["imports"] == [MODULE] and task.hash != plain.hash


BAD = [
    ({"env": ENV_ID, "imports": ["no_such_module"]},
     "rl.imports: cannot import 'no_such_module': ModuleNotFoundError: No module named 'no_such_module'"),
    ({"env": ENV_ID, "imports": ["not a module"]}, "rl.imports: 'not a module' is not a module name"),
    ({"env": "no_such_module:Reach-v0"}, "rl.env: cannot import 'no_such_module': ModuleNotFoundError"),
    ({"env": ENV_ID}, "registered by a module of yours? name it in rl.imports, or write rl.env: module:EnvId)"),
    ({"env": f"{MODULE}:{ENV_ID}", "overrides": {"env_wrapper": f"{MODULE}.Nope"}},
     f"rl.overrides: env_wrapper: '{MODULE}' has no 'Nope'"),
    ({"env": f"{MODULE}:{ENV_ID}", "overrides": {"env_wrapper": f"{MODULE}.Reach"}},
     f"rl.overrides: env_wrapper: '{MODULE}.Reach' is not a Gymnasium wrapper (gymnasium.core.Wrapper subclass)"),
    ({"env": f"{MODULE}:{ENV_ID}", "overrides": {"policy_kwargs": {"activation_fn": "torch.nn.Nope"}}},
     "rl.overrides: policy_kwargs.activation_fn: 'torch.nn' has no 'Nope'"),
    ({"env": f"{MODULE}:{ENV_ID}", "overrides": {"policy_kwargs": {"features_extractor_class": "torch.nn.Linear"}}},
     "rl.overrides: policy_kwargs.features_extractor_class: 'torch.nn.Linear' is not a class"),
    ({"env": f"{MODULE}:{ENV_ID}", "overrides": {"policy": "torch.nn.Linear"}},
     "rl.overrides: policy: 'torch.nn.Linear' is not a policy class"),
]


@pytest.mark.parametrize(("rl", "message"), BAD)
def test_bad_import_paths_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          rl: dict[str, Any], message: str) -> None:
    path, out = task_file(tmp_path, rl), tmp_path / "runs"
    assert run(path, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: " in err and message in err, err
    assert not out.exists()


def test_wrapper_arguments_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rl = {"env": f"{MODULE}:{ENV_ID}", "overrides": {"env_wrapper": [{f"{MODULE}.AppendOne": {"nope": 1}}]}}
    assert run(task_file(tmp_path, rl), tmp_path / "runs") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"env_wrapper: {MODULE}.AppendOne rejected its arguments" in err, err
    assert not (tmp_path / "runs").exists()


def test_status_and_report_import_no_user_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run directory naming modules that cannot be imported here still has a status and a report."""
    out = tmp_path / "runs"
    assert run(task_file(tmp_path, {"env": ENV_ID, "imports": [MODULE]}), out) == 0
    (run_dir,) = out.iterdir()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["rl"]["imports"] = ["module_that_must_not_be_imported"]
    config["rl"]["env"] = "module_that_must_not_be_imported:Gone-v0"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    assert cli_main(["status", str(run_dir)]) == 0
    assert cli_main(["report", str(run_dir)]) == 0
    assert cli_main(["compare", str(run_dir), "--out", str(tmp_path / "comparison")]) == 0
    assert "module_that_must_not_be_imported" not in sys.modules


def test_policy_outside_sb3_needs_prune_include(tmp_path: Path) -> None:
    """A BasePolicy that is not the algorithm's own has no known roles: prune.include names its weights."""
    from types import SimpleNamespace

    from multiticket.adapters.sb3 import SB3Adapter, Section
    from multiticket.errors import UserError

    section = Section.model_validate({"env": "CartPole-v1", "algo": "ppo",
                                      "overrides": {"policy": f"{MODULE}.OtherPolicy"}})
    adapter = SB3Adapter(SimpleNamespace(prune=SimpleNamespace(include=[])), section, tmp_path)
    adapter.build(0)
    with pytest.raises(UserError, match="is not a subclass of SB3's ActorCriticPolicy.*prune.include"):
        adapter.default_prunable()
    adapter.task = SimpleNamespace(prune=SimpleNamespace(include=["net.*"]))
    assert adapter.default_prunable() == []  # the scope comes from prune.include alone
    adapter.close()


def test_shipped_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/custom_env/task.yaml as docs/rl.md runs it, at a tiny budget."""
    example = Path(__file__).resolve().parents[2] / "examples" / "custom_env"
    monkeypatch.syspath_prepend(str(example))
    tiny = ["--set", "train.steps=128", "--set", "rewind.step=32", "--levels", "1", "--set", "rl.overrides.n_steps=32",
            "--set", "rl.overrides.batch_size=32", "--set", "rl.n_eval_episodes=1", "--set", "rl.tensorboard=false"]
    out = tmp_path / "runs"
    assert run(example / "task.yaml", out, *tiny) == 0
    (run_dir,) = out.iterdir()
    weights = load_file(str(run_dir / "seed_0/ticket/level_1/final.safetensors"))
    assert tuple(weights["mlp_extractor.policy_net.0.weight"].shape) == (64, 4)  # dim 3 + the goal feature
