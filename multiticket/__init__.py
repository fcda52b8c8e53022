"""multiticket: lottery tickets in reinforcement-learning agents and language models."""

__version__ = "0.1.0"

#: the Python API (multiticket/api.py), imported on first use so ``import multiticket`` stays cheap
_API = ("run", "load_run", "Run", "Ticket")


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attributes
    if name in _API:
        from multiticket import api

        return getattr(api, name)
    raise AttributeError(f"module 'multiticket' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["__version__", *_API]
