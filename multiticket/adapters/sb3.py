"""Stable-Baselines3 adapter: IMP on PPO, A2C, DQN, SAC and TD3 through SB3's own ``learn()``.

SB3 is used unchanged. ``learn`` gets two callbacks, composed in a ``CallbackList``: the public
:class:`~multiticket.adapters.sb3_callback.TicketCallback` (``multiticket.sb3.TicketCallback``),
around the mask enforcer the core attached, binds it to SB3's own optimizers and the target
networks, exactly as in a user's script; :class:`~multiticket.adapters.sb3_hooks.HooksCallback`
reports progress to the core (``on_step`` after every env step, with ``num_timesteps`` as the
step). A level that starts at the rewind step k continues with ``num_timesteps = k`` and
``learn(T - k, reset_num_timesteps=False)``
so that progress-based schedules (learning rate, clip range, DQN's exploration rate) continue
exactly where the dense run was at step k; SB3's private fields that this takes sit behind
:mod:`multiticket.adapters.sb3_shim`, checked against the SB3 versions it was written for.
See docs/rl.md for the task-file keys and :mod:`multiticket.adapters.sb3_algos` for the per-algorithm
table (prunable modules, optimizers, target pairs).
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import HumanOutputFormat, Logger, configure
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from multiticket.adapters import sb3_build, sb3_eval, sb3_rewind
from multiticket.adapters import sb3_shim as shim
from multiticket.adapters.sb3_algos import ALGOS, AlgoSpec, prunable_names
from multiticket.adapters.sb3_algos import _layers as branch_layers
from multiticket.adapters.sb3_callback import TicketCallback
from multiticket.adapters.sb3_config import Section
from multiticket.adapters.sb3_envs import make_env
from multiticket.adapters.sb3_hooks import HooksCallback
from multiticket.adapters.sb3_hyper import Hyper, agents_entry, agents_key, resolve_hyper
from multiticket.adapters.sb3_scoring import ScoringBatch, batch_size, collect, gamma, ones_output, split
from multiticket.adapters.sb3_scoring import scoring_loss as family_loss
from multiticket.core.adapter import GIB, DomainAdapter, TrainHooks
from multiticket.core.seeding import derive_seed
from multiticket.core.ticket_binding import TicketBinding
from multiticket.errors import UserError

__all__ = ["HooksCallback", "SB3Adapter", "Section"]

#: the ``rl`` section's class, under a name the class body can annotate with (there ``Section`` is the attribute)
RLSection = Section


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
        """``rl.device``, ``auto`` resolved (:func:`multiticket.adapters.sb3_build.model_device`)."""
        return sb3_build.model_device(self.section, self.hyper, self.device)

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
        self.model = sb3_build.make_model(self.spec, self.hyper, self.section, seed, device)
        if self.init_seed != seed:
            self._reinitialise(self.init_seed)
        copies = 1 if self.eval_method == "sequential" else self.section.n_eval_episodes
        self.eval_env = make_env(
            self.section.env, self.hyper, self._eval_seed(), copies, training=False, env_attrs=self.section.env_attrs
        )

    def _eval_seed(self) -> int:
        """The seed of the first evaluation env copy (copy i: this + i; see :attr:`eval_methods`)."""
        return sb3_eval.first_eval_seed(self.eval_method, self.section, self.seed)

    def eval_seeds(self) -> list[int]:
        """The env seed of each evaluation episode (``sequential``: the one env's seed, its
        episodes continuing that env's stream)."""
        return sb3_eval.episode_seeds(self.eval_method, self.section, self.seed)

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
        sb3_build.reinitialise(model, self.spec, init_seed)

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
        return sb3_eval.eval_metrics(model, returns, lengths, self.section.ticket_reward_episodes)

    def eval_episodes(self) -> tuple[list[float], list[int]]:
        """Return and length of each of the ``n_eval_episodes`` deterministic evaluation episodes,
        in the order they ended (:func:`multiticket.adapters.sb3_eval.eval_episodes`)."""
        model = self._require_model()
        assert self.eval_env is not None
        return sb3_eval.eval_episodes(model, self.eval_env, self.section.n_eval_episodes, self._eval_seed())

    def baselines(self) -> dict[str, float]:
        """A uniformly random policy's mean and std return over ``n_eval_episodes`` episodes on an
        evaluation environment built and seeded as the first seed's units evaluate (the actions
        drawn from their own generator, seeded with that environment's seed)."""
        return sb3_eval.random_baselines(self.section, self.hyper, self._eval_seed())

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
        ``keep_replay_buffer``) the replay buffer, as plain arrays and numbers
        (:func:`multiticket.adapters.sb3_rewind.rewind_state`). By reference: the core deep-copies it."""
        return sb3_rewind.rewind_state(self._require_model(), self.section.keep_replay_buffer, self._mid_step)

    def load_state(self, state: dict[str, Any]) -> None:
        sb3_rewind.load_rewind_state(self._require_model(), state, self.section.keep_replay_buffer)
        self._state_loaded = True

    # -- mid-level checkpoints ------------------------------------------------------------------
    def resume_state(self) -> dict[str, Any]:
        """:meth:`state` plus the training environments, the algorithm's other attributes and,
        off-policy, the replay buffer (:func:`multiticket.adapters.sb3_rewind.with_resume_state`).
        Taken between rollouts only (``on_resumable``), so the rollout buffer needs no saving."""
        model = self._require_model()
        return sb3_rewind.with_resume_state(model, self.state())

    def load_resume_state(self, state: dict[str, Any]) -> None:
        model = self._require_model()
        old_env = model.get_env()
        self.load_state(state)
        sb3_rewind.load_resume_extras(model, state, old_env)
        self._resumed = True

    def check_resumable(self) -> None:
        """Checkpoints pickle the training environments; fail before training if a pickled copy
        cannot go on stepping (:func:`multiticket.adapters.sb3_rewind.check_resumable`)."""
        sb3_rewind.check_resumable(self._require_model(), self.section.env)

    # -- outputs --------------------------------------------------------------------------------
    def export(self, level_dir: Path) -> None:
        """``ticket.zip`` (``ALGO.load`` opens it; pruned weights are exact zeros) and, with
        ``normalize``, ``vecnormalize.pkl`` (``VecNormalize.load``)."""
        model = self._require_model()
        level_dir = Path(level_dir)
        level_dir.mkdir(parents=True, exist_ok=True)
        model.save(level_dir / "ticket.zip")
        norm = sb3_rewind.vec_normalize_of(model.get_env())
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
