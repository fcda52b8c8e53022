"""Tickets in one's own Stable-Baselines3 scripts: ``model.learn(..., callback=TicketCallback(ticket))``.

``ticket`` is ``multiticket.load_run(path).ticket(seed=..., level=...)`` (its mask and the weights
its unit started from, the rewind point θ_k), or a plain mask (parameter name of ``model.policy``
-> bool tensor) with optional ``start`` weights. At training start the callback loads the start
weights into ``model.policy``, and it keeps every pruned entry exactly 0 through every optimizer
step, target networks included (DQN, SAC, TD3). ``multiticket run`` trains its own RL units
through this same callback. See docs/usage.md, "Tickets in your own scripts".
"""

from __future__ import annotations

try:
    from multiticket.adapters.sb3_callback import TicketCallback
except ModuleNotFoundError as exc:  # the rl extra is not installed
    raise ModuleNotFoundError(f"multiticket.sb3 needs '{exc.name}': pip install 'multiticket[rl]'",
                              name=exc.name) from exc

__all__ = ["TicketCallback"]
