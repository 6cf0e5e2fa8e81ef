"""Replay of plugin records into the host's stdlib logging.

A record arrives as data; it leaves as a fresh ``logging.LogRecord`` on
``<prefix>.<plugin>.<original logger>`` built from an allowlist of fields. Never
``makeLogRecord(dict)`` (it would let a runner set ``getMessage`` or ``levelno``), never ``%``
applied to remote data (``args`` is always empty), and control characters in the message and
names are escaped so that one record stays one line in any text handler: CWE-117.
Downstream handlers find everything else on ``record.otel`` (a ``ReplayedRecord``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._otlp import Entry
from ._protocol import CODE_FILE_PATH, CODE_FUNCTION_NAME, CODE_LINE_NUMBER, THREAD_ID, THREAD_NAME

REPLAY_ATTRIBUTE: Final = "otel"
MAX_LOGGERS_PER_PLUGIN: Final = 512

# C0 and C1 controls, DEL, line/paragraph separators and bidirectional overrides (which can
# make a log line read differently from what it contains).
_ESCAPES: Final = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))},
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    **{code: f"\\u{code:04x}" for code in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))},
}
_ESCAPES_MULTILINE: Final = {code: text for code, text in _ESCAPES.items() if code != 0x0A}


def escape_controls(text: str) -> str:
    """Show control characters instead of executing them; the result is one line."""
    if text.isprintable():
        return text
    return text.translate(_ESCAPES)


def escape_multiline(text: str) -> str:
    """Like ``escape_controls`` but keeps newlines (for stack traces)."""
    if text.isprintable():
        return text
    return text.translate(_ESCAPES_MULTILINE)


@dataclass(frozen=True, slots=True)
class ReplayedRecord:
    """What the bridge attaches to a replayed ``LogRecord`` as ``record.otel``.

    ``body`` is the message as the plugin sent it (the record's ``msg`` has control characters
    escaped); ``attributes`` are the record's OTel attributes after validation; ``resource`` is
    the plugin's OTel resource. Ids are lowercase hex, or None outside a span.
    """

    plugin: str
    plugin_version: str | None
    runner_pid: int
    logger_name: str
    seq: int
    body: str
    severity_number: int
    severity_text: str
    time_unix_nano: int
    observed_time_unix_nano: int
    attributes: Mapping[str, Any]
    trace_id: str | None
    span_id: str | None
    trace_flags: int
    resource: Mapping[str, Any]


def is_replayed(record: logging.LogRecord) -> bool:
    """True for records the bridge replayed (they carry ``record.otel``)."""
    return isinstance(getattr(record, REPLAY_ATTRIBUTE, None), ReplayedRecord)


class ReplayedRecordFilter(logging.Filter):
    """Rejects replayed plugin records. Put it on a host handler that must not see them.

    The bridge adds it to OTel ``LoggingHandler``s on the root logger, so a host that already
    exports its own logs does not export plugin records a second time.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_replayed(record)


def safe_logger_suffix(name: str) -> str:
    """A runner's logger name as a dotted suffix that cannot leave the plugin's namespace."""
    if not name or name == "root":
        return ""
    cleaned = []
    for raw in name.split("."):
        part = "".join(ch if ch.isprintable() and not ch.isspace() else "_" for ch in raw)
        if part:
            cleaned.append(part[:64])
    return ".".join(cleaned)[:200]


class Replayer:
    """Replays the records of one plugin. Owned by the bridge; used under its lock."""

    def __init__(self, prefix: str, plugin: str) -> None:
        self.base_name = f"{prefix}.{plugin}" if prefix else plugin
        self.base = logging.getLogger(self.base_name)
        self._loggers: dict[str, logging.Logger] = {}
        self._paths: dict[str, tuple[str, str]] = {}
        factory = logging.getLogRecordFactory()
        # One real record per plugin is the template: a fresh record copies its __dict__, so it
        # has every attribute this Python's LogRecord (and the host's record factory) defines.
        template = factory(self.base_name, logging.INFO, "", 0, "", (), None)
        self._record_class = type(template)
        self._template = dict(template.__dict__)
        self.overflowed = 0

    def logger_for(self, name: str) -> logging.Logger:
        logger = self._loggers.get(name)
        if logger is None:
            suffix = safe_logger_suffix(name)
            if not suffix:
                logger = self.base
            elif len(self._loggers) >= MAX_LOGGERS_PER_PLUGIN:
                # Each distinct name would live forever in logging's manager: cap it.
                self.overflowed += 1
                return self.base
            else:
                logger = logging.getLogger(f"{self.base_name}.{suffix}")
            self._loggers[name] = logger
        return logger

    def replay(
        self,
        entry: Entry,
        levelno: int,
        stacktrace: str | None,
        otel: Mapping[str, Any],
    ) -> bool:
        """Hand the record to the host's logging; False when no logger level lets it through."""
        logger = self.logger_for(entry.scope)
        if not logger.isEnabledFor(levelno):
            return False
        record = self.make_record(logger.name, entry, levelno, stacktrace, otel)
        logger.handle(record)
        return True

    def make_record(
        self,
        logger_name: str,
        entry: Entry,
        levelno: int,
        stacktrace: str | None,
        otel: Mapping[str, Any],
    ) -> logging.LogRecord:
        record = self._record_class.__new__(self._record_class)
        fields = record.__dict__
        fields.update(self._template)
        attributes = entry.attributes
        path = attributes.get(CODE_FILE_PATH)
        path = path if isinstance(path, str) else ""
        names = self._paths.get(path)
        if names is None:
            filename = os.path.basename(path)
            names = (filename, os.path.splitext(filename)[0])
            if len(self._paths) < 1024:
                self._paths[path] = names
        line = attributes.get(CODE_LINE_NUMBER)
        function = attributes.get(CODE_FUNCTION_NAME)
        thread_id = attributes.get(THREAD_ID)
        thread_name = attributes.get(THREAD_NAME)
        created = entry.time / 1e9
        fields["name"] = logger_name
        fields["msg"] = escape_controls(entry.body)
        fields["args"] = ()
        fields["levelno"] = levelno
        fields["levelname"] = escape_controls(entry.severity_text)
        fields["pathname"] = escape_controls(path)
        fields["filename"] = escape_controls(names[0])
        fields["module"] = escape_controls(names[1])
        fields["lineno"] = line if line.__class__ is int else 0
        fields["funcName"] = escape_controls(function) if isinstance(function, str) else ""
        fields["created"] = created
        fields["msecs"] = int((created - int(created)) * 1000) + 0.0
        fields["relativeCreated"] = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
        fields["thread"] = thread_id if thread_id.__class__ is int else None
        fields["threadName"] = escape_controls(thread_name) if isinstance(thread_name, str) else None
        fields["process"] = otel["runner_pid"]
        fields["processName"] = otel["plugin"]
        fields["exc_info"] = None
        fields["exc_text"] = escape_multiline(stacktrace) if stacktrace else None
        fields["stack_info"] = None
        fields[REPLAY_ATTRIBUTE] = ReplayedRecord(
            plugin=otel["plugin"],
            plugin_version=otel["plugin_version"],
            runner_pid=otel["runner_pid"],
            logger_name=entry.scope,
            seq=entry.seq,
            body=entry.body,
            severity_number=entry.severity_number,
            severity_text=entry.severity_text,
            time_unix_nano=entry.time,
            observed_time_unix_nano=entry.observed_time,
            attributes=attributes,
            trace_id=entry.trace_id.hex() if entry.trace_id else None,
            span_id=entry.span_id.hex() if entry.span_id else None,
            trace_flags=entry.flags,
            resource=otel["resource"],
        )
        return record
