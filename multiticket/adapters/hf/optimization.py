"""The optimizer and LR schedule the HF adapter hands to each ``Trainer`` (``optimizers=``).

Built outside the Trainer so that a level starting at the rewind step k continues the dense run's
schedule exactly: the scheduler is built for the run's total steps and advanced k steps first.
The optimizer follows the Trainer's own rules (no weight decay on biases and LayerNorm, the fused
AdamW kernel where torch has one), so a unit trains as the Trainer would have trained it.
"""

from __future__ import annotations

import warnings
from typing import cast

import torch
from transformers import PreTrainedModel, Trainer, get_scheduler

from multiticket.adapters.hf.section import NLPSection


def fused_kernel_for(device: str) -> bool:
    """Does torch have fused optimizer kernels for ``device`` ('cpu', 'cuda:0', ...)? The Trainer
    picks ``adamw_torch_fused`` by default; without it AdamW's per-parameter loop costs ~10 % of a
    small model's CPU step."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return torch.device(device).type in _get_fused_kernels_supported_devices()


def make_optimizer(model: PreTrainedModel, section: NLPSection, device: str) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay, none on biases/LayerNorm, as the Trainer does) or SGD,
    built before the Trainer that receives it (``optimizers=``). The Trainer's own rule picks
    the decayed parameters; it reads nothing of a Trainer instance, so none is needed yet."""
    s = section
    decay = set(Trainer.get_decay_parameter_names(cast(Trainer, None), model))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if n in decay], "weight_decay": s.weight_decay},
        {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.learning_rate, momentum=s.momentum)
    return torch.optim.AdamW(groups, lr=s.learning_rate, fused=s.adamw_fused and fused_kernel_for(device))


def make_scheduler(
    optimizer: torch.optim.Optimizer, section: NLPSection, start: int, total: int, constant_lr: float | None = None
) -> torch.optim.lr_scheduler.LRScheduler:
    """The dense run's schedule over ``total`` steps, advanced to ``start``; with ``constant_lr``,
    a constant schedule at that rate (fine-tuning)."""
    s = section
    if constant_lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = constant_lr
        return get_scheduler("constant", optimizer)
    sched = get_scheduler(s.lr_scheduler, optimizer, num_warmup_steps=s.warmup_steps, num_training_steps=total)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(start):
            sched.step()
    return sched
