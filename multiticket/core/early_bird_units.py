"""The early-bird side of the level loop (README, *Retraining modes and early-bird tickets*): the
``early_bird`` chain, IMP whose every mask is drawn as soon as it stabilises. A mixin of
:class:`multiticket.core.imp.IMPRunner`, whose state and helpers it uses; the detection itself is
:mod:`multiticket.core.early_bird`.
"""

from __future__ import annotations

import json
from typing import Any

from safetensors.torch import load_file

from multiticket.core.early_bird import EarlyBirdMonitor, EarlyBirdSettings
from multiticket.core.mask import Mask
from multiticket.core.prune import prune
from multiticket.core.rewind import copy_state_dict
from multiticket.core.seeding import generator
from multiticket.core.store import Unit


class EarlyBirdUnits:
    """Early-bird chain units of an IMP run (mixed into ``IMPRunner``)."""

    cfg: Any
    spec: Any
    store: Any
    adapter: Any
    k: int
    T: int

    def _early_bird(self, seed: int, level: int) -> None:
        """One level of the ``early_bird`` chain: IMP whose every mask is drawn as soon as it has
        stabilised (You et al. 2020) instead of after full training.

        Level 1 first runs the dense search: train from step 0 under the dense mask and *stop*
        once the level-1 mask has stabilised (never before k: level 1 rewinds to the run's
        rewind point). Every level L then prunes the weights its previous search stopped at,
        rewinds to k (or starts as ``rewind.mode`` says) and trains to T under the monitor of mask
        L+1: the weights at the step that mask stabilised are kept (``early_bird.safetensors``)
        for level L+1, and training goes on to T so this level's metric is the early-bird ticket's,
        trained exactly as the IMP ticket at the same sparsity. Stopping at that step instead and
        retraining from k would give the same masks and metrics (the run k -> e is a prefix of
        the run k -> T), so the compute accounting counts only the steps the search needed:
        ``search_steps`` = e_0 + sum over earlier levels of (e_i - k), against IMP's T + (L-1)(T-k)."""
        unit = Unit(seed, "early_bird", level)
        eb = self.cfg.early_bird_settings()
        settings = EarlyBirdSettings(self.cfg.early_bird_interval(), eb.window, eb.threshold)
        rewind = self._rewind(seed, self.k)
        info: dict[str, Any] = {"interval": settings.interval, "window": settings.window,
                                "threshold": settings.threshold}
        if level == 1:
            dense = self.dense_mask()
            # checks before k have no rewind point yet: only k = 0 gives init criteria one
            search = EarlyBirdMonitor(dense, self.spec, settings, start=0, min_stop=self.k, stop=True,
                                      init=rewind.weights if self.k == 0 else None)
            rec = self._train_unit(unit, dense, start=None, init_seed=None, monitor=search)["__record__"]
            prev_mask = dense
            source = search.snapshot if search.snapshot is not None else copy_state_dict(self.adapter.module)
            searched = search.fired_at if search.fired_at is not None else self.T
            info.update(dense_stopped_at=search.fired_at, dense_distance=search.distance,
                        dense_trace=search.trace, dense_metrics=rec["metrics"], dense_train_seconds=rec["train_seconds"])
        else:
            prev = Unit(seed, "early_bird", level - 1)
            d = self.store.unit_dir(prev)
            with self._phase("load_inputs"):
                prev_mask = Mask.load(d / "mask.safetensors")
                source = load_file(str(d / "early_bird.safetensors"))
                prev_info = json.loads((d / "metrics.json").read_text())["early_bird"]
            searched = int(prev_info["search_steps_next"])
        with self._phase("prune"):
            mask = prune(source, prev_mask, self.spec, generator(seed, "early_bird", "prune", level), rewind.weights)
        self._check_planned(mask, level, unit)
        monitor = EarlyBirdMonitor(mask, self.spec, settings, start=rewind.step, stop=False, init=rewind.weights)
        record = self._retrain(unit, mask, rewind, source, monitor=monitor)["__record__"]
        stop = monitor.fired_at if monitor.fired_at is not None else self.T
        imp = self.T + (level - 1) * (self.T - self.k)
        info.update(
            stopped_at=monitor.fired_at, distance=monitor.distance, trace=monitor.trace,
            search_steps=searched, imp_search_steps=imp, compute_fraction=round(searched / imp, 6),
            steps_saved=imp - searched, search_steps_next=searched + stop - self.k,
        )
        record["early_bird"] = info
        snapshot = monitor.snapshot if monitor.snapshot is not None else copy_state_dict(self.adapter.module)
        self._write_unit(unit, mask, record, extra={"early_bird.safetensors": snapshot})
