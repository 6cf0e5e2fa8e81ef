"""Where records go that cannot reach the host: stderr, one marked line each, rate limited."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import msgpack

from otel_plugin_logs.runner.buffer import Q, QueuedRecord, queued_text
from otel_plugin_logs.runner.ledger import Ledger
from otel_plugin_logs.wire.drops import DropReason
from otel_plugin_logs.wire.records import Rec

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, Final

STDERR_MARKER: Final = "[otel-plugin-logs gave up]"
MAX_STDERR_LINES_PER_SECOND: Final = 200


class StderrFallback:
    """Writes given-up records to stderr, at most ``MAX_STDERR_LINES_PER_SECOND`` a second."""

    __slots__ = ("_count", "_monotonic", "_window_start")

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._window_start = 0.0
        self._count = 0

    def record(self, levelname: str, logger: str, message: Any) -> None:
        """One record, as a line; past the rate, counted and summarised once a second."""
        now = self._monotonic()
        if now - self._window_start >= 1.0:
            if self._count > MAX_STDERR_LINES_PER_SECOND:
                more = self._count - MAX_STDERR_LINES_PER_SECOND
                write_stderr(f"{STDERR_MARKER} ... and {more} more records")
            self._window_start, self._count = now, 0
        self._count += 1
        if self._count > MAX_STDERR_LINES_PER_SECOND:
            return
        text = message.get("event", message) if isinstance(message, dict) else message
        write_stderr(escape_line(f"{STDERR_MARKER} {levelname} {logger}: {text}"))

    def frame(self, frame: bytes) -> int:
        """Every record of an encoded batch frame, as lines; returns how many it held."""
        try:
            records = msgpack.unpackb(frame[4:], raw=False).get("records", [])
        except Exception:
            records = []
        for record in records:
            level, logger, body = record[Rec.SEVERITY_TEXT], record[Rec.LOGGER], record[Rec.BODY]
            write_stderr(escape_line(f"{STDERR_MARKER} {level} {logger}: {body}"))
        return len(records)


def give_up_records(items: list[QueuedRecord], fallback: StderrFallback) -> None:
    """Queued records that cannot reach the host, as lines (the caller counted them)."""
    for item in items:
        try:
            text = queued_text(item)
        except Exception:
            text = item[Q.MESSAGE]  # the format string, when its arguments do not fit it
        fallback.record(item[Q.LEVELNAME], item[Q.NAME], text)


def give_up_untransmitted(ledger: Ledger, fallback: StderrFallback) -> None:
    """Frames that never went out by the deadline: their records as lines, counted."""
    with ledger.lock:
        frames = ledger.window.give_up_untransmitted()
    for frame in frames:
        ledger.count_drop(DropReason.SHUTDOWN, fallback.frame(frame.frame))


def escape_line(line: str) -> str:
    """One record, one line: control characters are shown escaped."""
    return line if line.isprintable() else line.encode("unicode_escape").decode("ascii")


def write_stderr(line: str) -> None:
    """A line to the process's real stderr; never raises."""
    stream = sys.__stderr__ or sys.stderr
    try:
        if stream is not None:
            stream.write(line + "\n")
            stream.flush()
    except (OSError, ValueError):
        pass  # stderr closed or a broken pipe to a dead host: nowhere left to report
