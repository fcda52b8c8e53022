"""The domain-agnostic core of a ticket search: the adapter contract (:mod:`.adapter`), masks,
pruning criteria and the counting rule, the level loop, rewind points, the run store, and the
registries through which domains, criteria and controls are added (:mod:`.registry`).

The core imports torch, numpy and nothing of multiticket but :mod:`multiticket.errors` and
:mod:`multiticket.paths`; adapters, the config, analysis and launch build on it (the layers are
import-linter contracts in ``pyproject.toml``; docs/architecture.md draws them).
"""
