"""A rich progress bar for the training engine, used when stderr is a terminal."""

from __future__ import annotations

from compat_core.engine.reporting import Reporter, _fmt, epoch_summary
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class RichReporter(Reporter):
    def __init__(self):
        super().__init__()
        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[terms]}"), TimeRemainingColumn(), console=self.console)
        self.task = None

    def start(self, **info) -> None:
        super().start(**info)
        self.progress.start()
        total = (info["epochs"] - info["start_epoch"]) * info["steps_per_epoch"]
        self.task = self.progress.add_task("train", total=total, epoch=info["start_epoch"] + 1, terms="")

    def note(self, line: str) -> None:
        self.progress.console.print(f"[yellow]note:[/] {escape(line)}", highlight=False)

    def warning(self, line: str) -> None:
        self.progress.console.print(f"[bold red]warning:[/] {escape(line)}", highlight=False)

    def step(self, epoch, step, steps, terms, images_per_sec) -> None:
        self.progress.update(self.task, advance=1, epoch=epoch + 1,
                             terms=f"{_fmt(terms)} {images_per_sec:.0f} img/s")

    def epoch_end(self, record) -> None:
        self.progress.console.print(epoch_summary(record), highlight=False, markup=False)

    def close(self) -> None:
        self.progress.stop()


def make_reporter() -> Reporter:
    import sys

    return RichReporter() if sys.stderr.isatty() else Reporter()
