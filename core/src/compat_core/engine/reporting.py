"""Progress reporting. The engine talks to a :class:`Reporter`; the CLI passes a rich one on a
terminal, and everything else gets plain log lines."""

from __future__ import annotations

import sys
from typing import Any


class Reporter:
    """Plain-text progress: one line per epoch (and every ``every`` steps), to stderr."""

    def __init__(self, every: int = 0, stream=None):
        self.every, self.stream = every, stream or sys.stderr

    def start(self, *, run_dir: str, method: str, epochs: int, start_epoch: int, steps_per_epoch: int,
              num_images: int, device: str) -> None:
        resumed = f", resuming after epoch {start_epoch}" if start_epoch else ""
        self._print(f"compat: training {method} -> {run_dir}: {num_images} images, {epochs} epochs x "
                    f"{steps_per_epoch} steps on {device}{resumed}")

    def note(self, line: str) -> None:
        """A message of the method about its inputs, printed once at the start."""
        self._print(f"  note: {line}")

    def warning(self, line: str) -> None:
        """A warning of the method about the epoch just trained (see ``Method.epoch_warnings``)."""
        self._print(f"  warning: {line}")

    def step(self, epoch: int, step: int, steps: int, terms: dict[str, float], images_per_sec: float) -> None:
        if self.every and (step + 1) % self.every == 0:
            self._print(f"  epoch {epoch + 1} step {step + 1}/{steps} " + _fmt(terms)
                        + f" {images_per_sec:.0f} img/s")

    def epoch_end(self, record: dict[str, Any]) -> None:
        self._print(f"  {epoch_summary(record)} {record['seconds']:.1f}s")

    def close(self) -> None:
        pass

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class SilentReporter(Reporter):
    """Prints nothing: the reporter of every process but rank 0."""

    def _print(self, line: str) -> None:
        pass


def epoch_summary(record: dict[str, Any]) -> str:
    """``epoch 3/10 total .. ce .. [val accuracy 0.9123 best] lr .. N img/s`` for one history record."""
    values = {**record["loss"], **record.get("scalars", {})}
    val = record.get("val")
    scored = f" val {val['metric']} {val['value']:.4f}{' best' if val.get('best') else ''}" if val else ""
    return (f"epoch {record['epoch']}/{record['epochs']} {_fmt(values)}{scored} lr {record['lr']:.4g} "
            f"{record['images_per_sec']:.0f} img/s")


def _fmt(terms: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in terms.items())
