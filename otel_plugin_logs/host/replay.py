"""Replay of plugin records into the host's stdlib logging.

A record arrives as data; it leaves as a fresh ``logging.LogRecord`` on
``<prefix>.<plugin>.<original logger>`` built from an allowlist of fields. Never
``makeLogRecord(dict)`` (it would let a runner set ``getMessage`` or ``levelno``), never ``%``
applied to remote data (``args`` is always empty), and control characters in the message and
names are escaped so that one record stays one line in any text handler: CWE-117.
Downstream handlers find everything else on ``record.otel`` (a ``ReplayedRecord``).
When the only handlers a batch's records would reach take the bridge's entries themselves (the
CLI's console; see ``replay_routes``) and nothing else could see a record, no record is built.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from otel_plugin_logs.config.text import escape_controls
from otel_plugin_logs.export.otlp import Entry
from otel_plugin_logs.host.replay_routes import (
    BuiltRecord,
    FieldsHandler,
    ReplayBatch,
    fields_handlers,
    replayed_exc_text,
    would_be_handled,
)
from otel_plugin_logs.wire.records import (
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    THREAD_ID,
    THREAD_NAME,
)

REPLAY_ATTRIBUTE: Final = "otel"
_START_TIME: Final[float] = logging._startTime  # type: ignore[attr-defined]
MAX_LOGGERS_PER_PLUGIN: Final = 512
_log = logging.getLogger("otel_plugin_logs.bridge")
_UNDECIDED: Final = object()
MAX_SITES_PER_PLUGIN: Final = 256


# What a replayed record's fixed fields depend on: logger name, level, severity text, code path,
# line (as the record takes it: a key must not take True or 1.0 for 1) and function; not the
# runner's process or thread, or every runner that came and went would leave its own copies.
# A plain tuple: a NamedTuple costs ten times as much to build, and one is built per record.
_Site = tuple[str, int, str, Any, int, Any]


class ReplayedRecord:
    """What the bridge attaches to a replayed ``LogRecord`` as ``record.otel``.

    ``body`` is the message as the plugin sent it (the record's ``msg`` has control characters
    escaped); ``attributes`` are the record's OTel attributes after validation; ``resource`` is
    the plugin's OTel resource. Ids are lowercase hex, or None outside a span. Read-only by
    convention: one is built per replayed record, so it is a plain slotted class (a frozen
    dataclass costs more than twice as much to build).
    """

    __slots__ = (
        "attributes",
        "body",
        "logger_name",
        "observed_time_unix_nano",
        "plugin",
        "plugin_version",
        "resource",
        "runner_pid",
        "seq",
        "severity_number",
        "severity_text",
        "span_id",
        "time_unix_nano",
        "trace_flags",
        "trace_id",
    )

    def __init__(
        self,
        plugin: str,
        plugin_version: str | None,
        runner_pid: int,
        logger_name: str,
        seq: int,
        body: str,
        severity_number: int,
        severity_text: str,
        time_unix_nano: int,
        observed_time_unix_nano: int,
        attributes: Mapping[str, Any],
        trace_id: str | None,
        span_id: str | None,
        trace_flags: int,
        resource: Mapping[str, Any],
    ) -> None:
        self.plugin = plugin
        self.plugin_version = plugin_version
        self.runner_pid = runner_pid
        self.logger_name = logger_name
        self.seq = seq
        self.body = body
        self.severity_number = severity_number
        self.severity_text = severity_text
        self.time_unix_nano = time_unix_nano
        self.observed_time_unix_nano = observed_time_unix_nano
        self.attributes = attributes
        self.trace_id = trace_id
        self.span_id = span_id
        self.trace_flags = trace_flags
        self.resource = resource

    def __repr__(self) -> str:
        return (
            f"ReplayedRecord(plugin={self.plugin!r}, logger_name={self.logger_name!r}, seq={self.seq}, "
            f"severity_text={self.severity_text!r}, body={self.body[:60]!r}, trace_id={self.trace_id!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReplayedRecord):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


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
        self._paths: dict[Any, tuple[str, str, str]] = {}
        self._names: dict[str, str] = {}
        self._sites: dict[_Site, dict[str, Any]] = {}
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
        """Hand the record to the host's logging; False when no logger level lets it through, or
        when no handler would take it (then no ``LogRecord`` is built at all)."""
        logger = self.target(entry.scope, levelno)
        if logger is None:
            return False
        logger.handle(self.make_record(logger.name, entry, levelno, stacktrace, otel))
        return True

    def target(self, scope: str, levelno: int) -> logging.Logger | None:
        """The logger a record of ``scope`` at ``levelno`` is replayed on; None when no logger level
        lets it through or no handler would take it."""
        logger = self.logger_for(scope)
        if not logger.isEnabledFor(levelno) or not would_be_handled(logger, levelno):
            return None
        return logger

    def replay_all(self, built: Iterable[BuiltRecord], otel: Mapping[str, Any]) -> int:
        """``replay`` of a batch's records; how many were handed to logging. Where each (logger,
        level) goes is decided once per batch, not once per record; runs of records that go only
        to handlers taking replayed fields reach them as one ``ReplayBatch``, no ``LogRecord``."""
        routes: dict[tuple[str, int], Any] = {}
        replayed = 0
        run: list[BuiltRecord] = []  # records for the handlers in run_handlers, not yet given
        run_handlers: tuple[FieldsHandler, ...] = ()
        for record in built:
            entry, levelno, stacktrace = record
            key = (entry.scope, levelno)
            try:
                route = routes.get(key, _UNDECIDED)
                if route is _UNDECIDED:
                    route = routes[key] = self._route(entry.scope, levelno)
                if route is None:
                    continue
                if route.__class__ is tuple:
                    if route != run_handlers:
                        replayed += self._give(run, run_handlers, otel)
                        run, run_handlers = [], route
                    run.append(record)
                    continue
                if run:  # in the order sent: the run so far goes before this record
                    replayed += self._give(run, run_handlers, otel)
                    run = []
                route.handle(self.make_record(route.name, entry, levelno, stacktrace, otel))
                replayed += 1
            except Exception:
                # A host handler failed; logging's own handleError already reported it
                # for handler errors, so this is a bug in a filter or in ours.
                _log.debug("replay failed", exc_info=True)
        return replayed + self._give(run, run_handlers, otel)

    def _route(self, scope: str, levelno: int) -> logging.Logger | tuple[FieldsHandler, ...] | None:
        """None (no one takes it), the handlers taking replayed fields, or the logger to hand a
        ``LogRecord`` to."""
        logger = self.target(scope, levelno)
        if logger is None:
            return None
        handlers = fields_handlers(logger, levelno)
        return handlers if handlers is not None else logger

    def _give(
        self, run: list[BuiltRecord], handlers: tuple[FieldsHandler, ...], otel: Mapping[str, Any]
    ) -> int:
        if not run:
            return 0
        batch = ReplayBatch(run, otel, self._record_for(otel))
        for handler in handlers:
            try:
                handler.handle_replayed(batch)
            except Exception:
                _log.debug("replay failed", exc_info=True)
        return len(run)

    def _record_for(self, otel: Mapping[str, Any]) -> Callable[[Entry, int, str | None], logging.LogRecord]:
        def record_for(entry: Entry, levelno: int, stacktrace: str | None) -> logging.LogRecord:
            return self.make_record(self.logger_for(entry.scope).name, entry, levelno, stacktrace, otel)

        return record_for

    def _path_names(self, path: Any) -> tuple[str, str, str]:
        text = path if isinstance(path, str) else ""
        filename = os.path.basename(text)
        module = os.path.splitext(filename)[0]
        names = (escape_controls(text), escape_controls(filename), escape_controls(module))
        if len(self._paths) < 1024:
            self._paths[path if isinstance(path, str) else ""] = names
        return names

    def _escaped(self, value: Any) -> str | None:
        """Short, repeating names (levels, functions, threads), escaped once each."""
        if not isinstance(value, str):
            return None
        escaped = self._names.get(value)
        if escaped is None:
            escaped = escape_controls(value)
            if len(self._names) < 4096:
                self._names[value] = escaped
        return escaped

    def make_record(
        self,
        logger_name: str,
        entry: Entry,
        levelno: int,
        stacktrace: str | None,
        otel: Mapping[str, Any],
    ) -> logging.LogRecord:
        attributes = entry.attributes
        get = attributes.get
        pid = otel["runner_pid"]
        line = get(CODE_LINE_NUMBER)
        site: _Site = (
            logger_name,
            levelno,
            entry.severity_text,
            get(CODE_FILE_PATH),
            line if line.__class__ is int else 0,
            get(CODE_FUNCTION_NAME),
        )
        try:
            fixed = self._sites.get(site)
        except TypeError:  # a list or map where a name was expected: not cached
            fixed = None
        if fixed is None:
            fixed = self._site_fields(site)
        record = self._record_class.__new__(self._record_class)
        fields = record.__dict__
        fields.update(fixed)
        thread_id = get(THREAD_ID)
        fields["thread"] = thread_id if thread_id.__class__ is int else None
        fields["threadName"] = self._escaped(get(THREAD_NAME))
        fields["process"] = pid
        fields["processName"] = plugin = otel["plugin"]
        body = entry.body
        created = entry.time / 1e9
        fields["msg"] = body if body.isprintable() else escape_controls(body)
        fields["created"] = created
        fields["msecs"] = int((created - int(created)) * 1000) + 0.0
        fields["relativeCreated"] = (created - _START_TIME) * 1000
        if stacktrace:
            fields["exc_text"] = replayed_exc_text(stacktrace)
        fields[REPLAY_ATTRIBUTE] = ReplayedRecord(
            plugin,
            otel["plugin_version"],
            pid,
            entry.scope,
            entry.seq,
            body,
            entry.severity_number,
            entry.severity_text,
            entry.time,
            entry.observed_time,
            attributes,
            entry.trace_id.hex() if entry.trace_id else None,
            entry.span_id.hex() if entry.span_id else None,
            entry.flags,
            otel["resource"],
        )
        return record

    def _site_fields(self, site: _Site) -> dict[str, Any]:
        """The fields of a LogRecord that a call site fixes (logger, level, code path and function),
        escaped once per site: a fresh record copies them and adds the rest."""
        logger_name, levelno, severity_text, path, line, function = site
        fields = dict(self._template)
        names = self._paths.get(path) if path.__class__ is str else None
        if names is None:
            names = self._path_names(path)
        fields.update(
            {
                "name": logger_name,
                "args": (),
                "levelno": levelno,
                "levelname": self._escaped(severity_text),
                "pathname": names[0],
                "filename": names[1],
                "module": names[2],
                "lineno": line,
                "funcName": self._escaped(function) or "",
                "exc_info": None,
                "exc_text": None,
                "stack_info": None,
            }
        )
        try:
            if len(self._sites) >= MAX_SITES_PER_PLUGIN:
                self._sites.clear()
            self._sites[site] = fields
        except TypeError:  # unhashable: built again next time
            pass
        return fields
