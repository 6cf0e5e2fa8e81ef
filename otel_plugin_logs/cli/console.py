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
from collections.abc import Mapping
from typing import IO, Any, Final

from otel_plugin_logs.cli.console_order import TimeOrderedRelease
from otel_plugin_logs.cli.terminal import ASCII_SYMBOLS, UNICODE_SYMBOLS, StatusLine, symbols_for, use_colour
from otel_plugin_logs.host.replay import REPLAY_ATTRIBUTE, ReplayedRecord, escape_controls, escape_multiline
from otel_plugin_logs.wire.records import EXCEPTION_STACKTRACE

_HIDDEN_PREFIXES: Final = ("code.", "thread.", "exception.", "otel_plugin_logs.", "log.")
_OWN_PREFIX: Final = "otel_plugin_logs."
_LEVEL_COLOURS: Final = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;41;97m",
}
_PLUGIN_COLOURS: Final = (
    "\x1b[36m",
    "\x1b[35m",
    "\x1b[34m",
    "\x1b[96m",
    "\x1b[95m",
    "\x1b[94m",
    "\x1b[92m",
    "\x1b[93m",
)
_DIM: Final = "\x1b[2m"
_BOLD: Final = "\x1b[1m"
_RESET: Final = "\x1b[0m"
_SHORT_LEVELS: Final = {"WARNING": "WARN", "CRITICAL": "CRIT"}
_MAX_VALUE_CHARS: Final = 40
_NOTE_INTERVAL_SECONDS: Final = 5.0


def _fit(text: str, width: int, ellipsis: str = "…") -> str:
    """Pad or cut to exactly ``width`` characters, marking a cut with an ellipsis."""
    if len(text) > width:
        return text[: max(0, width - len(ellipsis))] + ellipsis
    return f"{text:<{width}}"


class PluginConsoleFormatter(logging.Formatter):
    """time, level, plugin, logger, message, key attributes, trace id prefix — aligned.

    ``max_stack_lines`` keeps the last lines of a stack trace (its innermost frames and the
    exception itself); None shows all of it.
    """

    def __init__(
        self,
        *,
        colour: bool = False,
        max_attributes: int = 6,
        plugin_width: int = 10,
        logger_width: int = 18,
        max_stack_lines: int | None = None,
        ascii_only: bool = False,
    ) -> None:
        super().__init__()
        self.colour = colour
        self.max_attributes = max_attributes
        self.plugin_width = plugin_width
        self.logger_width = logger_width
        self.max_stack_lines = max_stack_lines
        self.symbols = ASCII_SYMBOLS if ascii_only else UNICODE_SYMBOLS
        self._plugin_colours: dict[str, str] = {}
        self._clock_second = -1
        self._clock_text = ""

    def format(self, record: logging.LogRecord) -> str:
        info = getattr(record, REPLAY_ATTRIBUTE, None)
        if isinstance(info, ReplayedRecord):
            # The stack as sent: exc_text is indented for plain handlers; here the gutter does that.
            raw_stack = info.attributes.get(EXCEPTION_STACKTRACE)
            return self.format_fields(
                record.created,
                record.levelname,
                info.plugin,
                info.logger_name,
                info.body,
                info.attributes,
                info.trace_id or "",
                raw_stack if isinstance(raw_stack, str) else record.exc_text,
            )
        stack = self.formatException(record.exc_info) if record.exc_info else None
        logger = record.name.removeprefix(_OWN_PREFIX)
        return self.format_fields(
            record.created, record.levelname, "host", logger, record.getMessage(), {}, "", stack
        )

    def format_fields(
        self,
        created: float,
        level_name: str,
        source: str,
        logger_name: str,
        message: str,
        attributes: Mapping[str, Any],
        trace_id: str,
        stack: str | None,
    ) -> str:
        """The console's text of one record given as fields (``logs`` has no LogRecord to give)."""
        second = int(created)
        if second != self._clock_second:  # strftime is a good part of the cost of a line
            self._clock_second, self._clock_text = second, time.strftime("%H:%M:%S", time.localtime(second))
        clock = f"{self._clock_text}.{int((created - second) * 1000):03d}"
        level = escape_controls(level_name)
        level = _SHORT_LEVELS.get(level, level)[:5]
        logger = escape_controls(logger_name) or "root"
        extras = self._attributes(attributes)
        first, *more = message.rstrip("\r\n").split("\n") or [""]
        ellipsis = self.symbols.ellipsis
        parts = [
            self._paint(_DIM, clock),
            self._paint(_LEVEL_COLOURS.get(level_name, ""), f"{level:<5}"),
            self._paint(self._plugin_colour(source), _fit(source, self.plugin_width, ellipsis)),
            self._paint(_DIM, _fit(logger, self.logger_width, ellipsis)),
            escape_controls(first.removesuffix("\r")),
        ]
        if extras:
            parts.append(self._paint(_DIM, extras))
        if trace_id:
            parts.append(self._paint(_DIM, f"trace={trace_id[:8]}"))
        return " ".join(parts) + self._continued(more) + self._stack(stack)

    def format_note(self, text: str) -> str:
        """A line of the console's own (sampling notes), dim and marked as such."""
        clock = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
        return self._paint(_DIM, f"{clock} {self.symbols.ellipsis:<5} {escape_controls(text)}")

    def _continued(self, lines: list[str]) -> str:
        """A multi-line message's further lines, under the gutter: one record, never lines of its own."""
        gutter = self._paint(_DIM, self.symbols.gutter)
        return "".join(f"\n{gutter}{escape_controls(text.removesuffix(chr(13)))}" for text in lines)

    def _stack(self, stack: str | None) -> str:
        if not stack:
            return ""
        lines = stack.rstrip("\n").split("\n")
        gutter = self._paint(_DIM, self.symbols.gutter)
        shown = []
        if self.max_stack_lines is not None and len(lines) > self.max_stack_lines:
            hidden = len(lines) - self.max_stack_lines
            lines = lines[hidden:]
            note = f"{self.symbols.ellipsis} {hidden} earlier lines"
            shown.append(f"\n{gutter}{self._paint(_DIM, note)}")
        # Every continuation line starts with the gutter, so a stack trace cannot pass for records.
        shown.extend(f"\n{gutter}{escape_multiline(text)}" for text in lines)
        return "".join(shown)

    def _attributes(self, attributes: Mapping[str, Any]) -> str:
        shown = []
        for key, value in attributes.items():
            if key.startswith(_HIDDEN_PREFIXES):
                continue
            text = escape_controls(str(value))
            if len(text) > _MAX_VALUE_CHARS:
                text = text[: _MAX_VALUE_CHARS - 1] + self.symbols.ellipsis
            shown.append(f"{escape_controls(key)}={text}")
            if len(shown) >= self.max_attributes:
                break
        return " ".join(shown)

    def _plugin_colour(self, name: str) -> str:
        if name == "host":
            return _BOLD
        colour = self._plugin_colours.get(name)
        if colour is None:
            colour = _PLUGIN_COLOURS[len(self._plugin_colours) % len(_PLUGIN_COLOURS)]
            self._plugin_colours[name] = colour
        return colour

    def _paint(self, colour: str, text: str) -> str:
        return f"{colour}{text}{_RESET}" if self.colour and colour else text


class PluginConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` that keeps a ``StatusLine`` intact and can sample chatty plugins.

    With ``max_lines_per_second`` > 0 each plugin may show that many records below WARNING
    per second (and bursts of as many); the rest are not shown, counted in ``hidden`` and
    announced at most every few seconds. WARNING and above, and the host's own records, are
    always shown. Sampling is for the eyes only: the bridge replayed and exports them all.

    With ``reorder_millis`` > 0 records are held that long and shown oldest first, so a
    runner's stderr line does not print ahead of the records it logged before it (those come
    in batches); ``flush()`` shows what is held at once.
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
        self._in_order: TimeOrderedRelease[logging.LogRecord] | None = None
        if reorder_millis > 0:
            self._in_order = TimeOrderedRelease(reorder_millis / 1000.0, self._show_held)
        self.shown: dict[str, int] = {}
        self.hidden: dict[str, int] = {}
        self._tokens: dict[str, tuple[float, float]] = {}  # plugin -> (tokens, at)
        self._unannounced: dict[str, int] = {}
        self._last_note = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        info = getattr(record, REPLAY_ATTRIBUTE, None)
        plugin = info.plugin if isinstance(info, ReplayedRecord) else None
        if plugin is not None and not self._admit(plugin, record.levelno):
            self.hidden[plugin] = self.hidden.get(plugin, 0) + 1
            self._unannounced[plugin] = self._unannounced.get(plugin, 0) + 1
            self._maybe_announce()
            return
        if plugin is not None:
            self.shown[plugin] = self.shown.get(plugin, 0) + 1
        if self._in_order is not None:
            self._in_order.push(record.created, record)
        else:
            self._write_with_status(lambda: super(PluginConsoleHandler, self).emit(record))
        self._maybe_announce()

    def flush(self) -> None:
        if self._in_order is not None:
            self._in_order.drain()
        super().flush()

    def close(self) -> None:
        if self._in_order is not None:
            self._in_order.close()
        super().close()

    def _show_held(self, record: logging.LogRecord) -> None:
        # Not through StreamHandler.emit: that takes the handler's lock and calls flush(), which
        # waits for this very release (the lock may be held by logging.shutdown, flushing).
        def write() -> None:
            try:
                self.stream.write(self.format(record) + self.terminator)
                self.stream.flush()
            except RecursionError:
                raise
            except Exception:
                self.handleError(record)

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
