"""The console's text of a record: time, level, plugin, logger, message, key attributes, trace.

Colour only when asked (on a terminal, never with ``NO_COLOR``); every field a plugin controls
goes through ``escape_controls``, so a record cannot move the cursor or clear the screen, and
its further lines (a multi-line message, a stack trace) start with the gutter: they cannot pass
for records. A replayed record's level, plugin and logger columns and its attribute texts are
kept once made: most records repeat them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from otel_plugin_logs.cli.console_attributes import AttributeTexts
from otel_plugin_logs.cli.terminal import ASCII_SYMBOLS, UNICODE_SYMBOLS
from otel_plugin_logs.config.text import escape_controls, escape_multiline
from otel_plugin_logs.export.otlp import Entry
from otel_plugin_logs.host.replay import REPLAY_ATTRIBUTE, ReplayedRecord
from otel_plugin_logs.host.replay_routes import BuiltRecord, replayed_exc_text
from otel_plugin_logs.wire.records import EXCEPTION_STACKTRACE

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
_MAX_CACHED: Final = 4096
_MILLIS: Final = tuple(f"{millis:03d}" for millis in range(1000))  # a clock's milliseconds, made once


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
        self._clock_second: int | None = None
        self._clock_text = ""
        self._clock_head = ""  # the painted clock up to its milliseconds
        self._clock_tail = _RESET if colour else ""
        # Replayed records repeat their level, plugin, logger and most attributes: their text is kept.
        self._columns: dict[tuple[str, str, str], str] = {}
        self._attribute_texts = AttributeTexts(self.symbols.ellipsis)

    def format(self, record: logging.LogRecord) -> str:
        info = getattr(record, REPLAY_ATTRIBUTE, None)
        if isinstance(info, ReplayedRecord):
            return self.format_replayed(record, info)
        stack = self.formatException(record.exc_info) if record.exc_info else None
        logger = record.name.removeprefix(_OWN_PREFIX)
        return self.format_fields(
            record.created, record.levelname, "host", logger, record.getMessage(), {}, "", stack
        )

    def format_replayed(self, record: logging.LogRecord, info: ReplayedRecord) -> str:
        """``format``'s text of a replayed record whose ``record.otel`` the caller has already read."""
        # The stack as sent: exc_text is indented for plain handlers; here the gutter does that.
        raw_stack = info.attributes.get(EXCEPTION_STACKTRACE)
        return self._replayed_text(
            record.created,
            record.levelname,
            info.plugin,
            info.logger_name,
            info.body,
            info.attributes,
            info.trace_id or "",
            raw_stack if isinstance(raw_stack, str) else record.exc_text,
        )

    def format_entry(self, entry: Entry, plugin: str, stacktrace: str | None) -> str:
        """``format_replayed``'s text of the record the bridge replays for ``entry``, without
        building it: the same fields, read straight from the entry."""
        attributes = entry.attributes
        raw_stack = attributes.get(EXCEPTION_STACKTRACE)
        trace_id = entry.trace_id
        return self._replayed_text(
            entry.time / 1e9,
            escape_controls(entry.severity_text),  # the record's levelname
            plugin,
            entry.scope,
            entry.body,
            attributes,
            trace_id.hex() if trace_id else "",
            raw_stack if isinstance(raw_stack, str) else replayed_exc_text(stacktrace),
        )

    def format_entries(
        self,
        records: Sequence[BuiltRecord],
        indices: Iterable[int],
        plugin: str,
        suffix: str,
        failed: Callable[[int], None],
    ) -> list[tuple[float, str]]:
        """``format_entry`` of the records at ``indices`` (each text ending in ``suffix``), with
        the record's time in seconds; the index of a record that cannot be formatted goes to
        ``failed``. A printable one-line record with no stack trace, the common one, goes
        straight to the one-line text."""
        lines: list[tuple[float, str]] = []
        append = lines.append
        for index in indices:
            entry, _, stacktrace = records[index]
            created = entry.time / 1e9
            try:
                body = entry.body
                attributes = entry.attributes
                level_name = entry.severity_text
                if (
                    stacktrace is not None
                    or not body.isprintable()
                    or not level_name.isprintable()
                    or EXCEPTION_STACKTRACE in attributes
                ):
                    append((created, self.format_entry(entry, plugin, stacktrace) + suffix))
                    continue
                trace_id = entry.trace_id  # the first 8 hex digits are the first 4 bytes'
                line = self._format_line(
                    created,
                    level_name,
                    plugin,
                    entry.scope,
                    body,
                    attributes,
                    trace_id[:4].hex() if trace_id else "",
                    None,
                )
            except RecursionError:
                raise
            except Exception:
                failed(index)
                continue
            append((created, line + suffix))
        return lines

    def _replayed_text(
        self,
        created: float,
        level_name: str,
        plugin: str,
        logger_name: str,
        body: str,
        attributes: Mapping[str, Any],
        trace_id: str,
        stack: str | None,
    ) -> str:
        if body.isprintable():  # one line with nothing to escape: the common record, fast
            return self._format_line(
                created, level_name, plugin, logger_name, body, attributes, trace_id, stack
            )
        return self.format_fields(created, level_name, plugin, logger_name, body, attributes, trace_id, stack)

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
        if second != self._clock_second:
            self._set_clock(second)
        clock = f"{self._clock_text}.{int((created - second) * 1000):03d}"
        level = escape_controls(level_name)
        level = _SHORT_LEVELS.get(level, level)[:5]
        logger = escape_controls(logger_name) or "root"
        extras = self._attribute_texts.text(attributes, self.max_attributes)
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

    def _set_clock(self, second: int) -> None:
        # strftime is a good part of the cost of a line: once a second.
        self._clock_second, self._clock_text = second, time.strftime("%H:%M:%S", time.localtime(second))
        self._clock_head = f"{_DIM if self.colour else ''}{self._clock_text}."

    def _format_line(
        self,
        created: float,
        level_name: str,
        plugin: str,
        logger_name: str,
        body: str,
        attributes: Mapping[str, Any],
        trace_id: str,
        stack: str | None,
    ) -> str:
        """``format_fields``' text for a printable one-line body, from cached columns."""
        second = int(created)
        if second != self._clock_second:
            self._set_clock(second)
        millis = int((created - second) * 1000)
        key = (level_name, plugin, logger_name)
        columns = self._columns.get(key)
        if columns is None:
            columns = self._columns_for(*key)
        line = (
            f"{self._clock_head}{_MILLIS[millis] if 0 <= millis < 1000 else f'{millis:03d}'}"
            f"{self._clock_tail} {columns} {body}"
        )
        extras = self._attribute_texts.cached_text(attributes, self.max_attributes) if attributes else ""
        if extras:
            line = f"{line} {self._paint(_DIM, extras)}"
        if trace_id:
            line = f"{line} {self._paint(_DIM, f'trace={trace_id[:8]}')}"
        return line + self._stack(stack) if stack else line

    def _columns_for(self, level_name: str, source: str, logger_name: str) -> str:
        """The level, plugin and logger columns of a record, as ``format_fields`` writes them."""
        level = escape_controls(level_name)
        level = _SHORT_LEVELS.get(level, level)[:5]
        logger = escape_controls(logger_name) or "root"
        ellipsis = self.symbols.ellipsis
        columns = " ".join(
            [
                self._paint(_LEVEL_COLOURS.get(level_name, ""), f"{level:<5}"),
                self._paint(self._plugin_colour(source), _fit(source, self.plugin_width, ellipsis)),
                self._paint(_DIM, _fit(logger, self.logger_width, ellipsis)),
            ]
        )
        if len(self._columns) < _MAX_CACHED:
            self._columns[(level_name, source, logger_name)] = columns
        return columns

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
