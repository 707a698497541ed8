"""Training progress: a log line every `log_every` steps (always in msr.log), and on a terminal
a rich bar that takes the place of those lines on the console."""

from __future__ import annotations

import logging
import time

from msr.logs import console

log = logging.getLogger("msr.progress")


class HideWhileBarShows(logging.Filter):
    """On the console, the bar already shows what the progress lines say."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (Progress.bar_shown and record.name == log.name)


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    bar_shown = False  # class-wide: the console has one bar at a time
    def __init__(self, total: int, interactive: bool, start: int = 0):
        self.total, self.interactive, self.start = total, interactive, start  # start: a resumed run's step
        self._bar = None

    def __enter__(self) -> "Progress":
        self._t0 = time.perf_counter()
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("lr {task.fields[lr]}"),
                TextColumn("{task.fields[speed]} tok/s"), TextColumn("eta"), TimeRemainingColumn(),
                console=console(), transient=False,
            )
            self._bar.start()
            Progress.bar_shown = True
            self._task = self._bar.add_task("train", total=self.total, completed=self.start,
                                            loss="-", lr="-", speed="-")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            Progress.bar_shown = False

    def update(self, step: int, loss: float, lr: float, tokens_per_second: float) -> None:
        fields = dict(loss=f"{loss:.4f}", lr=f"{lr:.2e}", speed=f"{tokens_per_second / 1000:.1f}k")
        if self._bar is not None:
            self._bar.update(self._task, completed=step, **fields)
        elapsed = time.perf_counter() - self._t0
        eta = elapsed / max(step - self.start, 1) * (self.total - step)
        log.info("step %d/%d  loss %s  lr %s  %s tok/s  eta %s",
                 step, self.total, fields["loss"], fields["lr"], fields["speed"], _eta(eta))
