"""The CLI's console: a stdlib formatter and handler that show replayed plugin records well.

This is the host's local replay as the CLI sets it up, with ordinary logging handlers; the
library's replay itself stays handler-agnostic. Colour only on a terminal, never with
``NO_COLOR``; every field a plugin controls goes through ``escape_controls``, so a record
cannot move the cursor or clear the screen, and its further lines (a multi-line message, a
stack trace) start with the gutter: they cannot pass for records. A chatty plugin can be sampled on the
console only (``max_lines_per_second``): what it hides is counted and said, and the bridge still
exports every record.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any, Final

from otel_plugin_logs.cli.console_format import PluginConsoleFormatter
from otel_plugin_logs.cli.console_order import TimeOrderedRelease
from otel_plugin_logs.cli.terminal import ASCII_SYMBOLS, StatusLine, symbols_for, use_colour
from otel_plugin_logs.host.replay import REPLAY_ATTRIBUTE, ReplayedRecord

__all__ = ["PluginConsoleFormatter", "PluginConsoleHandler", "install_console"]

_NOTE_INTERVAL_SECONDS: Final = 5.0


class PluginConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` that keeps a ``StatusLine`` intact and can sample chatty plugins.

    With ``max_lines_per_second`` > 0 each plugin may show that many records below WARNING
    per second (and bursts of as many); the rest are not shown, counted in ``hidden`` and
    announced at most every few seconds. WARNING and above, and the host's own records, are
    always shown. Sampling is for the eyes only: the bridge replayed and exports them all.

    With ``reorder_millis`` > 0 records are held that long and shown oldest first, so a
    runner's stderr line does not print ahead of the records it logged before it (those come
    in batches); ``flush()`` shows what is held at once. A record is formatted as it comes (on
    the thread that logs it, as any handler does); the console's thread writes the lines due,
    a few dozen times a second, with one write and one flush each time.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        status: StatusLine | None = None,
        max_lines_per_second: float = 0.0,
        reorder_millis: int = 0,
    ) -> None:
        super().__init__(stream)
        self.status = status
        self.max_lines_per_second = max_lines_per_second
        self._in_order: TimeOrderedRelease[str] | None = None
        if reorder_millis > 0:
            self._in_order = TimeOrderedRelease(reorder_millis / 1000.0, self._write_lines)
        self._last_held: logging.LogRecord | None = None  # the record a failed write reports
        self.shown: dict[str, int] = {}
        self.hidden: dict[str, int] = {}
        self._tokens: dict[str, tuple[float, float]] = {}  # plugin -> (tokens, at)
        self._unannounced: dict[str, int] = {}
        self._last_note = time.monotonic()

    def handle(self, record: logging.LogRecord) -> bool:
        # Handler.handle's steps with fewer calls: it runs once per replayed record.
        if self.filters:
            checked: object = self.filter(record)
            if not checked:
                return False
            if isinstance(checked, logging.LogRecord):  # 3.12: a filter may return a replacement
                record = checked
        with self.lock:  # type: ignore[union-attr]  # Handler.__init__ always creates it
            self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        info = getattr(record, REPLAY_ATTRIBUTE, None)
        if not isinstance(info, ReplayedRecord):
            info = None
        plugin = info.plugin if info is not None else None
        if plugin is not None:
            if self.max_lines_per_second > 0 and not self._admit(plugin, record.levelno):
                self.hidden[plugin] = self.hidden.get(plugin, 0) + 1
                self._unannounced[plugin] = self._unannounced.get(plugin, 0) + 1
                self._maybe_announce()
                return
            self.shown[plugin] = self.shown.get(plugin, 0) + 1
        in_order = self._in_order
        if in_order is not None:
            formatter = self.formatter
            try:
                if info is not None and formatter.__class__ is PluginConsoleFormatter:
                    line = formatter.format_replayed(record, info)
                else:
                    line = self.format(record)
                line += self.terminator
            except RecursionError:
                raise
            except Exception:
                self.handleError(record)
                return
            self._last_held = record
            in_order.push(record.created, line)
        else:
            self._write_with_status(lambda: super(PluginConsoleHandler, self).emit(record))
        if self._unannounced:
            self._maybe_announce()

    def flush(self) -> None:
        if self._in_order is not None:
            self._in_order.drain()
        super().flush()

    def close(self) -> None:
        if self._in_order is not None:
            self._in_order.close()
        super().close()

    def _write_lines(self, lines: list[str]) -> None:
        # Not through StreamHandler.emit: that takes the handler's lock and calls flush(), which
        # waits for this very release (the lock may be held by logging.shutdown, flushing).
        text = "".join(lines)
        last = self._last_held

        def write() -> None:
            try:
                self.stream.write(text)
                self.stream.flush()
            except RecursionError:
                raise
            except Exception:
                if last is not None:
                    self.handleError(last)

        self._write_with_status(write)

    def announce_hidden(self) -> None:
        """Say now how many records were not shown since the last note."""
        with self.lock:  # type: ignore[union-attr]  # Handler.__init__ always creates it
            if not self._unannounced:
                return
            counts, self._unannounced = self._unannounced, {}
            self._last_note = time.monotonic()
        text = ", ".join(f"{count:,} of {plugin}" for plugin, count in sorted(counts.items()))
        note = f"{text}: more records not shown here (console sampling; all are exported)"
        formatter = self.formatter
        line = formatter.format_note(note) if isinstance(formatter, PluginConsoleFormatter) else note

        def write() -> None:
            try:
                self.stream.write(line + self.terminator)
                self.stream.flush()  # not self.flush(): held records keep their order and window
            except (OSError, ValueError):
                pass

        self._write_with_status(write)

    def _admit(self, plugin: str, levelno: int) -> bool:
        rate = self.max_lines_per_second
        if rate <= 0 or levelno >= logging.WARNING:
            return True
        now = time.monotonic()
        burst = max(1.0, rate)
        tokens, at = self._tokens.get(plugin, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        admitted = tokens >= 1.0
        self._tokens[plugin] = (tokens - 1.0 if admitted else tokens, now)
        return admitted

    def _maybe_announce(self) -> None:
        if self._unannounced and time.monotonic() - self._last_note >= _NOTE_INTERVAL_SECONDS:
            self.announce_hidden()

    def _write_with_status(self, write: Any) -> None:
        status = self.status
        if status is None or not status.active:
            write()
            return
        with status.lock:
            status.hide()
            write()
            status.show()


def install_console(
    level: int = logging.INFO,
    stream: IO[str] | None = None,
    *,
    status: StatusLine | None = None,
    max_lines_per_second: float = 0.0,
    plugin_width: int = 10,
    max_stack_lines: int | None = None,
    reorder_millis: int = 0,
) -> PluginConsoleHandler:
    """Put a console handler with ``PluginConsoleFormatter`` on the root logger."""
    target = stream or sys.stderr
    handler = PluginConsoleHandler(
        target, status=status, max_lines_per_second=max_lines_per_second, reorder_millis=reorder_millis
    )
    handler.setFormatter(
        PluginConsoleFormatter(
            colour=use_colour(target),
            plugin_width=plugin_width,
            max_stack_lines=max_stack_lines,
            ascii_only=symbols_for(target) is ASCII_SYMBOLS,
        )
    )
    handler.setLevel(level)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    # The SDK's and gRPC's own chatter during an outage is the bridge's business to summarise.
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    return handler
