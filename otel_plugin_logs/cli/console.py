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
from otel_plugin_logs.host.replay_routes import BuiltRecord, ReplayBatch

__all__ = ["PluginConsoleFormatter", "PluginConsoleHandler", "install_console"]

_NOTE_INTERVAL_SECONDS: Final = 5.0


class _HeldEntry:
    """A record of a ``ReplayBatch`` that was held, to build its ``LogRecord`` only if needed."""

    __slots__ = ("batch", "index")

    def __init__(self, batch: ReplayBatch, index: int) -> None:
        self.batch = batch
        self.index = index

    def log_record(self) -> logging.LogRecord:
        return self.batch.log_record(self.index)


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
        # The record a failed write reports: a LogRecord, or where to build one from.
        self._last_held: logging.LogRecord | _HeldEntry | None = None
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

    def takes_replayed_fields(self) -> bool:
        """True when ``handle_replayed`` shows what ``handle`` of the records would (asked once per
        batch by the bridge's replay): records held in time order, this module's formatter, no
        filter, and ``handle`` and ``emit`` as defined here."""
        kind = type(self)
        return (
            self._in_order is not None
            and not self.filters
            and self.formatter.__class__ is PluginConsoleFormatter
            and kind.handle is PluginConsoleHandler.handle
            and kind.emit is PluginConsoleHandler.emit
        )

    def handle_replayed(self, batch: ReplayBatch) -> None:
        """``handle`` of each of the batch's records, read from the bridge's entries: the same text,
        counts and sampling, one lock, one clock reading and one push for the whole batch."""
        formatter = self.formatter
        in_order = self._in_order
        if in_order is None or formatter.__class__ is not PluginConsoleFormatter or self.filters:
            for index in range(len(batch.records)):  # set up otherwise since asked: the record path
                self.handle(batch.log_record(index))
            return
        assert isinstance(formatter, PluginConsoleFormatter)
        plugin = batch.plugin
        records = batch.records
        with self.lock:  # type: ignore[union-attr]  # Handler.__init__ always creates it
            admitted = self._admit_batch(plugin, records)
            failures: list[int] = []
            lines = formatter.format_entries(
                records,
                admitted if admitted is not None else range(len(records)),
                plugin,
                self.terminator,
                failures.append,
            )
            for index in failures:
                self.handleError(batch.log_record(index))
            if lines:
                self._last_held = _HeldEntry(batch, admitted[-1] if admitted else len(records) - 1)
                in_order.push_many(lines)
            if self._unannounced:
                self._maybe_announce()

    def _admit_batch(self, plugin: str, records: list[BuiltRecord]) -> list[int] | None:
        """The indices of the records the rate gate lets through (None: all), counted in ``shown``
        and ``hidden`` as ``emit`` counts them one by one."""
        shown = self.shown
        rate = self.max_lines_per_second
        if rate <= 0:
            shown[plugin] = shown.get(plugin, 0) + len(records)
            return None
        now = time.monotonic()
        burst = max(1.0, rate)
        tokens, at = self._tokens.get(plugin, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        admitted = []
        for index, (_, levelno, _) in enumerate(records):
            if levelno >= logging.WARNING:
                admitted.append(index)
            elif tokens >= 1.0:
                tokens -= 1.0
                admitted.append(index)
        self._tokens[plugin] = (tokens, now)
        if admitted:
            shown[plugin] = shown.get(plugin, 0) + len(admitted)
        hidden = len(records) - len(admitted)
        if hidden:
            self.hidden[plugin] = self.hidden.get(plugin, 0) + hidden
            self._unannounced[plugin] = self._unannounced.get(plugin, 0) + hidden
        return admitted

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
                    self.handleError(last.log_record() if isinstance(last, _HeldEntry) else last)

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
