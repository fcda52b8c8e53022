"""``TicketCallback``: a ticket trained by SB3's own ``model.learn(callback=...)``.

At training start it loads the ticket's start weights into ``model.policy`` (the module the run
pruned, so the mask's names are the policy's), attaches the mask to the policy and to every
optimizer of the algorithm, and makes each target network (DQN ``q_net_target``, SAC
``critic_target``, TD3 ``actor_target`` and ``critic_target``) a copy of its masked online
network with its pruned entries zeroed; Polyak updates then mix zeros with zeros. The mechanism is
:class:`multiticket.core.ticket_binding.TicketBinding`, the one the SB3 adapter trains its own
units through (it hands this callback a binding around the core's enforcer).
Public as ``multiticket.sb3.TicketCallback``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from stable_baselines3.common.callbacks import BaseCallback

from multiticket.adapters.sb3_algos import optimizers_of, target_pairs_of
from multiticket.core.ticket_binding import TicketBinding, TicketSource, ticket_spec


class TicketCallback(BaseCallback):
    """Trains ``ticket`` (``multiticket.load_run(path).ticket(...)``, or a plain mask: parameter name
    of ``model.policy`` -> bool tensor, True = kept) inside ``model.learn``.

    ``start``: start weights (a state dict of ``model.policy``) replacing the ticket's; with a
    plain mask and no ``start`` the policy keeps its own weights. Loaded once, at the first
    ``learn`` that starts from step 0 (not one continuing with ``reset_num_timesteps=False``); a
    later ``learn`` with the same callback continues under the mask. ``strict``:
    re-zero pruned weights after every step of every optimizer (see ``MaskEnforcer``)."""

    def __init__(self, ticket: TicketSource | Mapping[str, torch.Tensor] | TicketBinding,
                 start: Mapping[str, torch.Tensor] | None = None, *, strict: bool = False, verbose: int = 0) -> None:
        super().__init__(verbose=verbose)
        #: a binding made elsewhere is used as it is (the adapter's: around the core's enforcer)
        self.binding = ticket if isinstance(ticket, TicketBinding) else \
            TicketBinding(ticket_spec(ticket, start), strict=strict)

    def _on_training_start(self) -> None:
        model = self.model
        # learn(reset_num_timesteps=False) on a model that has trained: its weights, not the start's
        fresh = model.num_timesteps == 0
        self.binding.begin(model.policy, optimizers_of(model), target_pairs_of(model), fresh=fresh)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.binding.end()
