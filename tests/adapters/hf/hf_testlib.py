"""Helpers of the HF adapter tests: tiny adapters (a few hundred examples, one-layer models) and a
fake TrainHooks."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")

from multiticket.adapters.hf import HFAdapter, NLPSection  # noqa: E402
from multiticket.core.enforce import MaskEnforcer  # noqa: E402
from multiticket.core.mask import Mask  # noqa: E402

TINY: dict[str, dict[str, Any]] = {
    "bert": dict(
        task="classification", dataset="rotten_tomatoes", model="bert",
        model_args=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
    ),
    "gpt2": dict(task="causal_lm", dataset="austen", model="gpt2", model_args=dict(n_embd=32, n_layer=1, n_head=2)),
    "lstm": dict(
        task="causal_lm", dataset="austen", model="lstm",
        model_args=dict(embedding_size=32, hidden_size=32, num_layers=2),
    ),
    "marian": dict(
        task="translation", dataset="bible_en_es", model="marian", generation_max_length=8,
        model_args=dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=64, decoder_ffn_dim=64),
    ),
}  # fmt: skip
#: devices the device-aware tests run on: CUDA too where this machine has it
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
COMMON = dict(
    max_train_examples=160, max_eval_examples=16, max_length=24, vocab_size=300, batch_size=8, logging_steps=4
)


def fake_task(biases: bool = False) -> Any:
    return types.SimpleNamespace(prune=types.SimpleNamespace(biases=biases))


def make_adapter(workdir: Path, kind: str = "bert", device: str = "cpu", **overrides: Any) -> HFAdapter:
    section = NLPSection(**{**TINY[kind], **COMMON, **overrides})
    return HFAdapter(fake_task(), section, workdir, device)


def pruned_are_zero(module: torch.nn.Module, mask: Mask) -> bool:
    """Whether every pruned entry of ``module`` is exactly zero."""
    params = dict(module.named_parameters())
    return all(bool((params[n].detach()[~m.to(params[n].device)] == 0).all()) for n, m in mask.items())


def random_mask(adapter: HFAdapter, keep: float = 0.2, seed: int = 0) -> Mask:
    params = dict(adapter.module.named_parameters())
    gen = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(params[n].shape, generator=gen) < keep for n in adapter.default_prunable()})


class FakeHooks:
    """Records what the adapter reports; attaches an enforcer like the core does."""

    def __init__(self, enforcer: MaskEnforcer | None = None, on_first: Any = None) -> None:
        self.enforcer = enforcer
        self.on_first = on_first
        self.optimizers: list[torch.optim.Optimizer] = []
        self.steps: list[int] = []
        self.logs: list[dict[str, float]] = []
        self.lrs: list[float] = []

    def on_resumable(self, step: int) -> None:
        pass

    def on_optimizers(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)
        if self.on_first is not None:
            self.on_first(optimizers)
        if self.enforcer is not None:
            for opt in optimizers:
                self.enforcer.add_optimizer(opt)

    def on_step(self, step: int, logs: dict[str, float] | None = None) -> None:
        self.steps.append(step)
        self.lrs.append(self.optimizers[0].param_groups[0]["lr"])
        if logs:
            self.logs.append(logs)
