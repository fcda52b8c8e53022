"""``domain: torch``: lottery tickets of a plain PyTorch model from a user module of four functions.

The user writes no adapter class. The ``torch:`` section names a module (``module: mypkg.task``,
imported from ``module_dir``, by default the task file's folder) that provides::

    build_model(seed: int, args: dict) -> torch.nn.Module
    batches(seed: int, start: int, args: dict) -> Iterable[batch]   # the batch of step start, start+1, ...
    loss(model: torch.nn.Module, batch) -> torch.Tensor              # a scalar
    evaluate(model: torch.nn.Module, args: dict) -> dict[str, float]
    prunable(model: torch.nn.Module) -> list[str]                    # optional
    baselines(args: dict) -> dict[str, float]                        # optional, e.g. {"majority_rate": 0.6}
    ones_input(args: dict) -> torch.Tensor                           # optional: SynFlow's all-ones input

Criteria that score on data (``snip``, ``grasp``) take the first batches of ``batches(seed, 0, args)``
and ``loss``; ``synflow`` feeds one all-ones input: ``ones_input(args)`` when the module defines it,
else ones shaped like one example of the first batch (the batch itself when it is a tensor, its first
element when it is a tuple or list).

``args`` is the section's ``args`` mapping. The adapter owns the loop: the optimizer and the LR
schedule come from the section, the batches are moved to the device, the mask enforcer and every
other core feature ride on :class:`~multiticket.core.adapter.TrainHooks`. Two contracts make
rewinding and resuming exact: ``batches(seed, start, args)`` must yield the same batches from
``start`` on whether or not training began at 0 (draw orders from a generator seeded by
``(seed, epoch)``, never from the global RNG), and ``build_model`` draws the initial weights only
from the global torch RNG, which the adapter seeds with the init seed (or from ``seed`` itself).
The toy adapter shares this module's loop, optimizers and schedules.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import nn

from multiticket.adapters.user_code import imported_from, recorded_module_dir, search_folder, task_folder
from multiticket.core.adapter import DomainAdapter, TrainHooks
from multiticket.core.scope import weights_of_types
from multiticket.errors import UserError
from multiticket.schema import NotHashed, Strict

#: the user module's functions (the optional ``prunable`` aside)
REQUIRED = ("build_model", "batches", "loss", "evaluate")
#: layers whose weights are pruned when the module defines no ``prunable``
PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
OptimizerName = Literal["sgd", "adam", "adamw", "rmsprop"]
ScheduleName = Literal["constant", "cosine", "linear"]


def make_optimizer(
    name: str, params: list[nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """One parameter group; ``momentum`` applies to SGD and RMSprop."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def lr_factor(schedule: str, step: int, total: int) -> float:
    """LR multiplier at ``step`` of ``total``: a pure function, so it replays from any step."""
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / total))
    if schedule == "linear":
        return 1.0 - step / total
    return 1.0


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[Any],
    loss_of: Callable[[Any], torch.Tensor],
    steps: range,
    lr_at: Callable[[int], float],
    hooks: TrainHooks,
    log_every: int = 50,
) -> None:
    """The plain loop: per step set the LR, take the next batch, backward, step, report. The LR and
    the batch are functions of the step, so every step end is resumable."""
    hooks.on_optimizers([optimizer])
    model.train()
    for step in steps:
        lr = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_of(next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        hooks.on_step(step + 1, {"loss": loss.item()} if (step + 1) % log_every == 0 else None)
        if getattr(hooks, "should_stop", False):
            break
        hooks.on_resumable(step + 1)


class TorchSection(Strict):
    """Validated ``torch:`` section."""

    module: str = Field(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$", description="dotted name of the user module")
    module_dir: NotHashed[str | None] = Field(
        None,
        validate_default=True,
        description="folder searched first for the module; default: the task file's folder. Recorded as an "
        "absolute path in config.yaml and not hashed, so a moved project keeps its run names",
    )
    args: dict[str, Any] = Field(default_factory=dict, description="passed to the module's functions as `args`")
    metric: str = Field("accuracy", description="the primary metric among those `evaluate` returns")
    higher_is_better: bool = True
    optimizer: OptimizerName = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd and rmsprop")
    weight_decay: float = Field(0.0, ge=0)
    schedule: ScheduleName = "constant"
    log_every: int = Field(50, gt=0, description="how often the loss reaches the core (NaN checks, learning curve)")
    eval_every: NotHashed[int | None] = Field(
        None, gt=0, description="steps between calls of the module's evaluate recorded in the learning curve"
    )

    def user_modules(self) -> list[str]:
        """The user's module this section imports: the torch domain always runs user code."""
        return [self.module]

    @field_validator("module_dir")
    @classmethod
    def _absolute(cls, v: str | None, info: ValidationInfo) -> str | None:
        """Relative to the task file's folder; in a run directory's ``config.yaml`` (context
        ``run_dir``) only an absolute folder outside that run directory, so reading someone
        else's run directory never imports code it carries."""
        context = info.context or {}
        run_dir = context.get("run_dir")
        if run_dir is not None:
            return recorded_module_dir(v, Path(run_dir))
        folder = task_folder(v, context.get("task_dir"))
        module = info.data.get("module")
        if context.get("user_code") and isinstance(module, str):  # a task being loaded to run, not a bare model
            return imported_from(module, folder) or folder
        return folder


def import_user_module(section: TorchSection) -> ModuleType:
    """Import the module named by ``torch.module`` (its folder first on ``sys.path``) and check
    that it has the functions; every failure is one line naming the field."""
    if section.module_dir is not None:
        if not Path(section.module_dir).is_dir():
            raise UserError(f"torch.module_dir: no such folder '{section.module_dir}'")
        search_folder(section.module_dir, [section.module])
    try:
        module = importlib.import_module(section.module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not section.module.startswith(exc.name):
            raise UserError(f"torch.module: importing '{section.module}' failed: {exc}") from exc
        where = f" in {section.module_dir} or on sys.path" if section.module_dir else " on sys.path"
        raise UserError(f"torch.module: no module '{section.module}'{where}") from exc
    except Exception as exc:  # the user's code: its error in one line
        raise UserError(f"torch.module: importing '{section.module}' failed: {type(exc).__name__}: {exc}") from exc
    missing = [f for f in REQUIRED if not callable(getattr(module, f, None))]
    if missing:
        raise UserError(
            f"torch.module: '{section.module}' has no function {', '.join(missing)} (it needs {', '.join(REQUIRED)})"
        )
    return module


def to_device(batch: Any, device: str) -> Any:
    """Tensors anywhere in nested tuples, lists and dicts moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class TorchAdapter(DomainAdapter):
    """Drives the user module's functions (see the module docstring)."""

    domain: ClassVar[str] = "torch"
    Section: ClassVar[type[TorchSection]] = TorchSection
    grad_masking = "step"  # the loop reads no gradient between backward() and step()
    curve_logs: ClassVar[tuple[str, ...]] = ("loss",)
    step_unit: ClassVar[str] = "optimizer steps"
    eval_every_key: ClassVar[str | None] = "torch.eval_every"

    def __init__(self, task: Any, section: TorchSection, workdir: Path, device: str = "cpu") -> None:
        super().__init__(task, section, workdir, device)
        self.section: TorchSection = section
        self.user = import_user_module(section)
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.seed = 0
        self.constant_lr: float | None = None

    @property
    def metric(self) -> str:
        return self.section.metric

    @property
    def higher_is_better(self) -> bool:
        return self.section.higher_is_better

    def _call(self, name: str, *args: Any) -> Any:
        return getattr(self.user, name)(*args)

    def build(self, seed: int, init_seed: int | None = None) -> None:
        s = self.section
        self.seed = seed
        init = seed if init_seed is None else init_seed
        torch.manual_seed(init)
        model = self._call("build_model", init, s.args)
        if not isinstance(model, nn.Module):
            raise UserError(
                f"torch.module: {s.module}.build_model returned a {type(model).__name__}, not a torch.nn.Module"
            )
        self.model = model.to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(s.optimizer, params, s.lr, s.momentum, s.weight_decay)
        torch.manual_seed(seed)  # dropout etc. follow the run seed, not the init seed

    @property
    def module(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("build() first")
        return self.model

    def default_prunable(self) -> list[str]:
        if callable(getattr(self.user, "prunable", None)):
            return list(self.user.prunable(self.module))
        return weights_of_types(self.module, PRUNABLE_TYPES)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer] if self.optimizer is not None else []

    def set_constant_lr(self, lr: float | None) -> None:
        self.constant_lr = lr

    def _lr(self, step: int, total: int) -> float:
        if self.constant_lr is not None:
            return self.constant_lr
        return self.section.lr * lr_factor(self.section.schedule, step, total)

    def _batches(self, start: int, stop: int) -> Iterator[Any]:
        """The user's batches from ``start`` on, on the device; running out before ``stop`` is an error."""
        s = self.section
        source: Iterable[Any] = self._call("batches", self.seed, start, s.args)
        it = iter(source)
        for step in range(start, stop):
            try:
                yield to_device(next(it), self.device)
            except StopIteration:
                raise UserError(
                    f"torch.module: {s.module}.batches(seed, {start}, args) ended at step {step}; it must yield "
                    f"one batch per step up to train.steps ({stop}): loop over epochs"
                ) from None

    def train(self, start: int, stop: int, hooks: TrainHooks) -> None:
        if stop <= start:
            return
        model = self.module
        assert self.optimizer is not None
        train_steps(
            model, self.optimizer, self._batches(start, stop), lambda b: self._call("loss", model, b),
            range(start, stop), lambda step: self._lr(step, stop), hooks, self.section.log_every,
        )  # fmt: skip

    def scoring_batches(self, seed: int, n: int) -> list[Any]:
        """The first ``n`` batches of ``batches(seed, 0, args)``: deterministic by the module's contract."""
        it = iter(self._call("batches", seed, 0, self.section.args))
        out = []
        for _ in range(n):
            try:
                out.append(to_device(next(it), self.device))
            except StopIteration:
                break
        if not out:
            raise UserError(f"torch.module: {self.section.module}.batches(seed, 0, args) yielded no batch to score on")
        return out

    def scoring_loss(self, batch: Any) -> torch.Tensor:
        """The user's ``loss(model, batch)`` on one scoring batch."""
        loss: torch.Tensor = self._call("loss", self.module, batch)
        return loss

    def scoring_ones_output(self) -> torch.Tensor:
        """The model's output on one all-ones input (see the module docstring for its shape)."""
        s = self.section
        if callable(getattr(self.user, "ones_input", None)):
            example = self._call("ones_input", s.args)
        else:
            batch = self.scoring_batches(self.seed, 1)[0]
            example = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
            if not isinstance(example, torch.Tensor):
                raise UserError(f"torch.module: {s.module}: define ones_input(args) for synflow (the batches are "
                                f"{type(batch).__name__}, not tensors or tuples of tensors)")
            example = example[:1]
        output: torch.Tensor = self.module(torch.ones_like(torch.as_tensor(example), dtype=torch.float32).to(self.device))
        return output

    def baselines(self) -> dict[str, float]:
        """What the user module's optional ``baselines(args)`` returns (the keys of
        :meth:`DomainAdapter.baselines`, e.g. ``majority_rate`` for a classifier); none without it."""
        if not hasattr(self.user, "baselines"):
            return {}
        result = self._call("baselines", self.section.args)
        if not isinstance(result, dict) or not all(isinstance(v, int | float) and math.isfinite(v) for v in result.values()):
            raise UserError(f"torch.module: {self.section.module}.baselines must return a dict of finite numbers")
        return {str(k): float(v) for k, v in result.items()}

    def header_facts(self) -> dict[str, str]:
        """The module that ran (and its file), and where the run's trivial baselines came from: a
        module without ``baselines(args)`` leaves the report's majority and trivial-metric checks
        "not measured", and the header says how to measure them (docs/torch.md, "Baselines")."""
        name = self.section.module
        where = getattr(self.user, "__file__", None)
        facts = {"module": f"{name} ({str(where)[-500:]})" if where else name}
        if callable(getattr(self.user, "baselines", None)):
            facts["baselines"] = f"{name}.baselines(args)"
        else:
            facts["baselines"] = (f"none measured: {name} defines no baselines(args), so the degenerate checks that need "
                                  "one (majority-class rate, trivial_<metric>) read 'not measured'; return e.g. "
                                  "{'majority_rate': ...} from it (docs/torch.md, Baselines)")
        return facts

    def export_model(self, path: Path, mask: Mapping[str, torch.Tensor], compact: bool,
                     unit_dir: Path | None = None) -> dict[str, Any]:
        """``multiticket export``: a folder of safetensors and JSON that plain torch loads with the
        user's ``build_model``; ``compact``: the dead neurons of hidden Linear layers and dead channels of Conv layers removed
        wherever that is exact (:mod:`.torch_export`, :mod:`.channel_removal`)."""
        from multiticket.adapters.torch_export import export_folder

        return export_folder(self, Path(path), mask, compact)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        s = self.section
        self.module.eval()
        result = self._call("evaluate", self.module, s.args)
        if not isinstance(result, dict) or s.metric not in result:
            got = ", ".join(map(str, result)) if isinstance(result, dict) else type(result).__name__
            raise UserError(f"torch.metric: '{s.metric}' is not among what {s.module}.evaluate returned ({got})")
        return {str(k): float(v) for k, v in result.items()}
