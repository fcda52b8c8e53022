"""A plain-PyTorch adapter: an MLP classifier on a dataset generated deterministically in code.

It runs the whole core end to end with no SB3 or HF installed, and it is the reference for
writing a new adapter: build the model and optimizer from seeds, report optimizers and steps
through the hooks, make the data order a function of (seed, step) so a level restarted at step k
sees exactly the batches the dense run saw from k on, and make the LR schedule a function of the
step so it is replayed from k.

Data: inputs ~ N(0, I); labels are the argmax of a fixed random two-layer "teacher" network
(seeded by ``data_seed``), so the task is learnable, nonlinear, and identical on every machine.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from multiticket.adapters import torch as torch_domain
from multiticket.adapters.torch import lr_factor, train_steps
from multiticket.core.adapter import GIB, DomainAdapter, TrainHooks
from multiticket.core.scope import weights_of_types
from multiticket.core.seeding import derive_seed
from multiticket.schema import AlwaysHashed, NotHashed, Strict


class ToySection(Strict):
    n_features: AlwaysHashed[int] = Field(32, gt=0)
    n_classes: AlwaysHashed[int] = Field(4, ge=2)
    n_train: AlwaysHashed[int] = Field(4096, gt=0)
    n_test: AlwaysHashed[int] = Field(2048, gt=0)
    teacher_hidden: AlwaysHashed[int] = Field(64, gt=0)
    data_seed: AlwaysHashed[int] = 1234
    hidden: AlwaysHashed[list[Annotated[int, Field(gt=0)]]] = Field(default_factory=lambda: [128, 64])
    batch_size: AlwaysHashed[int] = Field(64, gt=0)
    optimizer: AlwaysHashed[Literal["sgd", "adam", "adamw", "rmsprop"]] = "sgd"
    lr: AlwaysHashed[float] = Field(0.05, gt=0)
    momentum: AlwaysHashed[float] = Field(0.9, ge=0, lt=1)
    weight_decay: AlwaysHashed[float] = Field(0.0, ge=0)
    schedule: AlwaysHashed[Literal["constant", "cosine", "linear"]] = "constant"
    eval_every: NotHashed[int | None] = Field(None, gt=0, description="steps between test evaluations in the "
                                              "learning curve")

    @model_validator(mode="after")
    def _batch_fits(self) -> ToySection:
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size ({self.batch_size}) exceeds n_train ({self.n_train})")
        return self


def make_dataset(cfg: ToySection) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test), a pure function of the section's data keys."""
    g = torch.Generator().manual_seed(cfg.data_seed)
    w1 = torch.randn(cfg.n_features, cfg.teacher_hidden, generator=g) / math.sqrt(cfg.n_features)
    w2 = torch.randn(cfg.teacher_hidden, cfg.n_classes, generator=g) / math.sqrt(cfg.teacher_hidden)
    x = torch.randn(cfg.n_train + cfg.n_test, cfg.n_features, generator=g)
    y = (torch.tanh(x @ w1 * 2.0) @ w2).argmax(dim=1)
    return x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train :], y[cfg.n_train :]


def make_mlp(n_in: int, hidden: list[int], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.ReLU()]
        n_in = h
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def make_optimizer(cfg: ToySection, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch_domain.make_optimizer(cfg.optimizer, params, cfg.lr, cfg.momentum, cfg.weight_decay)


class ToyAdapter(DomainAdapter):
    """Trains :func:`make_mlp` on :func:`make_dataset` with minibatch SGD/Adam/AdamW/RMSprop."""

    domain = "toy"
    Section = ToySection
    section: ToySection
    grad_masking = "step"  # train() reads no gradient between backward() and step()
    curve_logs = ("loss",)
    step_unit = "optimizer steps"
    eval_every_key = "toy.eval_every"
    worker_base_bytes = int(0.4 * GIB)  # Python and torch; the data is a few MB

    def __init__(self, task, section, workdir, device="cpu") -> None:  # noqa: ANN001 - see base
        super().__init__(task, section, workdir, device)
        x, y, xt, yt = make_dataset(self.section)
        self.x, self.y = x.to(device), y.to(device)
        self.x_test, self.y_test = xt.to(device), yt.to(device)
        self.model: nn.Sequential | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.seed = 0
        self.constant_lr: float | None = None

    @property
    def metric(self) -> str:
        return "accuracy"

    @property
    def higher_is_better(self) -> bool:
        return True

    def build(self, seed: int, init_seed: int | None = None) -> None:
        self.seed = seed
        if self.device == "cpu":
            torch.set_num_threads(1)  # small MLP: one thread is as fast, and leaves cores to other jobs
        torch.manual_seed(seed if init_seed is None else init_seed)
        cfg = self.section
        self.model = make_mlp(cfg.n_features, cfg.hidden, cfg.n_classes).to(self.device)
        self.optimizer = make_optimizer(cfg, list(self.model.parameters()))
        torch.manual_seed(seed)

    @property
    def module(self) -> nn.Module:
        assert self.model is not None, "build() first"
        return self.model

    def default_prunable(self) -> list[str]:
        return weights_of_types(self.module, (nn.Linear,))

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer] if self.optimizer is not None else []

    def set_constant_lr(self, lr: float | None) -> None:
        self.constant_lr = lr

    def batch_indices(self, step: int) -> torch.Tensor:
        """Indices of the minibatch of ``step``: epoch permutations seeded by (seed, epoch)."""
        n, b = self.x.shape[0], self.section.batch_size
        per_epoch = max(1, n // b)
        epoch, pos = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(derive_seed(self.seed, "toy-epoch", epoch))
        perm = torch.randperm(n, generator=g)
        return perm[pos * b : (pos + 1) * b].to(self.x.device)

    def _batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for step in itertools.count(start):
            idx = self.batch_indices(step)
            yield self.x[idx], self.y[idx]

    def train(self, start: int, stop: int, hooks: TrainHooks) -> None:
        """The plain-PyTorch domain's loop (:func:`multiticket.adapters.torch.train_steps`)."""
        model, opt, cfg = self.module, self.optimizers()[0], self.section
        loss_fn = nn.CrossEntropyLoss()

        def lr_at(step: int) -> float:
            return self.constant_lr if self.constant_lr is not None else cfg.lr * lr_factor(cfg.schedule, step, stop)

        train_steps(model, opt, self._batches(start), lambda b: loss_fn(model(b[0]), b[1]), range(start, stop),
                    lr_at, hooks)  # fmt: skip

    # -- scoring for data- and gradient-reading criteria (SNIP, GraSP, SynFlow) ---------------
    def scoring_batches(self, seed: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``n`` training batches of ``batch_size`` examples, drawn without replacement by a
        generator of ``seed`` alone (not the training order's), so every unit of a seed scores on
        the same examples."""
        b = self.section.batch_size
        g = torch.Generator().manual_seed(derive_seed(seed, "toy-scoring"))
        perm = torch.randperm(self.x.shape[0], generator=g).to(self.x.device)
        out = []
        for i in range(n):
            idx = perm[(i * b) % len(perm):][:b]
            out.append((self.x[idx], self.y[idx]))
        return out

    def scoring_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The training loss (cross-entropy) of the current model on one scoring batch."""
        x, y = batch
        return nn.functional.cross_entropy(self.module(x), y)

    def scoring_ones_output(self) -> torch.Tensor:
        """The logits of one all-ones input vector."""
        return self.module(torch.ones(1, self.section.n_features, device=self.x.device))

    def baselines(self) -> dict[str, float]:
        """The majority-class rate of the test set that :meth:`evaluate` scores."""
        counts = torch.bincount(self.y_test.cpu(), minlength=self.section.n_classes)
        return {"majority_rate": float(counts.max()) / len(self.y_test)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        model = self.module
        model.eval()
        logits = model(self.x_test)
        loss = nn.functional.cross_entropy(logits, self.y_test)
        acc = (logits.argmax(1) == self.y_test).float().mean()
        return {"accuracy": float(acc), "loss": float(loss)}
