"""multiticket: lottery tickets in reinforcement-learning agents and language models."""

__version__ = "0.1.0"
