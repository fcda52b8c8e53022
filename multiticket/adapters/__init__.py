"""Domain adapters: each implements :class:`multiticket.core.adapter.DomainAdapter` for a library
(toy: plain PyTorch; sb3: Stable-Baselines3; hf: Hugging Face transformers). They are registered
by name in :mod:`multiticket.domains` and imported only when a task of their domain runs, so the
core runs without SB3 or transformers installed. Adapters import the core, never the reverse."""
