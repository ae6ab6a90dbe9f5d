"""Plain progress lines for a console that is not a terminal (CI logs, nohup, a pipe).

Rich draws a live bar only on a terminal; elsewhere it prints the bar once, at the end, so a
90 s ramp or a slow stack start looks hung. A Ticker prints one plain line every few seconds
instead, from a thread of its own, so it keeps going while the caller blocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console

PLAIN_EVERY_S = 5.0


class Ticker:
    """`with Ticker(console, "load standard,managed", detail):` prints
    `load standard,managed: 25 s, 480/2000 requests` every PLAIN_EVERY_S when not on a terminal;
    on a terminal it does nothing (the caller's live display shows progress)."""

    def __init__(
        self,
        console: Console,
        label: str,
        detail: Callable[[], str] | None = None,
        every_s: float | None = None,
    ) -> None:
        self.console, self.label, self.detail = console, label, detail
        self.every_s = PLAIN_EVERY_S if every_s is None else every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def __enter__(self) -> Ticker:
        self._started = time.monotonic()
        if not self.console.is_terminal:
            self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)

    def stop(self) -> None:
        """No more lines: the step it reported on is over (the block may go on)."""
        self._stop.set()

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            line = f"{self.label}: {time.monotonic() - self._started:.0f} s"
            if self.detail is not None:
                line += f", {self.detail()}"
            self.console.print(line, highlight=False)
