"""Synthetic run directories written through :class:`RunStore`, for analysis tests that need a
domain (rl, nlp) or a shape (missing units) without training anything."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from multiticket.core.mask import Mask
from multiticket.core.store import RunStore, Unit

NLP_LAYERS = {
    "bert.embeddings.word_embeddings.weight": (50, 16),
    "bert.encoder.layer.0.attention.self.query.weight": (16, 16),
    "bert.encoder.layer.0.attention.self.key.weight": (16, 16),
    "bert.encoder.layer.0.attention.output.dense.weight": (16, 16),
    "bert.encoder.layer.0.intermediate.dense.weight": (32, 16),
    "bert.encoder.layer.0.output.dense.weight": (16, 32),
    "bert.pooler.dense.weight": (16, 16),
    "classifier.weight": (2, 16),
}
RL_LAYERS = {
    "mlp_extractor.policy_net.0.weight": (8, 4),
    "mlp_extractor.policy_net.2.weight": (8, 8),
    "mlp_extractor.value_net.0.weight": (8, 4),
    "action_net.weight": (2, 8),
    "value_net.weight": (1, 8),
}


def _mask(shapes: dict[str, tuple[int, int]], remaining: float, gen: torch.Generator, dead_col: int | None) -> Mask:
    out = {}
    for name, shape in shapes.items():
        m = torch.rand(shape, generator=gen) < remaining
        if dead_col is not None and name.endswith(".0.weight"):  # both input layers (actor, critic)
            m[:, dead_col] = False
        out[name] = m
    return Mask(out)


def make_run(
    out: Path,
    domain: str = "nlp",
    seeds: tuple[int, ...] = (0, 1),
    levels: int = 3,
    controls: tuple[str, ...] = ("random_reinit", "random_mask"),
    skip: tuple[tuple[int, str, int], ...] = (),
    values: Callable[[int, str, int], dict[str, float]] | None = None,
    report: dict[str, Any] | None = None,
    roles: dict[str, str] | None = None,
    extra: Callable[[int, str, int], dict[str, Any]] | None = None,
) -> Path:
    """A finished (except ``skip``: (seed, control, level) units) run of ``domain``.

    NLP: perplexity (lower is better) that grows with sparsity, controls worse than the ticket.
    RL: mean return (higher is better); observation dimension 2 is cut off from level 2 on.
    ``values(seed, control, level)``: the unit's metrics instead (its first key is the primary
    metric, higher is better); ``report``: the task's ``report`` section; ``roles``: a ``role`` to
    record in the units of these controls (as a run made with a plugin control records it);
    ``extra(seed, control, level)``: more fields of a unit's record (``eval_seeds``, ...).
    """
    nlp = domain == "nlp"
    name = f"synthetic-{domain}"
    root = out / f"{name}-0000beef"
    config = {"name": name, "domain": domain, "seeds": list(seeds), "train": {"steps": 100},
              "prune": {"levels": levels, "rate": 0.2}, "controls": list(controls), "report": {"tolerance": 0.02, **(report or {})},
              domain: {}}
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    store = RunStore(root)
    shapes = NLP_LAYERS if nlp else RL_LAYERS
    metric = "perplexity" if nlp else "mean_return"
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        for control in ("ticket", *controls):
            for level in range(0 if control == "ticket" else 1, levels + 1):
                if (seed, control, level) in skip:
                    continue
                remaining = 0.8**level
                mask = _mask(shapes, remaining, gen, None if nlp or level < 2 else 2)
                penalty = 0.0 if control == "ticket" else 0.05 * level
                if nlp:
                    value = 20.0 * (1 + 0.02 * level**2 + penalty) + seed * 0.3
                else:
                    value = 400.0 * (1 - 0.01 * level - penalty) - seed * 3.0
                record = {"task": name, "domain": domain, "seed": seed, "control": control, "level": level,
                          "sparsity": mask.sparsity, "metric": metric, "higher_is_better": not nlp,
                          "metrics": {metric: value, "loss": value / 100}}
                if roles and control in roles:
                    record["role"] = roles[control]
                if extra is not None:
                    record.update(extra(seed, control, level))
                if values is not None:
                    given = values(seed, control, level)
                    record.update(metric=next(iter(given)), higher_is_better=True, metrics=given)
                d = store.unit_dir(Unit(seed, control, level))
                store.begin(d)
                store.write_file(d, "mask.safetensors", mask.save)
                store.write_file(d, "metrics.json", lambda p, r=record: p.write_text(json.dumps(r)))
                store.finish(d, ["mask.safetensors", "metrics.json"])
    return root
