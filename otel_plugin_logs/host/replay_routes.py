"""Where a replayed record goes, decided once per (logger, level) and batch, not per record.

``Logger.handle`` hands a record to the handlers ``Logger.callHandlers`` finds on the way up.
When every handler that would take a record offers ``handle_replayed`` (the CLI's console) and
nothing on the way could see a ``LogRecord`` otherwise (a filter on the logger or on one of
those handlers, a patched ``Logger.handle`` or ``callHandlers``, ``logging.lastResort``), those
handlers get the records as the bridge holds them and no ``LogRecord`` is built. Whenever any of
that does not hold, every handler gets the full ``LogRecord`` exactly as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

from otel_plugin_logs.config.text import escape_multiline
from otel_plugin_logs.export.otlp import Entry

# The stdlib's own: a logger class (or instance) that replaces either may look at the record.
_STDLIB_HANDLE: Final = logging.Logger.handle
_STDLIB_CALL_HANDLERS: Final = logging.Logger.callHandlers

# Lines a stdlib traceback starts at the margin that cannot pass for a record's first line.
_TRACEBACK_HEADERS: Final = frozenset(
    {
        "Traceback (most recent call last):",
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
    }
)

# A record as the bridge built it: the entry, its stdlib level and its stack trace (or None).
BuiltRecord = tuple[Entry, int, str | None]


def indent_continuation(text: str) -> str:
    """Indent the lines of a stack trace that start at the margin (bar the stdlib headers).

    A Formatter writes ``exc_text`` after the message, one line per line, and a host's plain
    format (``LEVEL:logger:message``) tells records apart only by what starts at the margin: a
    plugin's exception message must not start a line that reads as another record.
    """
    if "\n" not in text and text in _TRACEBACK_HEADERS:
        return text
    return "\n".join(
        line if not line or line[0] == " " or line in _TRACEBACK_HEADERS else "  " + line
        for line in text.split("\n")
    )


def replayed_exc_text(stacktrace: str | None) -> str | None:
    """A replayed record's ``exc_text``: as ``Formatter.formatException`` leaves it, no final
    newline (or ``format()`` ends with a blank line), escaped and indented."""
    if not stacktrace:
        return None
    return indent_continuation(escape_multiline(stacktrace.rstrip("\r\n")))


def would_be_handled(logger: logging.Logger, levelno: int) -> bool:
    """Whether ``logger.handle`` of a record at ``levelno`` would reach a handler, as
    ``Logger.callHandlers`` decides: a handler on the way up whose level lets it through, or, with
    no handler at all, ``logging.lastResort``. True whenever it cannot tell without the record
    (a filter on the logger may count what it sees; the one-time "no handlers" warning)."""
    if logger.disabled:
        return False
    if logger.filters:
        return True
    found = False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if levelno >= handler.level:
                return True
            found = True
        current = current.parent if current.propagate else None
    if found:
        return False
    last_resort = logging.lastResort
    if last_resort is None:
        return bool(logging.raiseExceptions)
    return levelno >= last_resort.level


class ReplayBatch:
    """Records of one plugin that go to the same handlers, as the bridge built them.

    ``records`` are in the order the plugin sent them; ``log_record(index)`` builds the
    ``LogRecord`` today's replay would hand the handlers (for ``handleError``, say). Read-only.
    """

    __slots__ = ("_record_for", "otel", "plugin", "records")

    def __init__(
        self,
        records: list[BuiltRecord],
        otel: Mapping[str, Any],
        record_for: Callable[[Entry, int, str | None], logging.LogRecord],
    ) -> None:
        self.records = records
        self.otel = otel
        self.plugin: str = otel["plugin"]
        self._record_for = record_for

    def log_record(self, index: int) -> logging.LogRecord:
        entry, levelno, stacktrace = self.records[index]
        return self._record_for(entry, levelno, stacktrace)


@runtime_checkable
class FieldsHandler(Protocol):
    """A handler that can take replayed records without a ``LogRecord``.

    ``takes_replayed_fields`` is asked once per batch: True only when ``handle_replayed`` does
    exactly what ``handle`` of the records' ``LogRecord``s would do (same text, same counts).
    """

    def takes_replayed_fields(self) -> bool: ...

    def handle_replayed(self, batch: ReplayBatch) -> None: ...


def fields_handlers(logger: logging.Logger, levelno: int) -> tuple[FieldsHandler, ...] | None:
    """The handlers ``logger.handle`` would give a record at ``levelno``, when each takes replayed
    fields and nothing else could see the record; None otherwise (then a ``LogRecord`` is built).
    The caller has checked that the logger is enabled for the level and that some handler
    would take the record."""
    kind = type(logger)
    if (
        kind.handle is not _STDLIB_HANDLE
        or kind.callHandlers is not _STDLIB_CALL_HANDLERS
        or "handle" in logger.__dict__
        or "callHandlers" in logger.__dict__
        or logger.disabled
    ):
        return None
    taking: list[FieldsHandler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:  # only the first logger's count in the stdlib; any one: the record path
            return None
        for handler in current.handlers:
            if levelno < handler.level:
                continue
            if handler.filters or not isinstance(handler, FieldsHandler):
                return None
            if not handler.takes_replayed_fields():
                return None
            taking.append(handler)
        current = current.parent if current.propagate else None
    return tuple(taking) if taking else None  # none at all: logging.lastResort's business
