"""The seam between the domain-agnostic IMP loop and a domain's own training loop.

An adapter owns everything domain-specific (environments, tokenizers, SB3 algorithms, HF Trainer)
and exposes the few operations the core needs. The core never imports a domain library; it drives
an adapter only through this class, and an adapter reports back only through :class:`TrainHooks`.

Lifecycle of one training run (one level of one control):

1. ``build(seed, init_seed)`` creates fresh objects (model/algorithm, envs or data loaders).
2. The core may overwrite the weights (rewind point, mask) and call ``load_state``.
3. ``train(start, stop, hooks)``: the adapter trains from step ``start`` to ``stop`` (domain units:
   env timesteps for RL, optimizer steps for NLP/toy) with its own loop, calling
   ``hooks.on_optimizers`` as soon as its optimizers exist (before the first step) and
   ``hooks.on_step`` after every optimizer update (or callback step, for RL).
4. ``evaluate()`` returns metrics; ``export(dir)`` writes a domain-native copy of the ticket.

Besides these operations an adapter *declares* what the rest of multiticket needs to know about
its domain, so that no module outside the core and the adapters ever compares a domain's name
(a domain added by entry point gets the same treatment as a built-in one): the unit of a step
(:attr:`~DomainAdapter.step_unit`), the task-file key of the evaluation interval
(:attr:`~DomainAdapter.eval_every_key`), the role of a layer by its name
(:meth:`~DomainAdapter.layer_role`), the report header's facts (:meth:`~DomainAdapter.header_facts`,
:meth:`~DomainAdapter.identity`), the names of its input features
(:attr:`~DomainAdapter.input_features`, :meth:`~DomainAdapter.input_names`), a worker's base memory
(:attr:`~DomainAdapter.worker_base_bytes`) and the default early-bird interval
(:attr:`~DomainAdapter.early_bird_interval`). The class-level ones are read from the registered
class (launch, config); the report reads those of a run from its run directory, where the driver
records :meth:`~DomainAdapter.domain_facts` (:mod:`multiticket.core.facts`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from multiticket.core.enforce import GradMasking
from multiticket.core.facts import DomainFacts
from multiticket.errors import UserError

GIB = 1 << 30


class TrainHooks(Protocol):
    """What an adapter calls back into while it trains (implemented by the core)."""

    #: Set by ``on_step`` when the core wants this training run to end after that step (an
    #: early-bird search whose next mask has stabilised). Poll it after every ``on_step`` and end
    #: the loop cleanly with no further update (SB3: the callback returns False; HF:
    #: ``control.should_training_stop``). An adapter that does not poll is stopped by an exception
    #: from its next ``on_step`` instead, one update late.
    should_stop: bool

    def on_optimizers(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Call once the optimizers exist, before the first update: attaches the mask enforcer
        and (if asked) restores optimizer state from the rewind point."""

    def on_step(self, step: int, logs: dict[str, float | Sequence[float]] | None = None) -> None:
        """Call after every update with the current step in domain units (monotone, may jump by
        more than one, e.g. SB3 counts ``n_envs`` timesteps per callback). Captures the rewind
        point the first time ``step >= k``, advances progress, checks logged losses for NaN.
        ``logs``: losses and the learning-curve values of this step (a sequence for several events
        of one step, such as episodes of parallel environments ending together)."""

    def on_resumable(self, step: int) -> None:
        """Call where ``train(step, stop)`` after :meth:`DomainAdapter.load_resume_state` (and the
        core's restore of weights, optimizer states and RNG) would continue bit for bit as if
        uninterrupted: the core writes a mid-level checkpoint here when one is due."""


class DomainAdapter(abc.ABC):
    """Base class of every domain adapter. Subclasses set ``Section``, ``domain``,
    ``metric`` and ``higher_is_better`` and implement the abstract methods."""

    #: the task file key that holds this domain's section (``toy``, ``rl``, ``nlp``)
    domain: ClassVar[str]
    #: pydantic model (``extra="forbid"``) validating this domain's section of the task file
    Section: ClassVar[type[BaseModel]]
    #: where the mask enforcer zeroes pruned gradients (:class:`~multiticket.core.enforce.MaskEnforcer`):
    #: ``"hook"`` on every backward, safe for any loop; ``"step"`` once right before each optimizer
    #: step, cheaper, for adapters whose own loop reads no gradient between backward and step
    grad_masking: ClassVar[GradMasking] = "hook"
    #: ways this adapter can evaluate, newest first (:mod:`multiticket.core.eval_method`); empty
    #: when there is one way only. The core sets :attr:`eval_method` from the run directory before
    #: ``build`` and records it in every unit's ``metrics.json``.
    eval_methods: ClassVar[tuple[str, ...]] = ()
    eval_method: str | None = None
    #: keys of ``hooks.on_step`` logs that are learning-curve series (:mod:`multiticket.core.curves`),
    #: e.g. ``loss``; a value may be a sequence of floats: several events of one step (episodes)
    curve_logs: ClassVar[tuple[str, ...]] = ()
    #: where the adapter's own training logs (TensorBoard) of the unit in training go, relative to
    #: its log folder: ``seed_<s>/<control>/level_<L>``; set by the core before every ``train``
    log_name: str = ""

    # -- what the domain declares (see the module docstring) ----------------------------------
    #: what one step of ``train.steps`` counts, in the report's words (compute table, curve axis)
    step_unit: ClassVar[str] = "steps"
    #: the task-file key that sets :attr:`eval_every` (``rl.eval_every``), which the report names when
    #: a run evaluated only at the end; None: this domain evaluates only at the end
    eval_every_key: ClassVar[str | None] = None
    #: resident memory of one worker before its model: Python, torch and the domain's libraries, with
    #: room for environments and data (``--workers auto``, :mod:`multiticket.launch.resources`); the
    #: default is a generous one, that of a worker importing transformers and datasets
    worker_base_bytes: ClassVar[int] = int(1.5 * GIB)
    #: early-bird mask-check interval (``early_bird.interval``) when the task sets none: steps, or a
    #: percentage of ``train.steps``
    early_bird_interval: ClassVar[int | str] = "2%"
    #: whether the columns of the first layers are named input features (an observation vector) whose
    #: pruning the report shows, dimension by dimension (:meth:`input_names`)
    input_features: ClassVar[bool] = False

    def __init__(self, task: Any, section: BaseModel, workdir: Path, device: str = "cpu") -> None:
        """``task`` is the validated :class:`multiticket.config.TaskConfig`; ``section`` its
        domain section; ``workdir`` a directory the adapter may use for caches and logs
        (it sits inside the run directory); ``device`` is ``"cpu"`` or ``"cuda"``."""
        self.task = task
        self.section = section
        self.workdir = Path(workdir)
        self.device = device

    # -- identity of the primary metric --------------------------------------------------------
    @property
    @abc.abstractmethod
    def metric(self) -> str:
        """Name of the primary metric in ``evaluate()``'s result (e.g. ``eval_return``)."""

    @property
    @abc.abstractmethod
    def higher_is_better(self) -> bool:
        """Direction of the primary metric."""

    # -- model --------------------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, seed: int, init_seed: int | None = None) -> None:
        """Create fresh objects deterministically. ``seed`` drives data order / environments;
        ``init_seed`` (default: ``seed``) drives the weight initialisation only, so a
        random-reinit control can change the init while keeping the data stream."""

    @property
    @abc.abstractmethod
    def module(self) -> nn.Module:
        """The prunable root module; mask names are its ``named_parameters()`` names."""

    @abc.abstractmethod
    def default_prunable(self) -> list[str]:
        """Parameter names pruned when the task file gives no ``prune.include`` (chosen by
        module type, e.g. Linear weights of hidden layers; biases excluded)."""

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers that exist right now (may be empty before ``train`` for lazy loops)."""
        return []

    def target_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """``(online, target)`` pairs: the core hard-copies online into target after a restore."""
        return []

    def io_layers(self) -> tuple[list[str], list[str]]:
        """``(input layers, output layers)``: names (in ``module``) of the layers that read the
        observation/tokens and that produce actions/classes/values -- the only layers whose shapes
        may differ when a ticket is transferred to another task (:mod:`multiticket.core.transfer`).
        Default: the first and the last module, in registration order, that holds parameters of
        its own; adapters with several input or output heads override it."""
        owners = [n for n, m in self.module.named_modules() if next(m.parameters(recurse=False), None) is not None]
        return (owners[:1], owners[-1:]) if owners else ([], [])

    # -- training -----------------------------------------------------------------------------
    def set_constant_lr(self, lr: float | None) -> None:
        """From the next ``train`` call on, train at the constant learning rate ``lr`` instead of
        the configured schedule (``rewind.mode: finetune``, Renda et al. 2020); None goes back to
        the schedule. Other schedules (clip range, exploration) are untouched. Optional: the
        core refuses fine-tuning for an adapter that does not override this."""
        if lr is not None:
            raise NotImplementedError(f"{type(self).__name__} cannot train at a constant learning rate")

    @abc.abstractmethod
    def train(self, start: int, stop: int, hooks: TrainHooks) -> None:
        """Train from step ``start`` to ``stop`` (schedules aligned so that a level which starts
        at the rewind step k continues the schedule exactly as the dense run did)."""

    @abc.abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Metrics of the current weights; must contain ``self.metric``."""

    # -- learning curves ----------------------------------------------------------------------
    @property
    def eval_every(self) -> int | None:
        """Steps between the evaluations of a learning curve: the domain section's ``eval_every``
        key where it has one (not hashed: evaluating changes no weight), else None (none)."""
        return getattr(self.section, "eval_every", None)

    def curve_metrics(self) -> dict[str, float]:
        """An evaluation during training, for the learning curve. The core calls it between two
        steps with every RNG state and module mode put back afterwards; it must leave training
        state (environments, data order, buffers) untouched. Default: :meth:`evaluate`; an adapter
        whose evaluation also scores test data overrides it with the validation part."""
        return self.evaluate()

    # -- rewind state beyond parameters -------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Non-parameter state that belongs to a rewind point (counters, normalisation
        statistics, exploration rate). The core deep-copies it and stores it without pickles, so
        it must be a plain tree (:mod:`multiticket.core.statefile`): dicts, lists and tuples of
        tensors, numpy arrays and scalars, numbers, strings, bools and None."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state`, called after ``build`` when a level starts at a rewind point."""

    # -- mid-level checkpoints ------------------------------------------------------------------
    def resume_state(self) -> dict[str, Any]:
        """Everything beyond weights, optimizer states and global RNG that a checkpoint needs to
        resume bit for bit at a point the adapter reported with ``hooks.on_resumable`` (for SB3:
        environments, last observations, episode buffers). Default: :meth:`state`. A plain tree
        like :meth:`state`; what only a pickle can hold goes in a
        :class:`~multiticket.core.statefile.Pickled`, stored signed with this user's key."""
        return self.state()

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`resume_state`, called after ``build`` when a unit resumes from a
        checkpoint (the core then skips the target-network hard copy: targets were saved too)."""
        self.load_state(state)

    def check_resumable(self) -> None:
        """Raise :class:`multiticket.errors.UserError` if checkpoints cannot be taken for this task
        (e.g. an environment that cannot be copied); called once before a run with checkpoints."""

    # -- what a trivial predictor scores ------------------------------------------------------
    def baselines(self) -> dict[str, float]:
        """Scores of trivial predictors on this task's evaluation data, measured once per run by
        the launch driver and stored in the run directory (``baselines.json``) so that the report,
        which loads no data and no environment, can flag degenerate units. Known keys (others are
        kept and shown): ``majority_rate`` / ``test_majority_rate`` (accuracy of always predicting
        the most frequent class), ``unigram_perplexity`` / ``test_unigram_perplexity`` (perplexity
        of the training text's smoothed unigram distribution), ``random_return_mean``,
        ``random_return_std`` and ``random_episodes`` (a seeded uniformly random policy), and
        ``trivial_<metric>`` for a metric of the adapter's own (the comparison's baseline-anchored
        scale puts it at 0). Finite
        numbers only. Must not draw from the global RNGs (the driver restores them anyway) nor
        change the adapter's model. Optional: the default, none, reads "not measured"."""
        return {}

    def eval_seeds(self) -> list[int] | None:
        """The environment seeds of the episodes :meth:`evaluate` runs, for an adapter that
        evaluates on episodes (recorded in each unit's ``metrics.json``; the report checks that
        two training seeds never share one). None (default): a fixed evaluation set, the same for
        every seed by design (a validation split)."""
        return None

    # -- what the report shows of a run (recorded by the driver: :meth:`domain_facts`) ---------
    @staticmethod
    def layer_role(name: str) -> str | None:
        """The role of a prunable parameter by its name (``attention.query``, ``embeddings``; a short
        word of letters, digits, ``_.-``), or None to leave it to its position (input, hidden,
        output, from how the weight shapes chain). Override as a ``staticmethod``. Default: None."""
        return None

    @classmethod
    def layer_roles(cls, names: Iterable[str]) -> dict[str, str]:
        """:meth:`layer_role` of each of ``names`` that has one (the form the run directory stores)."""
        return {n: role for n in names if (role := cls.layer_role(n)) is not None}

    def header_facts(self) -> dict[str, str]:
        """Label -> text rows of the report header that say what ran, after ``build`` (``algorithm:
        PPO``, ``environment: CartPole-v1``; ``model``, ``dataset``). Default: none."""
        return {}

    def identity(self) -> str | None:
        """What ran in a few words (``PPO, CartPole-v1``), for titles that name two runs (a transfer
        run's source and target). None (default): the domain's name."""
        return None

    def input_names(self) -> list[str]:
        """Names of the input features, in column order (only read where :attr:`input_features`);
        an empty list, the default, shows them as ``obs[i]``."""
        return []

    def domain_facts(self, layers: Iterable[str]) -> DomainFacts:
        """The facts the report reads from the run directory, after ``build``: the declarations
        above, with the roles of the masked ``layers`` computed (a function cannot be stored)."""
        cls = type(self)
        try:
            return DomainFacts(step_unit=cls.step_unit, eval_every_key=cls.eval_every_key, identity=self.identity(),
                               header=self.header_facts(), layer_roles=cls.layer_roles(layers),
                               input_names=self.input_names() if cls.input_features else None)
        except ValidationError as exc:  # a plugin's declaration: one line naming it, not a traceback
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UserError(f"domain '{cls.domain}': {cls.__qualname__} declares {where}: {first['msg']}") from None

    # -- scoring for data- and gradient-reading mask criteria (optional) ----------------------
    # SNIP and GraSP (``needs_batches``) read scoring_batches + scoring_loss, SynFlow
    # (``needs_ones``) scoring_ones_output; the core computes the gradients itself over
    # :attr:`module` (:mod:`multiticket.core.criteria.probe`) and refuses such a criterion in one
    # line for a domain that does not override them.
    def scoring_batches(self, seed: int, n: int) -> list[Any]:
        """``n`` batches that :meth:`scoring_loss` takes, for criteria that score weights on data:
        a small, deterministic function of ``seed`` (the same list on every call and machine; e.g.
        training examples drawn by a generator of ``seed``), drawing from no global RNG. An RL
        adapter scores on a fixed buffer of observations (and returns) of rollouts it documents.
        Optional: the default gives none."""
        raise UserError(f"domain '{self.domain}' gives no scoring batches (DomainAdapter.scoring_batches)")

    def scoring_loss(self, batch: Any) -> torch.Tensor:
        """The scalar training loss of :attr:`module` on one of :meth:`scoring_batches`' batches,
        differentiable in the module's parameters; no optimizer step, no state change."""
        raise UserError(f"domain '{self.domain}' gives no scoring loss (DomainAdapter.scoring_loss)")

    def scoring_ones_output(self) -> torch.Tensor:
        """:attr:`module`'s output on one all-ones input (a batch of one; for a token model, all-ones
        input embeddings), differentiable in its parameters: SynFlow's data-free objective sums it."""
        raise UserError(f"domain '{self.domain}' gives no all-ones forward (DomainAdapter.scoring_ones_output)")

    # -- outputs ------------------------------------------------------------------------------
    def notes(self) -> dict[str, Any]:
        """Facts about how the last ``build`` made the model that a reader of its results must know
        (JSON values), e.g. a pretrained model's freshly initialised head. The core records them
        in each unit's ``metrics.json`` under ``notes`` and shows each one's ``message`` once when a
        run starts. Default: none."""
        return {}

    def provenance(self) -> dict[str, Any]:
        """What ran, for the report header (``provenance.json``, JSON values), after ``build``:
        ``model_class`` (the algorithm or model class) and ``hyperparameters`` (what it was really
        built with). Default: the class of :attr:`module` and the domain section with its defaults."""
        cls = type(self.module)
        return {"model_class": f"{cls.__module__}.{cls.__qualname__}",
                "hyperparameters": self.section.model_dump(mode="json")}

    def export(self, level_dir: Path) -> None:
        """Write a domain-native copy of the trained ticket into ``level_dir`` (optional)."""

    def close(self) -> None:
        """Release environments, files, processes."""
