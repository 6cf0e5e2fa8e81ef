"""What the demo plugins share: their options and a loop that stops cleanly on SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Iterator

# Set by SIGTERM or SIGINT; a plugin finishes what it is doing and returns from main(), so its
# last records are sent to the host by the handler at interpreter exit.
stop = threading.Event()


def parser(description: str | None) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(description=description)
    options.add_argument("--rate", type=float, default=5.0, help="about this many records per second")
    options.add_argument("--seed", default=None, help="seed of the plugin's random choices")
    return options


def every(seconds: float) -> Iterator[int]:
    """Yield 0, 1, 2, ... once per ``seconds`` until the process is asked to stop."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    tick = 0
    due = time.monotonic()
    while not stop.is_set():
        yield tick
        tick += 1
        due = max(due + seconds, time.monotonic())  # a slow tick delays the next, no catch-up burst
        stop.wait(due - time.monotonic())


def pause(seconds: float) -> None:
    """Pretend to work for a while, but not past a request to stop."""
    stop.wait(seconds)
