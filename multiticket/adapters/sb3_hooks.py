"""``HooksCallback``: the SB3 adapter's progress reports to the core, from inside ``model.learn``.

Kept apart from :mod:`multiticket.adapters.sb3` (which composes it with the public
:class:`~multiticket.adapters.sb3_callback.TicketCallback`) because it is the one piece that talks
to the core's :class:`~multiticket.core.adapter.TrainHooks` while SB3 is stepping: the step
number, the losses of the previous update, the training episodes' returns and the resumable points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from stable_baselines3.common.callbacks import BaseCallback

from multiticket.core.adapter import TrainHooks

if TYPE_CHECKING:
    from multiticket.adapters.sb3 import SB3Adapter


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
