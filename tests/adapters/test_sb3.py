"""SB3 adapter: exact masks through SB3's own learn(), rewinding, targets, export, determinism,
bad input. Each algorithm trains a few hundred env steps with small networks (CPU)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402

from multiticket.adapters.sb3 import SB3Adapter, Section  # noqa: E402
from multiticket.adapters.sb3_algos import ALGOS  # noqa: E402
from multiticket.cli import main as cli_main  # noqa: E402
from multiticket.config import load_task  # noqa: E402
from multiticket.core.enforce import MaskEnforcer  # noqa: E402
from multiticket.core.hooks import LevelHooks  # noqa: E402
from multiticket.core.mask import Mask  # noqa: E402
from multiticket.core.prune import PruneSpec, prune  # noqa: E402
from multiticket.core.rewind import RewindPoint, copy_state_dict  # noqa: E402
from multiticket.errors import UserError  # noqa: E402

T, K = 400, 128  # env timesteps per level, rewind step

SMALL = {
    "ppo": (
        "CartPole-v1",
        {
            "n_envs": 2,
            "n_steps": 32,
            "batch_size": 32,
            "n_epochs": 2,
            "policy_kwargs": {"net_arch": [16, 16]},
        },
    ),
    "a2c": (
        "CartPole-v1",
        {"n_envs": 2, "n_steps": 8, "normalize": True, "policy_kwargs": {"net_arch": [16, 16]}},
    ),
    "dqn": (
        "CartPole-v1",
        {
            "learning_starts": 64,
            "train_freq": 4,
            "target_update_interval": 50,
            "batch_size": 32,
            "policy_kwargs": {"net_arch": [16, 16]},
        },
    ),
    "sac": (
        "Pendulum-v1",
        {"learning_starts": 64, "batch_size": 32, "train_freq": 4, "policy_kwargs": {"net_arch": [16, 16]}},
    ),
    "td3": (
        "Pendulum-v1",
        {"learning_starts": 64, "batch_size": 32, "train_freq": 4, "policy_kwargs": {"net_arch": [16, 16]}},
    ),
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_adapter(algo: str, tmp_path: Path, **extra: Any) -> SB3Adapter:
    env, overrides = SMALL[algo]
    data = {"env": env, "algo": algo, "overrides": overrides, "n_eval_episodes": 1, "tensorboard": False}
    data.update(extra)
    return SB3Adapter(None, Section.model_validate(data), tmp_path / "work")


def half_mask(adapter: SB3Adapter, seed: int = 0) -> Mask:
    gen = torch.Generator().manual_seed(seed)
    params = dict(adapter.module.named_parameters())
    return Mask({n: torch.rand(params[n].shape, generator=gen) > 0.5 for n in adapter.default_prunable()})


class RecordingHooks(LevelHooks):
    """The core's hooks, plus a snapshot of the weights and counters when training starts."""

    def on_optimizers(self, optimizers: Any) -> None:
        super().on_optimizers(optimizers)
        self.start_weights = copy_state_dict(self.adapter.module)
        self.start_timesteps = self.adapter.model.num_timesteps
        self.start_optimizer_steps = [
            [int(st["step"]) for st in opt.state.values() if "step" in st] for opt in optimizers
        ]


def run_level(
    adapter: SB3Adapter,
    seed: int,
    mask: Mask | None,
    point: RewindPoint | None,
    captures: tuple[int, ...] = (),
    restore_optimizers: bool = False,
) -> RecordingHooks:
    """One unit the way core/imp.py drives it: build, restore, attach, hard-copy, train."""
    adapter.build(seed)
    module = adapter.module
    if point is not None:
        point.restore_weights(module)
        adapter.load_state(point.extra)
    enforcer = MaskEnforcer(module, mask).attach() if mask is not None else None
    for online, target in adapter.target_pairs():
        target.load_state_dict(online.state_dict())
    if point is not None:
        point.restore_rng()
    restore = point if restore_optimizers else None
    hooks = RecordingHooks(adapter, enforcer, point.step if point else 0, captures, restore_from=restore)
    try:
        adapter.train(point.step if point else 0, T, hooks)
    finally:
        if enforcer is not None:
            enforcer.detach()
    return hooks


def target_names(adapter: SB3Adapter) -> dict[str, str]:
    """Prunable online name -> the matching target-network name (same relative path)."""
    policy = adapter.module
    out = {}
    for online, target in adapter.target_pairs():
        o_names = {id(p): n for n, p in policy.named_parameters()}
        for (_, po), (_, pt) in zip(online.named_parameters(), target.named_parameters(), strict=True):
            out[o_names[id(po)]] = {id(p): n for n, p in policy.named_parameters()}[id(pt)]
    return out


def search(
    algo: str, tmp_path: Path, seed: int = 0
) -> tuple[Mask, dict[str, float], SB3Adapter, RecordingHooks, RewindPoint]:
    """Dense level capturing θ_k, magnitude-pruned mask, level 1 from θ_k under that mask."""
    adapter = make_adapter(algo, tmp_path)
    dense = run_level(adapter, seed, None, None, captures=(K,))
    point = dense.captured[K]
    mask = prune(
        copy_state_dict(adapter.module),
        Mask.ones(adapter.module, adapter.default_prunable()),
        PruneSpec("layerwise_magnitude", 0.5, "remaining"),
    )
    level1 = run_level(adapter, seed, mask, point)
    return mask, adapter.evaluate(), adapter, level1, point


@pytest.mark.parametrize("algo", list(ALGOS))
def test_level_exact_zeros_rewind_targets_and_determinism(algo: str, tmp_path: Path) -> None:
    mask, metrics, adapter, hooks, point = search(algo, tmp_path / "a")
    assert point.step >= K and point.extra["num_timesteps"] == point.step
    # the level started at θ_k ⊙ mask, with the counters of step k
    assert hooks.start_timesteps == point.step
    for name, value in hooks.start_weights.items():
        expected = point.weights[name] * mask[name] if name in mask else None
        if expected is not None:
            assert torch.equal(value, expected), name
    pairs = target_names(adapter)
    for online, target in pairs.items():
        assert torch.equal(hooks.start_weights[target], hooks.start_weights[online]), target
    # ... trained to T with SB3's learn(), and every pruned entry is still exactly zero
    assert adapter.model.num_timesteps >= T and adapter.model._total_timesteps == T
    params = dict(adapter.module.named_parameters())
    for name, m in mask.items():
        assert not bool(m.all()) and bool(m.any())
        assert bool((params[name].detach()[~m] == 0).all()), name
        assert bool((params[name].detach()[m] != hooks.start_weights[name][m]).any()), f"{name} did not train"
        if name in pairs:
            assert bool((params[pairs[name]].detach()[~m] == 0).all()), pairs[name]
    with_target = {"dqn": ("q_net.",), "sac": ("critic.",), "td3": ("actor.", "critic.")}.get(algo, ())
    assert {n for n in mask if n.startswith(with_target)} <= set(pairs)
    assert {"eval_return", "eval_return_std", "ticket_reward"} <= set(metrics)
    # a second run with the same seed: the same mask, returns and trained weights (CPU)
    mask_b, metrics_b, adapter_b, _, _ = search(algo, tmp_path / "b")
    assert mask_b == mask and metrics_b == metrics
    final_a, final_b = adapter.module.state_dict(), adapter_b.module.state_dict()
    assert all(torch.equal(final_a[n], final_b[n]) for n in final_a)


@pytest.mark.parametrize("algo", list(ALGOS))
def test_export_reloads_with_algo_load(algo: str, tmp_path: Path) -> None:
    adapter = make_adapter(algo, tmp_path)
    adapter.build(0)
    mask = half_mask(adapter)
    MaskEnforcer(adapter.module, mask).attach()
    adapter.export(tmp_path / "level")
    loaded = ALGOS[algo].cls.load(tmp_path / "level" / "ticket.zip", device="cpu")
    ours, theirs = adapter.module.state_dict(), loaded.policy.state_dict()
    assert list(ours) == list(theirs)
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    for name, m in mask.items():
        assert bool((theirs[name][~m] == 0).all())
    mean, _ = evaluate_policy(loaded, adapter.eval_env, n_eval_episodes=1)
    assert mean == mean  # a number, not NaN
    if algo == "a2c":  # normalize: true -> statistics saved beside the ticket
        assert (tmp_path / "level" / "vecnormalize.pkl").is_file()


@pytest.mark.parametrize("restore", [False, True])
def test_optimizers_reset_or_restored(restore: bool, tmp_path: Path) -> None:
    """rewind.optimizer: reset -> SB3's fresh optimizers; restore -> the state captured at k
    (SAC: both the actor's and the critic's)."""
    adapter = make_adapter("sac", tmp_path)
    point = run_level(adapter, 0, None, None, captures=(K,)).captured[K]
    captured = [[int(st["step"]) for st in o["state"].values()] for o in point.optimizers]
    assert len(captured) == 2 and all(steps and steps[0] > 0 for steps in captured)
    mask = half_mask(adapter)
    hooks = run_level(adapter, 0, mask, point, restore_optimizers=restore)
    assert hooks.start_optimizer_steps == (captured if restore else [[], []])
    params = dict(adapter.module.named_parameters())
    assert all(bool((params[n].detach()[~m] == 0).all()) for n, m in mask.items())


def test_rewind_state_restores_counters_and_normalisation(tmp_path: Path) -> None:
    adapter = make_adapter("dqn", tmp_path, keep_replay_buffer=True)
    dense = run_level(adapter, 0, None, None, captures=(K,))
    point = dense.captured[K]
    extra = point.extra
    assert extra["n_calls"] == K and extra["replay_buffer"]["pos"] == K - 1
    adapter.build(0)
    adapter.load_state(extra)
    model = adapter.model
    assert model.num_timesteps == K and model._n_calls == K
    assert model.exploration_rate == extra["exploration_rate"] < 1.0
    assert model.replay_buffer.pos == K - 1
    saved_obs = extra["replay_buffer"]["arrays"]["observations"]
    assert (model.replay_buffer.observations == saved_obs).all() and model.replay_buffer.observations is not saved_obs
    adapter.close()

    a2c = make_adapter("a2c", tmp_path)
    dense = run_level(a2c, 0, None, None, captures=(K,))
    saved = dense.captured[K].extra["obs_rms"]
    a2c.build(0)
    a2c.load_state(dense.captured[K].extra)
    from multiticket.adapters.sb3_envs import vec_normalize

    norm = vec_normalize(a2c.model.get_env())
    assert norm is not None and norm.obs_rms.count == saved["count"] > 1
    assert (norm.obs_rms.mean == saved["mean"]).all() and norm.obs_rms.mean is not saved["mean"]


def test_init_seed_changes_only_the_weights(tmp_path: Path) -> None:
    adapter = make_adapter("ppo", tmp_path)
    adapter.build(0)
    base = copy_state_dict(adapter.module)
    rng = torch.get_rng_state()
    adapter.build(0, init_seed=0)
    assert all(torch.equal(base[n], v) for n, v in copy_state_dict(adapter.module).items())
    adapter.build(0, init_seed=7)
    other = copy_state_dict(adapter.module)
    assert any(not torch.equal(base[n], other[n]) for n in base)
    assert torch.equal(torch.get_rng_state(), rng)  # the sampling stream is the one seed 0 set


def test_roles_and_input_layer(tmp_path: Path) -> None:
    def names(algo: str, **kw: Any) -> list[str]:
        adapter = make_adapter(algo, tmp_path, **kw)
        adapter.build(0)
        out = adapter.default_prunable()
        adapter.close()
        return out

    ppo = names("ppo")
    assert ppo == [
        "mlp_extractor.policy_net.0.weight",
        "mlp_extractor.policy_net.2.weight",
        "mlp_extractor.value_net.0.weight",
        "mlp_extractor.value_net.2.weight",
        "action_net.weight",
        "value_net.weight",
    ]
    assert names("ppo", roles=["actor"]) == [
        "mlp_extractor.policy_net.0.weight",
        "mlp_extractor.policy_net.2.weight",
        "action_net.weight",
    ]
    assert names("ppo", roles=["critic"], prune_input_layer=False) == [
        "mlp_extractor.value_net.2.weight",
        "value_net.weight",
    ]
    assert not any("log_std" in n for n in names("sac")) and "actor.mu.weight" in names("sac")
    assert names("td3", roles=["actor"]) == ["actor.mu.0.weight", "actor.mu.2.weight", "actor.mu.4.weight"]
    assert all(n.startswith("q_net.q_net.") for n in names("dqn"))


def _task(tmp_path: Path, rl: dict[str, Any], steps: int = 1000) -> Path:
    import yaml

    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "domain": "rl", "train": {"steps": steps}, "rl": rl}))
    return path


@pytest.mark.parametrize(
    ("rl", "fragment"),
    [
        ({"env": "Foo-v0", "algo": "ppo"}, "rl.env: unknown Gymnasium environment 'Foo-v0'"),
        ({"env": "CartPole-v3", "algo": "ppo"}, "rl.env: unknown Gymnasium environment 'CartPole-v3'"),
        ({"env": "CartPole-v1", "algo": "trpo"}, "rl.algo:"),
        (
            {"env": "CartPole-v1", "algo": "ppo", "overrides": {"n_step": 8}},
            "rl.overrides: unknown PPO hyperparameter 'n_step' (did you mean 'n_steps'?)",
        ),
        ({"env": "CartPole-v1", "algo": "ppo", "overrides": {"seed": 3}}, "rl.overrides: 'seed' is set by"),
        ({"env": "CartPole-v1", "algo": "ppo", "hyperparams": "nope"}, "rl.hyperparams: no entry 'nope'"),
        ({"env": "CartPole-v1", "algo": "dqn", "roles": ["actor"]}, "rl.roles: DQN has only the roles"),
        ({"env": "CartPole-v1", "algo": "ppo", "colour": 1}, "rl.colour: unknown key"),
        (
            {
                "env": "CartPole-v1",
                "algo": "ppo",
                "overrides": {"policy_kwargs": {"activation_fn": "swoosh"}},
            },
            "rl.overrides: policy_kwargs.activation_fn: unknown 'swoosh'",
        ),
        (
            {"env": "CartPole-v1", "algo": "ppo", "overrides": {"normalize": "yes"}},
            "rl.overrides: normalize: expected true/false or a mapping",
        ),
    ],
)
def test_bad_section(tmp_path: Path, rl: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UserError) as err:
        load_task(_task(tmp_path, rl))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("rl", "fragment"),
    [
        (
            {"env": "Pendulum-v1", "algo": "dqn"},
            "rl.algo: DQN needs a Discrete action space; 'Pendulum-v1' has Box",
        ),
        ({"env": "CartPole-v1", "algo": "sac"}, "rl.algo: SAC needs a Box action space"),
        (
            {"env": "CartPole-v1", "algo": "ppo", "overrides": {"batch_size": 1}},
            "rl.overrides: PPO rejected the hyperparameters",
        ),
        ({"env": "CartPole-v1", "algo": "ppo", "overrides": {"policy": "Foo"}}, "rl.overrides: policy 'Foo'"),
        (
            {"env": "CartPole-v1", "algo": "ppo", "env_attrs": {"lenght": 1.0}},
            "rl.env_attrs.lenght: CartPole-v1 has no such constant (did you mean 'length'?",
        ),
        (
            {"env": "CartPole-v1", "algo": "ppo", "env_attrs": {"total_mass": 2.0}},
            "rl.env_attrs.total_mass: CartPole-v1 derives it",
        ),
        ({"env": "CartPole-v1", "algo": "ppo", "env_attrs": {"length": True}}, "rl.env_attrs.length: CartPole-v1 holds"),
    ],
)
def test_bad_build(tmp_path: Path, rl: dict[str, Any], fragment: str) -> None:
    task = load_task(_task(tmp_path, rl))
    with pytest.raises(UserError) as err:
        SB3Adapter(task.config, task.section, tmp_path).build(0)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped demo task through the CLI on a tiny budget: files, metrics, exports, logs."""
    code = cli_main(
        [
            "run",
            "cartpole-ppo",
            "--out",
            str(tmp_path),
            "--quiet",
            "--levels",
            "1",
            "--set",
            "train.steps=512",
            "--set",
            "rewind.step=128",
            "--set",
            "controls=[random_reinit]",
            "--set",
            "rl.n_eval_episodes=2",
            "--set",
            "rl.tensorboard=true",
        ]
    )
    assert code == 0
    (run_dir,) = tmp_path.glob("cartpole-ppo-*")
    for unit in ("ticket/level_0", "ticket/level_1", "random_reinit/level_1"):
        d = run_dir / "seed_0" / unit
        assert (d / "DONE").is_file() and (d / "ticket.zip").is_file()
        record = json.loads((d / "metrics.json").read_text())
        assert {"eval_return", "ticket_reward"} <= set(record["metrics"])
    level1 = json.loads((run_dir / "seed_0/ticket/level_1/metrics.json").read_text())
    assert level1["start_step"] == 128 and abs(level1["sparsity"] - 0.2) < 0.01
    assert any((run_dir / "cache" / "tensorboard").rglob("events.out.tfevents.*"))
    capsys.readouterr()
    assert (
        cli_main(["run", str(_task(tmp_path, {"env": "Nope-v1", "algo": "ppo"})), "--out", str(tmp_path)])
        == 2
    )
    assert "rl.env: unknown Gymnasium environment 'Nope-v1'" in capsys.readouterr().err


def test_atari_cnn_trunk_is_shared(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    data = {
        "env": "PongNoFrameskip-v4",
        "algo": "ppo",
        "overrides": {"n_envs": 1, "batch_size": 128},
        "tensorboard": False,
    }

    def names(**kw: Any) -> list[str]:
        adapter = SB3Adapter(None, Section.model_validate({**data, **kw}), tmp_path)
        adapter.build(0)
        assert adapter.model.get_env().observation_space.shape == (4, 84, 84)  # AtariWrapper + 4 frames
        out = adapter.default_prunable()
        adapter.close()
        return out

    trunk = [
        "features_extractor.cnn.0.weight",
        "features_extractor.cnn.2.weight",
        "features_extractor.cnn.4.weight",
        "features_extractor.linear.0.weight",
    ]
    assert names() == [*trunk, "action_net.weight", "value_net.weight"]
    assert names(roles=["shared"], prune_input_layer=False) == trunk[1:]
    assert names(roles=["actor"]) == ["action_net.weight"]


def test_shipped_tasks_and_agents_files_are_valid(tmp_path: Path) -> None:
    import yaml

    from multiticket.adapters.sb3_hyper import agents_file, check_keys, resolve_hyper
    from multiticket.paths import shipped_tasks

    rl_tasks = {n: p for n, p in shipped_tasks().items() if yaml.safe_load(p.read_text())["domain"] == "rl"}
    assert {
        "cartpole-ppo",
        "cartpole-dqn",
        "acrobot-a2c",
        "lunarlander-ppo",
        "pendulum-sac",
        "pong-ppo",
    } <= set(rl_tasks)
    for path in rl_tasks.values():
        task = load_task(path)
        SB3Adapter(task.config, task.section, tmp_path)  # resolves the agents entry + overrides
    for algo in ALGOS:
        entries = yaml.safe_load(agents_file(algo).read_text())
        for key, entry in entries.items():
            check_keys(algo, list(entry))
            env = {"atari": "PongNoFrameskip-v4"}.get(key, key.removesuffix("-yu2019"))
            resolve_hyper(algo, env, key, {})
    assert "CartPole-v1-yu2019" in yaml.safe_load(agents_file("a2c").read_text())


def test_missing_simulator_is_a_user_error(tmp_path: Path) -> None:
    try:
        import mujoco  # noqa: F401
    except ImportError:
        adapter = SB3Adapter(None, Section.model_validate({"env": "HalfCheetah-v5", "algo": "sac"}), tmp_path)
        with pytest.raises(
            UserError, match=r"^rl\.env: 'HalfCheetah-v5' needs a package that is not installed"
        ):
            adapter.build(0)
    else:
        pytest.skip("MuJoCo is installed")


def test_env_attrs_change_the_physics_of_training_and_evaluation_envs(tmp_path: Path) -> None:
    """CartPole with a longer, heavier pole: the constants and the derived ones are set on every
    env, and the same state and action lead somewhere else than in the standard CartPole."""
    import numpy as np

    changed = make_adapter("ppo", tmp_path / "a", env_attrs={"length": 1.0, "masspole": 0.3})
    plain = make_adapter("ppo", tmp_path / "b")
    changed.build(0)
    plain.build(0)
    envs = [*changed.model.get_env().envs, *changed.eval_env.envs]
    assert len(envs) == 3
    for env in envs:
        base = env.unwrapped
        assert (base.length, base.masspole, base.masscart) == (1.0, 0.3, 1.0)
        assert base.total_mass == pytest.approx(1.3) and base.polemass_length == pytest.approx(0.3)
    state = np.array([0.0, 0.1, 0.05, -0.1])
    after = []
    for adapter in (changed, plain):
        base = adapter.eval_env.envs[0].unwrapped
        base.state = state.copy()
        after.append(base.step(1)[0])
    assert not np.allclose(after[0], after[1])
    assert plain.eval_env.envs[0].unwrapped.length == 0.5


def test_env_attrs_left_empty_keep_the_run_hash(tmp_path: Path) -> None:
    rl = {"env": "CartPole-v1", "algo": "ppo"}
    plain = load_task(_task(tmp_path, rl))
    assert "env_attrs" not in plain.resolved["rl"]
    empty = load_task(_task(tmp_path, {**rl, "env_attrs": {}}))
    changed = load_task(_task(tmp_path, {**rl, "env_attrs": {"length": 1.0}}))
    assert empty.hash == plain.hash != changed.hash
    assert changed.resolved["rl"]["env_attrs"] == {"length": 1.0}


@pytest.mark.parametrize("algo", ["dqn", "a2c", "sac"])
def test_rewind_point_round_trips_through_its_files_exactly(algo: str, tmp_path: Path) -> None:
    """Counters, running statistics (a2c normalizes), replay buffers and the entropy coefficient
    come back from state.safetensors + state.json exactly, with no pickle written."""
    from tests.core.test_statefile import _equal

    adapter = make_adapter(algo, tmp_path, **({} if algo == "a2c" else {"keep_replay_buffer": True}))
    point = run_level(adapter, 0, None, None, captures=(K,)).captured[K]
    assert sorted(point.save(tmp_path / "rp")) == ["state.json", "state.safetensors", "weights.safetensors"]
    back = RewindPoint.load(tmp_path / "rp")
    assert _equal(back.extra, point.extra) and _equal(back.optimizers, point.optimizers)
    assert _equal(back.rng, point.rng) and back.step == point.step
    assert ("obs_rms" in back.extra) == (algo == "a2c") and ("replay_buffer" in back.extra) == (algo != "a2c")
    if algo == "dqn":  # the loaded point trains a level exactly like the one in memory
        mask = half_mask(adapter)
        runs = [copy_state_dict(run_level(adapter, 0, mask, p).adapter.module) for p in (point, back)]
        assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])
    adapter.close()


@pytest.mark.parametrize("verbose", [0, 1])
def test_training_without_tensorboard_leaves_no_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], verbose: int
) -> None:
    """SB3's default logger makes an empty /tmp/SB3-<date> folder at every learn(); the unit's own does not."""
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    adapter = make_adapter("ppo", tmp_path, verbose=verbose)
    run_level(adapter, 0, None, None)
    assert list(temp.glob("SB3-*")) == []
    assert ("time/" in capsys.readouterr().out) == bool(verbose)  # verbose still prints SB3's table
