"""A progress bar while ``--wait`` waits, on a terminal only (stderr: stdout stays for
the result): items processed while a run runs, effects compensated while it reverts."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from runstream.contracts import events as ev
from runstream.domain.run import RunSummary


class WaitProgress:
    """Feed it the run's events (``on_event``); it draws nothing when not on a terminal."""

    def __init__(self, console: Console, summary: RunSummary | None = None) -> None:
        self.enabled = console.is_terminal
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._items: TaskID | None = None
        self._compensated: TaskID | None = None
        self._items_total = summary.items_total if summary else None
        self._items_done = summary.items_processed if summary else 0
        effects = summary.effects if summary else {}
        self._to_compensate = effects.get("applied", 0) - effects.get("compensated", 0)
        self._compensated_done = 0

    def __enter__(self) -> WaitProgress:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.enabled:
            self._progress.stop()

    def on_event(self, event: ev.Event) -> None:
        if not self.enabled:
            return
        match event:
            case ev.RunQueued():
                self._items_total = event.items_total
                self._items_done = 0
                self._show_items()
            case ev.RunStarted() | ev.RunContinued():
                self._show_items()
            case ev.ItemsProcessed():
                self._items_done = event.items_to
                self._show_items()
            case ev.RevertStarted():
                self._show_compensated()
            case ev.EffectsCompensated():
                self._compensated_done += event.compensated + len(event.skipped)
                self._show_compensated()

    def _show_items(self) -> None:
        if self._items is None:
            self._items = self._progress.add_task("items processed", total=self._items_total)
        self._progress.update(self._items, completed=self._items_done, total=self._items_total)

    def _show_compensated(self) -> None:
        if self._compensated is None:
            self._compensated = self._progress.add_task(
                "effects compensated", total=self._to_compensate or None
            )
        self._progress.update(self._compensated, completed=self._compensated_done)
