"""Stable-Baselines3 adapter: IMP on PPO, A2C, DQN, SAC and TD3 through SB3's own ``learn()``.

SB3 is used unchanged. ``learn`` gets two callbacks, composed in a ``CallbackList``: the public
:class:`~multiticket.adapters.sb3_callback.TicketCallback` (``multiticket.sb3.TicketCallback``),
around the mask enforcer the core attached, binds it to SB3's own optimizers and the target
networks, exactly as in a user's script; :class:`HooksCallback` reports progress to the core
(``on_step`` after every env step, with ``num_timesteps`` as the step). A level that starts at the
rewind step k continues with ``num_timesteps = k`` and ``learn(T - k, reset_num_timesteps=False)``
so that progress-based schedules (learning rate, clip range, DQN's exploration rate) continue
exactly where the dense run was at step k; SB3's private fields that this takes sit behind
:mod:`multiticket.adapters.sb3_shim`, checked against the SB3 versions it was written for.
See docs/rl.md for the task-file keys and :mod:`multiticket.adapters.sb3_algos` for the per-algorithm
table (prunable modules, optimizers, target pairs).
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import math
import pickle
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import HumanOutputFormat, Logger, configure
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from torch import nn

from multiticket.adapters import sb3_shim as shim
from multiticket.adapters.sb3_algos import ALGOS, AlgoSpec, prunable_names
from multiticket.adapters.sb3_algos import _layers as branch_layers
from multiticket.adapters.sb3_callback import TicketCallback
from multiticket.adapters.sb3_config import Section
from multiticket.adapters.sb3_env_spec import action_space_problem
from multiticket.adapters.sb3_envs import make_env, vec_normalize
from multiticket.adapters.sb3_hyper import Hyper, agents_entry, agents_key, resolve_hyper
from multiticket.adapters.sb3_random import random_policy_returns
from multiticket.adapters.sb3_scoring import ScoringBatch, batch_size, collect, gamma, ones_output, split
from multiticket.adapters.sb3_scoring import scoring_loss as family_loss
from multiticket.adapters.sb3_state import buffer_tree, restore_buffer, rms_from, rms_tree
from multiticket.core.adapter import GIB, DomainAdapter, TrainHooks
from multiticket.core.seeding import derive_seed
from multiticket.core.statefile import Pickled
from multiticket.core.ticket_binding import TicketBinding
from multiticket.errors import UserError

__all__ = ["SB3Adapter", "Section"]

#: the ``rl`` section's class, under a name the class body can annotate with (there ``Section`` is the attribute)
RLSection = Section


def _vec_normalize_of(venv: VecEnv | None) -> VecNormalize | None:
    """The ``VecNormalize`` layer of ``venv`` (None without one, or without an env)."""
    return None if venv is None else vec_normalize(venv)


class HooksCallback(BaseCallback):
    """Forwards SB3's per-step callback to the core: ``hooks.on_step(num_timesteps, logs)``.

    Losses SB3 logged during the previous update (``train/*loss*``) ride along with the first step
    of the next rollout, so the core can stop a run whose loss went NaN. The return and length of
    every training episode that ended in this step (the ``Monitor`` wrapper's ``episode`` info, the
    same numbers SB3 puts in ``ep_info_buffer``) ride along too: the unit's learning curve.
    """

    def __init__(self, hooks: TrainHooks, adapter: SB3Adapter) -> None:
        super().__init__(verbose=0)
        self.hooks = hooks
        self.adapter = adapter
        self._pending: dict[str, float | Sequence[float]] | None = None

    def _on_rollout_start(self) -> None:
        values = self.model.logger.name_to_value
        losses: dict[str, float | Sequence[float]] = {
            k: float(v) for k, v in values.items() if k.startswith("train/") and "loss" in k
        }
        self._pending = losses or None
        # between two rollouts (the previous update done, the rollout buffer empty) the state is
        # weights + optimizers + RNG + resume_state(): a checkpoint here resumes bit for bit
        self.hooks.on_resumable(self.num_timesteps)

    def _on_step(self) -> bool:
        logs, self._pending = self._pending, None
        episodes = [info["episode"] for info in self.locals.get("infos", ()) if "episode" in info]
        if episodes:
            logs = {**(logs or {}), "episode_return": tuple(float(ep["r"]) for ep in episodes),
                    "episode_length": tuple(float(ep["l"]) for ep in episodes)}
        # SB3 calls back in the middle of its step: state() must account for the rest of it
        self.adapter._mid_step = True
        try:
            self.hooks.on_step(self.num_timesteps, logs)
        finally:
            self.adapter._mid_step = False
        # False ends learn() cleanly before any further update (early-bird stop)
        return not getattr(self.hooks, "should_stop", False)


class SB3Adapter(DomainAdapter):
    """Lottery-ticket search on an SB3 algorithm; the prunable root module is ``model.policy``."""

    domain = "rl"
    Section: ClassVar[type[RLSection]] = RLSection
    #: ``disjoint``: the N evaluation episodes run on N copies of the eval env, one batched
    #: ``predict`` per step, copy i of training seed s seeded offset + s·N + i, so two training
    #: seeds never share an episode (their results are independent samples); ``batched``: the same
    #: seeded seed + offset + i, so seeds s and s+1 shared N−1 episodes (runs written before
    #: disjoint seeds); ``sequential``: one env, one episode after another (runs written before
    #: batching). :mod:`multiticket.core.eval_method` keeps a run on the method it began with.
    eval_methods = ("disjoint", "batched", "sequential")
    eval_method = "disjoint"
    curve_logs = ("episode_return", "episode_length")
    step_unit = "env steps"
    eval_every_key = "rl.eval_every"
    worker_base_bytes = int(0.6 * GIB)  # SB3 and Gymnasium, with room for the environments
    #: In RL the first updates of PPO/A2C move the weights so little that the next mask looks stable
    #: before training has shaped it: on cartpole-ppo, checks every 2 % stopped at about 20 % of
    #: training and one seed's early-bird tickets collapsed (return 10-150 vs 500), while every 5 %
    #: they stopped at 30-50 % and held.
    early_bird_interval = "5%"
    input_features = True  # the policy's first layers read the observation vector

    def __init__(self, task: Any, section: RLSection, workdir: Path, device: str = "cpu") -> None:
        super().__init__(task, section, workdir, device)
        self.section: RLSection = section
        self.spec: AlgoSpec = ALGOS[section.algo]
        try:
            self.hyper: Hyper = resolve_hyper(
                section.algo, section.env, section.hyperparams, section.overrides, section.env_kwargs
            )
        except ValueError as exc:
            raise UserError(f"rl.overrides: {exc}") from None
        self.model: BaseAlgorithm | None = None
        self.eval_env: VecEnv | None = None
        self.seed = 0
        self.init_seed = 0
        self._state_loaded = False
        self._resumed = False
        self._mid_step = False
        self.constant_lr: float | None = None

    # -- identity -------------------------------------------------------------------------------
    @property
    def metric(self) -> str:
        return "eval_return"

    @property
    def higher_is_better(self) -> bool:
        return True

    # -- model ----------------------------------------------------------------------------------
    def _device(self) -> str:
        wanted = self.section.device
        if wanted == "cuda" and not torch.cuda.is_available():
            raise UserError("rl.device: 'cuda' asked for but no CUDA device is available")
        if wanted == "auto":
            # SB3's MLP policies are fastest on CPU even when a GPU exists; CNN policies are not
            return "cuda" if self.device == "cuda" and "Cnn" in self.hyper.policy else "cpu"
        return wanted

    def _action_noise(self, venv: VecEnv) -> Any:
        if self.hyper.noise is None:
            return None
        kind, std = self.hyper.noise
        shape = venv.action_space.shape
        assert shape is not None  # noise is for Box action spaces, which have a shape
        n = int(np.prod(shape))
        cls = NormalActionNoise if kind == "normal" else OrnsteinUhlenbeckActionNoise
        return cls(mean=np.zeros(n), sigma=std * np.ones(n))

    def build(self, seed: int, init_seed: int | None = None) -> None:
        """Seeded envs and model; ``init_seed`` only changes the initial policy weights."""
        self.close()
        self.seed, self.init_seed = seed, seed if init_seed is None else init_seed
        self._state_loaded = False
        self._resumed = False
        device = self._device()
        if self.section.torch_threads is not None:
            torch.set_num_threads(self.section.torch_threads)
        elif device == "cpu" and "Cnn" not in self.hyper.policy:
            # measured: one thread is as fast as two for SB3's small MLPs, and leaves a core free
            torch.set_num_threads(1)
        aliases = list(self.spec.cls.policy_aliases)
        if self.hyper.policy_class is None and self.hyper.policy not in aliases:
            raise UserError(f"rl.overrides: policy '{self.hyper.policy}' is not one of {aliases} "
                            "(or a policy class by import path)")
        env_id = self.section.env
        venv = make_env(env_id, self.hyper, seed, self.hyper.n_envs, training=True, env_attrs=self.section.env_attrs)
        problem = action_space_problem(self.section.algo, venv.action_space, env_id)
        if problem:
            venv.close()
            raise UserError(f"rl.algo: {problem}")
        kwargs = dict(self.hyper.kwargs)
        noise = self._action_noise(venv)
        if noise is not None:
            kwargs["action_noise"] = noise
        try:
            self.model = self.spec.cls(
                self.hyper.policy_class or self.hyper.policy, venv, seed=seed, device=device, verbose=self.section.verbose, **kwargs
            )
        except (TypeError, ValueError, AssertionError, KeyError) as exc:
            venv.close()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"rl.overrides: {self.spec.name} rejected the hyperparameters: {first}") from None
        if self.init_seed != seed:
            self._reinitialise(self.init_seed)
        copies = 1 if self.eval_method == "sequential" else self.section.n_eval_episodes
        self.eval_env = make_env(
            env_id, self.hyper, self._eval_seed(), copies, training=False, env_attrs=self.section.env_attrs
        )

    def _eval_seed(self) -> int:
        """The seed of the first evaluation env copy (copy i: this + i; see :attr:`eval_methods`)."""
        s = self.section
        if self.eval_method == "disjoint":
            return s.eval_seed_offset + self.seed * s.n_eval_episodes
        return self.seed + s.eval_seed_offset

    def eval_seeds(self) -> list[int]:
        """The env seed of each evaluation episode (``sequential``: the one env's seed, its
        episodes continuing that env's stream)."""
        if self.eval_method == "sequential":
            return [self._eval_seed()]
        return [self._eval_seed() + i for i in range(self.section.n_eval_episodes)]

    def provenance(self) -> dict[str, Any]:
        """The SB3 class and what it was built with: the agents entry, ``rl.overrides`` over it,
        the policy and env count filled in (SB3's defaults for every other argument)."""
        s = self.section
        key = agents_key(s.algo, s.env, s.hyperparams)
        values = {**agents_entry(s.algo, s.env, s.hyperparams), **s.overrides}
        values.update(policy=self.hyper.policy, n_envs=self.hyper.n_envs)
        values.pop("n_timesteps", None)  # train.steps decides the budget
        entry = f"agents/{s.algo}.yaml entry '{key}'" if key else "no agents entry (SB3's defaults)"
        return {"model_class": f"{self.spec.cls.__module__}.{self.spec.cls.__qualname__}", "hyperparameters": values,
                "hyperparameters_from": f"{entry} + rl.overrides; SB3's defaults for the rest"}

    def header_facts(self) -> dict[str, str]:
        return {"algorithm": self.section.algo.upper(), "environment": self.section.env}

    def identity(self) -> str:
        return f"{self.section.algo.upper()}, {self.section.env}"

    def _reinitialise(self, init_seed: int) -> None:
        """Fresh policy weights drawn with ``init_seed``; the torch RNG stream that drives
        sampling is left exactly as ``seed`` set it, so only the initialisation differs."""
        model = self.model
        assert model is not None
        rng = torch.get_rng_state()
        torch.manual_seed(init_seed)
        extra = {"use_sde": model.use_sde} if self.spec.on_policy else {}
        fresh = model.policy_class(
            model.observation_space, model.action_space, model.lr_schedule, **extra, **model.policy_kwargs
        ).to(model.device)
        model.policy.load_state_dict(fresh.state_dict())
        torch.set_rng_state(rng)

    def _require_model(self) -> BaseAlgorithm:
        if self.model is None:
            raise RuntimeError("SB3Adapter: build() must be called first")
        return self.model

    @property
    def module(self) -> nn.Module:
        return self._require_model().policy

    def _standard_policy(self) -> bool:
        """Whether the policy is (a subclass of) the algorithm's own, whose roles the table knows."""
        own = self.spec.cls.policy_aliases["MlpPolicy"]
        return self.hyper.policy_class is None or issubclass(self.hyper.policy_class, own)

    def default_prunable(self) -> list[str]:
        if not self._standard_policy():
            if getattr(getattr(self.task, "prune", None), "include", None):
                return []  # the task names the prunable parameters itself
            own = self.spec.cls.policy_aliases["MlpPolicy"]
            raise UserError(
                f"rl.overrides: policy '{self.hyper.policy}' is not a subclass of SB3's {own.__name__}, so its "
                "actor and critic layers are unknown: name its prunable parameters with prune.include"
            )
        names = prunable_names(
            self.module, self.spec, list(self.section.roles), self.section.prune_input_layer
        )
        if not names:
            raise UserError(
                f"rl.roles: {self.section.roles} (prune_input_layer={self.section.prune_input_layer}) "
                f"selects no Linear/Conv layer of {self.spec.name}'s {self.hyper.policy}"
            )
        return names

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return self.spec.optimizers(self._require_model())

    def target_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return self.spec.target_pairs(self._require_model())

    def io_layers(self) -> tuple[list[str], list[str]]:
        """Inputs: the first Linear/Conv of every actor/critic branch (both MLP heads of PPO read
        the observation); outputs: the last layer of every branch (action, value and Q heads) and
        ``log_std`` (its size is the action dimension)."""
        policy = self.module
        names = {id(m): n for n, m in policy.named_modules()}
        inputs: list[str] = []
        outputs: list[str] = []
        for _, modules in self.spec.branches(policy):
            layers = list(branch_layers(modules))
            if layers:
                inputs.append(names[id(layers[0])])
                outputs.append(names[id(layers[-1])])
        extra = [n for n, _ in policy.named_parameters() if n == "log_std" or n.startswith("log_std.")]
        extra += [n for n in ("actor.log_std",) if n in names.values()]
        return list(dict.fromkeys(inputs)), list(dict.fromkeys(outputs + extra))

    def set_constant_lr(self, lr: float | None) -> None:
        """Fine-tuning: ``train`` replaces ``model.lr_schedule`` (which SB3 applies to every
        optimizer before each update) with a constant one; clip and exploration schedules stay."""
        self.constant_lr = lr

    # -- training -------------------------------------------------------------------------------
    def _logger(self) -> Logger:
        """TensorBoard (and stdout when verbose) in the unit's folder; without TensorBoard a logger
        with no folder: SB3's default makes an empty ``/tmp/SB3-<date>`` folder at every learn()."""
        tb_dir = self._tensorboard_dir()
        if tb_dir is not None:
            return configure(str(tb_dir), ["stdout", "tensorboard"] if self.section.verbose else ["tensorboard"])
        return Logger(None, [HumanOutputFormat(sys.stdout)] if self.section.verbose else [])

    def _tensorboard_dir(self) -> Path | None:
        """``tensorboard/seed_<s>/<control>/level_<L>`` (the unit's :attr:`log_name`); another
        training of the same unit (a retry, an instability copy) gets ``level_<L>.2``, ``.3``, ...,
        and a resumed unit appends to the newest of them."""
        enabled = self.section.tensorboard
        if enabled is None:
            enabled = importlib.util.find_spec("tensorboard") is not None
        if not enabled:
            return None
        base = self.workdir / "tensorboard" / (self.log_name or f"seed_{self.seed}")
        taken = [base, *itertools.takewhile(Path.exists, (base.with_name(f"{base.name}.{n}") for n in itertools.count(2)))]
        run = taken[-1] if self._resumed or not base.exists() else base.with_name(f"{base.name}.{len(taken) + 1}")
        run.mkdir(parents=True, exist_ok=True)
        return run

    def train(self, start: int, stop: int, hooks: TrainHooks) -> None:
        """Environment timesteps ``start`` -> ``stop``; a level with start=k continues the schedules."""
        model = self._require_model()
        hooks.on_optimizers(self.optimizers())  # optimizer state restored, then masked, before the binding
        if start > 0 and not self._state_loaded:
            shim.start_at(model, start)
        if start > 0:
            shim.continue_progress(model, stop)
        if self.constant_lr is not None:
            shim.set_lr_schedule(model, shim.constant_schedule(float(self.constant_lr)))
        model.set_logger(self._logger())
        remaining = stop - (model.num_timesteps if start > 0 else 0)
        if remaining <= 0:
            return
        model.learn(
            remaining,
            callback=self._callbacks(hooks),
            reset_num_timesteps=start == 0,
            progress_bar=self.section.progress_bar,
        )

    def _callbacks(self, hooks: TrainHooks) -> CallbackList:
        """Mask enforcement through the public ``TicketCallback`` (one mechanism for the adapter and
        users' scripts), then progress reporting. The binding wraps the enforcer the core attached
        (``LevelHooks.enforcer``; None for a dense unit), loads no weights (the core did), and makes
        the target networks copies of the masked online ones so that Polyak updates keep their
        pruned entries 0 -- except on resume: a checkpoint holds the targets as they were."""
        binding = TicketBinding(enforcer=getattr(hooks, "enforcer", None), copy_targets=not self._resumed)
        return CallbackList([TicketCallback(binding), HooksCallback(hooks, self)])

    def evaluate(self) -> dict[str, float]:
        """Deterministic episodes on the separately seeded eval env, plus Yu et al.'s ticket reward
        (mean return of the last ``ticket_reward_episodes`` training episodes, when any ended)."""
        model = self._require_model()
        returns, lengths = self.eval_episodes()
        metrics = {
            "eval_return": float(np.mean(returns)),
            "eval_return_std": float(np.std(returns)),
            "eval_length": float(np.mean(lengths)),
        }
        episodes = list(model.ep_info_buffer or [])[-self.section.ticket_reward_episodes :]
        if episodes:
            metrics["ticket_reward"] = float(np.mean([ep["r"] for ep in episodes]))
        return {k: v for k, v in metrics.items() if math.isfinite(v)}

    def eval_episodes(self) -> tuple[list[float], list[int]]:
        """Return and length of each of the ``n_eval_episodes`` deterministic evaluation episodes,
        in the order they ended. Batched, the eval env holds one copy per episode and
        ``evaluate_policy`` runs exactly one episode on each (it splits N episodes evenly over N
        envs), predicting for all copies at once; sequential, one env runs them in turn."""
        model = self._require_model()
        assert self.eval_env is not None
        train_norm, eval_norm = _vec_normalize_of(model.get_env()), vec_normalize(self.eval_env)
        if train_norm is not None and eval_norm is not None:
            eval_norm.obs_rms = copy.deepcopy(train_norm.obs_rms)
        self.eval_env.seed(self._eval_seed())  # copy i: this seed + i
        # return_episode_rewards=True: per-episode lists, not (mean, std)
        episodes = evaluate_policy(
            model,
            self.eval_env,
            n_eval_episodes=self.section.n_eval_episodes,
            deterministic=True,
            return_episode_rewards=True,
            warn=False,
        )
        returns, lengths = cast(tuple[list[float], list[int]], episodes)
        return [float(r) for r in returns], [int(n) for n in lengths]

    def baselines(self) -> dict[str, float]:
        """A uniformly random policy's mean and std return over ``n_eval_episodes`` episodes on an
        evaluation environment built and seeded as the first seed's units evaluate (the actions
        drawn from their own generator, seeded with that environment's seed)."""
        s = self.section
        seed = self._eval_seed()
        env = make_env(s.env, self.hyper, seed, s.n_eval_episodes, training=False, env_attrs=s.env_attrs)
        try:
            env.seed(seed)
            returns = random_policy_returns(env, s.n_eval_episodes, seed)
        finally:
            env.close()
        return {"random_return_mean": float(np.mean(returns)), "random_return_std": float(np.std(returns)),
                "random_episodes": float(len(returns))}

    # -- scoring for data- and gradient-reading criteria (SNIP, GraSP, SynFlow) -----------------
    def scoring_batches(self, seed: int, n: int) -> list[ScoringBatch]:
        """``n`` of the algorithm's minibatches of a uniformly random policy's rollouts on one fresh
        environment seeded from ``seed`` (:mod:`multiticket.adapters.sb3_scoring`): a function of
        the seed alone, whatever weights the policy holds, drawing from no global RNG."""
        model, s = self._require_model(), self.section
        size, env_seed = batch_size(model), derive_seed(seed, "sb3-scoring")
        venv = make_env(s.env, self.hyper, env_seed, 1, training=True, env_attrs=s.env_attrs)
        try:
            rows = collect(venv, env_seed, n * size, gamma(model))
        finally:
            venv.close()
        return split(rows, n, size)

    def scoring_loss(self, batch: ScoringBatch) -> torch.Tensor:
        """The algorithm family's own loss on one scoring batch: actor-critic (PPO, A2C), TD (DQN),
        critic TD + actor (SAC, TD3); :mod:`multiticket.adapters.sb3_scoring` says why each."""
        return family_loss(self._require_model(), batch)

    def scoring_ones_output(self) -> torch.Tensor:
        """The policy's outputs (action head, values or Q-values) on one all-ones observation."""
        return ones_output(self._require_model())

    # -- rewind state ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Counters, exploration rate, entropy coefficient, VecNormalize statistics and (with
        ``keep_replay_buffer``) the replay buffer, as plain arrays and numbers (stored without
        pickles, :mod:`multiticket.adapters.sb3_state`). By reference: the core deep-copies it."""
        model = self._require_model()
        # mid-step: DQN counts this step (for its target-update interval) only after the callback
        st: dict[str, Any] = {"num_timesteps": int(model.num_timesteps), **shim.counters(model, self._mid_step)}
        extras = shim.extras(model)
        if hasattr(model, "exploration_rate"):
            st["exploration_rate"] = float(extras.exploration_rate)
        if getattr(model, "log_ent_coef", None) is not None:
            st["log_ent_coef"] = extras.log_ent_coef.detach().cpu().clone()
        norm = _vec_normalize_of(model.get_env())
        if norm is not None:
            st["obs_rms"], st["ret_rms"] = rms_tree(norm.obs_rms), rms_tree(norm.ret_rms)
        if self.section.keep_replay_buffer and getattr(model, "replay_buffer", None) is not None:
            st["replay_buffer"] = buffer_tree(extras.replay_buffer)
        return st

    def load_state(self, state: dict[str, Any]) -> None:
        model = self._require_model()
        extras = shim.extras(model)
        shim.set_counters(model, state)
        if "exploration_rate" in state:
            extras.exploration_rate = float(state["exploration_rate"])
        if "log_ent_coef" in state and getattr(model, "log_ent_coef", None) is not None:
            with torch.no_grad():  # in place: the entropy optimizer keeps pointing at this tensor
                extras.log_ent_coef.copy_(state["log_ent_coef"].to(extras.log_ent_coef.device))
        norm = _vec_normalize_of(model.get_env())
        if norm is not None and "obs_rms" in state:
            # SB3 types obs_rms after its dict-observation branch; it holds either kind (rms_from's result)
            norm.obs_rms = rms_from(state["obs_rms"])  # type: ignore[assignment]
            norm.ret_rms = cast(RunningMeanStd, rms_from(state["ret_rms"]))  # a scalar statistic, never a dict
        if self.section.keep_replay_buffer and state.get("replay_buffer") is not None:
            extras.replay_buffer = restore_buffer(extras.replay_buffer, state["replay_buffer"])
        self._state_loaded = True

    # -- mid-level checkpoints ------------------------------------------------------------------
    def resume_state(self) -> dict[str, Any]:
        """:meth:`state` plus the training environments (physics, episode counters, their RNGs,
        Monitor statistics), the last observations, episode buffers, action noise, the entropy
        coefficient's optimizer and, off-policy, the replay buffer. Taken between rollouts only
        (``on_resumable``), so the rollout buffer is empty and needs no saving. The environments
        and the other algorithm attributes can only be pickled: they travel as a signed pickle."""
        model = self._require_model()
        st = self.state()
        st["algo"] = Pickled(shim.learner_state(model))  # the attributes of shim.RESUME_ATTRS it has
        if getattr(model, "replay_buffer", None) is not None:
            st["replay_buffer"] = buffer_tree(shim.extras(model).replay_buffer)
        ent_opt = getattr(model, "ent_coef_optimizer", None)
        if ent_opt is not None:
            st["ent_coef_optimizer"] = ent_opt.state_dict()
        return st

    def load_resume_state(self, state: dict[str, Any]) -> None:
        model = self._require_model()
        old_env = model.get_env()
        self.load_state(state)
        algo = state["algo"].value if isinstance(state["algo"], Pickled) else state["algo"]
        shim.set_learner_state(model, algo)
        if old_env is not None and old_env is not model.env:
            old_env.close()
        shim.set_vec_normalize(model, _vec_normalize_of(model.env))
        extras = shim.extras(model)
        if state.get("replay_buffer") is not None:
            extras.replay_buffer = restore_buffer(extras.replay_buffer, state["replay_buffer"])
        if "ent_coef_optimizer" in state and getattr(model, "ent_coef_optimizer", None) is not None:
            extras.ent_coef_optimizer.load_state_dict(copy.deepcopy(state["ent_coef_optimizer"]))
        self._resumed = True

    def check_resumable(self) -> None:
        """Checkpoints pickle the training environments; fail before training if a pickled copy
        cannot go on stepping (Box2D's LunarLander pickles, but its copy has lost its world)."""
        model = self._require_model()
        try:
            env = model.get_env()
            assert env is not None  # build() gave the model its training envs
            probe = copy.deepcopy(env)  # before its first reset: a plain copy
            probe.reset()  # simulators such as Box2D build their world here
            restored = pickle.loads(pickle.dumps(probe))
            restored.step(np.array([restored.action_space.sample() for _ in range(restored.num_envs)]))
            probe.close()
            restored.close()
        except Exception as exc:  # noqa: BLE001 - any copy failure means no checkpoints for this env
            raise UserError(
                f"checkpoint: the environments of '{self.section.env}' cannot be copied for a checkpoint "
                f"({type(exc).__name__}); remove the checkpoint section for this task"
            ) from None

    # -- outputs --------------------------------------------------------------------------------
    def export(self, level_dir: Path) -> None:
        """``ticket.zip`` (``ALGO.load`` opens it; pruned weights are exact zeros) and, with
        ``normalize``, ``vecnormalize.pkl`` (``VecNormalize.load``)."""
        model = self._require_model()
        level_dir = Path(level_dir)
        level_dir.mkdir(parents=True, exist_ok=True)
        model.save(level_dir / "ticket.zip")
        norm = _vec_normalize_of(model.get_env())
        if norm is not None:
            norm.save(str(level_dir / "vecnormalize.pkl"))

    def export_model(self, path: Path, mask: Mapping[str, torch.Tensor], compact: bool,
                     unit_dir: Path | None = None) -> dict[str, Any]:
        """``multiticket export``: one zip ``ALGO.load`` reads; ``compact``: its dead neurons removed
        (a narrower ``net_arch``, :mod:`multiticket.adapters.sb3_export`)."""
        from multiticket.adapters.sb3_export import export_model

        return export_model(self._require_model(), mask, path, compact, unit_dir)

    def close(self) -> None:
        for env in (self.model.get_env() if self.model is not None else None, self.eval_env):
            if env is not None:
                env.close()
        self.model, self.eval_env = None, None
