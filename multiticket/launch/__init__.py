"""Where units run: in this process, a local process pool, a Ray cluster or Slurm (docs/scale.md)."""

from multiticket.launch.backends import LaunchOptions
from multiticket.launch.driver import run_tasks

__all__ = ["LaunchOptions", "run_tasks"]
