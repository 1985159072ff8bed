"""Progress bars for long sweeps (ALS, Gibbs), drawn with rich, switchable off."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class _Bar:
    def __init__(self, progress: Progress | None, task_id) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, status: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task_id, advance=1, status=status)


@contextmanager
def sweep_progress(total: int, description: str, enabled: bool = True) -> Iterator[_Bar]:
    """Yield an object whose ``advance(status)`` moves the bar one sweep forward."""
    if not enabled:
        yield _Bar(None, None)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        transient=False,
        console=Console(stderr=True),  # keep stdout clean for --json
    )
    with progress:
        task_id = progress.add_task(description, total=total, status="")
        yield _Bar(progress, task_id)
