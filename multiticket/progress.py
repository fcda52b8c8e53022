"""Rich progress for ``multiticket run``: one bar for the unit in training, one line per unit done."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from multiticket.analysis.stats import fmt
from multiticket.core.store import Unit


class RichReporter:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task: Any = None
        self._start = 0

    def __enter__(self) -> RichReporter:
        self.progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)

    def unit_started(self, unit: Unit, start: int, stop: int) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
        self._start = start
        self._task = self.progress.add_task(
            escape(f"seed {unit.seed} · {unit.control} · level {unit.level}"), total=stop - start
        )

    def step(self, step: int) -> None:
        if self._task is not None:
            self.progress.update(self._task, completed=step - self._start)

    def unit_finished(self, unit: Unit, record: dict[str, Any] | None, skipped: bool) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
            self._task = None
        if record is None:
            return
        metric = record["metric"]
        value = record["metrics"][metric]
        seconds = record.get("train_seconds")
        tag = "[dim]done before[/dim]" if skipped or seconds is None else f"{seconds:.1f}s"
        self.console.print(
            f"seed {unit.seed} · {escape(f'{unit.control:<18}')} level {unit.level:>2}  sparsity "
            f"{100 * record['sparsity']:5.1f}%  {escape(metric)} {fmt(value)}  ({tag})",
            highlight=False,
        )

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)  # one line, as with --quiet
