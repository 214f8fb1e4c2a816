"""A one-line progress bar for terminals; silent when the stream is not one (logs, CI)."""

from __future__ import annotations

import time
from typing import TextIO

_WIDTH = 30
_EVERY_SECONDS = 0.2


class Progress:
    """``[#######-------]  45%  450,000/1,000,000 rows  812,345 rows/s`` redrawn in place."""

    def __init__(self, total: int | None, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.enabled = stream.isatty()
        self.rows = 0
        self._started = time.perf_counter()
        self._drawn = 0.0

    def advance(self, rows: int) -> None:
        self.rows += rows
        now = time.perf_counter()
        if self.enabled and now - self._drawn >= _EVERY_SECONDS:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.rows / max(now - self._started, 1e-9)
        if self.total:
            done = min(self.rows / self.total, 1.0)
            filled = int(done * _WIDTH)
            bar = f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {done:4.0%}  "
            count = f"{self.rows:,}/{self.total:,} rows"
        else:
            bar, count = "", f"{self.rows:,} rows"
        self.stream.write(f"\r{bar}{count}  {rate:,.0f} rows/s ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._drawn:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()
