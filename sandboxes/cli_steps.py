"""Steps of a long command (``warden warm``: minutes on a fresh machine) shown as they run,
and a summary of their times at the end, so the user sees what it is doing and how far
it got. Progress goes to stderr; on a terminal the running step has a spinner, elsewhere
(logs, CI) each step is a line when it starts and when it ends."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.status import Status
from rich.table import Table


@dataclass
class Step:
    name: str
    started: float
    seconds: float | None = None
    note: str | None = None


class Steps:
    """Call :meth:`start` as each step begins (it ends the one before); ``with`` ends the
    last. A plain ``Callable[[str], None]`` for libraries that report their steps."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.done: list[Step] = []
        self._current: Step | None = None
        self._status: Status | None = None
        self._began = time.perf_counter()

    def start(self, name: str) -> None:
        self._end()
        self._current = Step(name, time.perf_counter())
        if self.console.is_terminal:
            self._status = self.console.status(f"{name}…")
            self._status.start()
        else:
            self.console.print(f"… {name}", highlight=False)

    def note(self, text: str) -> None:
        """Something the running step could not do (it ended with a fall-back)."""
        if self._current is not None:
            self._current.note = text

    def _end(self) -> None:
        step, self._current = self._current, None
        if self._status is not None:
            self._status.stop()
            self._status = None
        if step is None:
            return
        step.seconds = time.perf_counter() - step.started
        mark = "[yellow]![/]" if step.note else "[green]✓[/]"
        note = f": {step.note}" if step.note else ""
        self.console.print(f"{mark} {step.name} [dim]{step.seconds:.1f}s[/]{note}",
                           highlight=False)
        self.done.append(step)

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self._end()

    @property
    def total_s(self) -> float:
        return time.perf_counter() - self._began

    def summary(self) -> Table:
        table = Table(title="warden warm", title_justify="left")
        table.add_column("step")
        table.add_column("time", justify="right")
        table.add_column("result")
        for step in self.done:
            table.add_row(step.name, f"{step.seconds or 0.0:.1f}s", step.note or "ok")
        table.add_row("[bold]total[/]", f"[bold]{self.total_s:.1f}s[/]", "")
        return table
