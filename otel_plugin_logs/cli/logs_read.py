"""Reading the embedded OTLP/JSON file sink, line by line, for ``otel-plugin-logs logs``.

The sink (``FileSink``) appends one ``ExportLogsServiceRequest`` per line and rotates by
renaming: ``plugin-logs.otlp.jsonl`` is the newest, ``.1`` the file before it, ``.N`` the
oldest. Files are read as a stream of lines (never loaded whole): memory is one line, however
big the sink. A line without its newline at the end of a file is one being written (or left
by a killed host); a line that is not OTLP/JSON is skipped. Both are counted, never raised.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

from otel_plugin_logs.conventions import RESOURCE_PLUGIN_NAME

SINK_FILE_NAME: Final = "plugin-logs.otlp.jsonl"  # what FileSink writes in OTEL_PLUGIN_LOGS_FILE_DIR
_READ_CHUNK_BYTES: Final = 1 << 16
MAX_LINE_BYTES: Final = 256 * 1024 * 1024  # requests are at most EXPORT_MAX_BATCH_BYTES (3 MiB) of protobuf
_BACKUP_SUFFIX: Final = re.compile(r"\.([1-9][0-9]{0,5})$")


@dataclass(slots=True)
class ReadCounters:
    """What reading met besides records: said once at the end, never silently skipped."""

    lines: int = 0
    records: int = 0
    corrupt_lines: int = 0
    partial_lines: int = 0
    rotations_followed: int = 0
    first_corrupt: str = ""  # "file:line: why", for the user to look at

    def corrupt(self, path: str, line_number: int, why: str) -> None:
        self.corrupt_lines += 1
        if not self.first_corrupt:
            self.first_corrupt = f"{path}:{line_number}: {why}"


class SinkRecord:
    """One log record of the sink with the resource and scope it was exported under.

    ``attributes`` are decoded from the OTLP/JSON on first use: most records of a big sink are
    only filtered, and decoding their attributes would be a third of the cost of reading them.
    """

    __slots__ = (
        "_attributes",
        "body",
        "plugin",
        "raw",
        "resource",
        "scope",
        "severity_number",
        "severity_text",
        "span_id",
        "time_unix_nano",
        "trace_id",
    )

    def __init__(self, raw: dict[str, Any], plugin: str, scope: str, resource: dict[str, Any]) -> None:
        body = any_value(raw.get("body"))
        self.raw = raw  # the OTLP/JSON logRecord as written
        self.resource = resource  # the OTLP/JSON resource as written
        self.plugin = plugin
        self.scope = scope
        self.time_unix_nano = int(raw.get("timeUnixNano") or raw.get("observedTimeUnixNano") or 0)
        self.severity_number = int(raw.get("severityNumber") or 0)
        self.severity_text = str(raw.get("severityText") or "")
        self.body = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        self.trace_id = str(raw.get("traceId") or "")
        self.span_id = str(raw.get("spanId") or "")
        self._attributes: dict[str, Any] | None = None

    @property
    def attributes(self) -> dict[str, Any]:
        if self._attributes is None:
            self._attributes = key_values(self.raw.get("attributes"))
        return self._attributes

    def __repr__(self) -> str:
        return f"SinkRecord(plugin={self.plugin!r}, scope={self.scope!r}, body={self.body[:60]!r})"


def sink_files(path: str) -> list[str]:
    """The sink's files, oldest first: a directory's sink file, or a file, and its backups."""
    base = os.path.join(path, SINK_FILE_NAME) if os.path.isdir(path) else path
    directory = os.path.dirname(base) or "."
    prefix = os.path.basename(base)
    backups: list[tuple[int, str]] = []
    try:
        names = os.listdir(directory)
    except OSError:
        names = []
    for name in names:
        if name.startswith(prefix):
            match = _BACKUP_SUFFIX.fullmatch(name[len(prefix) :])
            if match:
                backups.append((int(match.group(1)), os.path.join(directory, name)))
    # FileSink shifts .1 to .2 and so on: the highest number is the oldest.
    files = [name for _, name in sorted(backups, reverse=True)]
    if os.path.exists(base):
        files.append(base)
    return files


def any_value(value: Any) -> Any:
    """An OTLP/JSON AnyValue as a Python value (ints were written as strings)."""
    if not isinstance(value, dict) or not value:
        return None
    kind, inner = next(iter(value.items()))
    if kind == "intValue":
        try:
            return int(inner)
        except (TypeError, ValueError):
            return inner
    if kind == "arrayValue":
        return [any_value(v) for v in (inner or {}).get("values", [])]
    if kind == "kvlistValue":
        return key_values((inner or {}).get("values", []))
    return inner


def key_values(pairs: Any) -> dict[str, Any]:
    """OTLP/JSON key-value pairs as a dict; strings, the most of them by far, take a short cut."""
    if not isinstance(pairs, list):
        return {}
    out: dict[str, Any] = {}
    for kv in pairs:
        if kv.__class__ is not dict:
            continue
        value = kv.get("value")
        text = value.get("stringValue") if value.__class__ is dict else None
        out[str(kv.get("key"))] = text if text.__class__ is str else any_value(value)
    return out


def _plugin_of(resource: dict[str, Any]) -> str:
    name = resource.get("service.name") or resource.get(RESOURCE_PLUGIN_NAME) or "unknown"
    return str(name)


def parse_line(line: str | bytes) -> list[SinkRecord]:
    """The records of one sink line; ValueError (with why) when it is not OTLP/JSON logs."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"not JSON ({error})") from None
    groups = request.get("resourceLogs") if isinstance(request, dict) else None
    if not isinstance(groups, list):
        raise ValueError("no resourceLogs")
    out: list[SinkRecord] = []
    try:
        for group in groups:
            resource_json = group.get("resource") or {}
            resource = key_values(resource_json.get("attributes"))
            plugin = _plugin_of(resource)
            for scope_logs in group.get("scopeLogs") or []:
                scope = str((scope_logs.get("scope") or {}).get("name", ""))
                for raw in scope_logs.get("logRecords") or []:
                    out.append(SinkRecord(raw, plugin, scope, resource_json))
    except (AttributeError, TypeError, ValueError) as error:
        raise ValueError(f"not OTLP/JSON logs ({type(error).__name__}: {error})") from None
    return out


class LineReader:
    """Complete lines of one open file, from where it is; a partial last line waits.

    A line longer than ``max_line_bytes`` (no sink writes one: its requests are a few MB) is
    not kept in memory: it comes out as None, and its bytes are skipped up to its newline.
    """

    def __init__(self, path: str, stream: IO[bytes], max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.path = path
        self.stream = stream
        self.max_line_bytes = max_line_bytes
        self.line_number = 0
        self._parts: list[bytes] = []  # the partial line, in the chunks it came in
        self._partial_bytes = 0
        self._skipping = False
        self.identity = _identity(os.fstat(stream.fileno()))

    @classmethod
    def open(cls, path: str) -> LineReader:
        return cls(path, open(path, "rb"))  # closed by close()

    def lines(self) -> Iterator[bytes | None]:
        """Lines available now (None for one too long); stops at the end of the file."""
        while True:
            chunk = self.stream.read(_READ_CHUNK_BYTES)
            if not chunk:
                return
            start = 0
            end = chunk.find(b"\n")
            if end >= 0 and (self._parts or self._skipping):
                self.line_number += 1
                yield None if self._skipping else b"".join((*self._parts, chunk[:end]))
                self._parts, self._partial_bytes, self._skipping = [], 0, False
                start = end + 1
                end = chunk.find(b"\n", start)
            while end >= 0:
                self.line_number += 1
                yield chunk[start:end]
                start = end + 1
                end = chunk.find(b"\n", start)
            rest = chunk[start:]
            if rest and not self._skipping:
                self._parts.append(rest)
                self._partial_bytes += len(rest)
                if self._partial_bytes > self.max_line_bytes:
                    self._parts, self._partial_bytes, self._skipping = [], 0, True

    def has_partial(self) -> bool:
        return self._skipping or any(part.strip() for part in self._parts)

    def replaced(self) -> bool:
        """True when the path now names another file (rotated) or this one shrank (truncated)."""
        try:
            now = os.stat(self.path)
        except OSError:
            return False  # between the rename and the new file: wait for it
        return _identity(now) != self.identity or now.st_size < self.stream.tell()

    def close(self) -> None:
        self.stream.close()


def _identity(status: os.stat_result) -> tuple[int, int]:
    return (status.st_dev, status.st_ino)


LineTest = Callable[[bytes], bool] | None  # False: no record of this raw line can match


def records_of(reader: LineReader, counters: ReadCounters, keep: LineTest = None) -> Iterator[SinkRecord]:
    """The records of the lines the reader has now; corrupt lines are counted and skipped."""
    for line in reader.lines():
        counters.lines += 1
        if line is None:
            counters.corrupt(reader.path, reader.line_number, f"longer than {reader.max_line_bytes:,} bytes")
            continue
        if not line.strip() or (keep is not None and not keep(line)):
            continue
        try:
            records = parse_line(line)
        except ValueError as error:
            counters.corrupt(reader.path, reader.line_number, str(error))
            continue
        counters.records += len(records)
        yield from records


def read_files(files: list[str], counters: ReadCounters, keep: LineTest = None) -> Iterator[SinkRecord]:
    """Every record of these files, in order; a file that vanished (rotated away) is skipped."""
    for path in files:
        try:
            reader = LineReader.open(path)
        except OSError:
            continue
        try:
            yield from records_of(reader, counters, keep)
            if reader.has_partial():
                counters.partial_lines += 1
        finally:
            reader.close()


def follow(
    path: str,
    counters: ReadCounters,
    *,
    start: LineReader | None,
    poll_seconds: float = 0.2,
    keep_going: Callable[[], bool] = lambda: True,
    sleep: Callable[[float], None] = time.sleep,
    keep: LineTest = None,
) -> Iterator[SinkRecord | None]:
    """Records appended to ``path`` from now on, across rotations, while ``keep_going()``.

    None each time there is nothing new (a caller holding records back shows them then).
    """
    reader = start
    while keep_going():
        if reader is None:
            try:
                reader = LineReader.open(path)
            except OSError:
                yield None
                sleep(poll_seconds)  # not created yet, or between a rotation's rename and open
                continue
        got = False
        for record in records_of(reader, counters, keep):
            got = True
            yield record
        if got:
            continue
        if reader.replaced():
            # The old file is complete once renamed (the sink closed it first): drain it, move on.
            yield from records_of(reader, counters, keep)
            if reader.has_partial():
                counters.partial_lines += 1
            reader.close()
            # Several rotations since the last look: the files in between are backups by now.
            yield from read_files(_newer_backups(path, reader.identity), counters, keep)
            reader = None
            counters.rotations_followed += 1
            continue
        yield None
        sleep(poll_seconds)
    if reader is not None:
        reader.close()


def _newer_backups(path: str, identity: tuple[int, int]) -> list[str]:
    """The backups rotated after the file with this identity, oldest first (none if it is gone)."""
    backups = sink_files(path)[:-1] if os.path.exists(path) else sink_files(path)
    for index, name in enumerate(backups):
        try:
            if _identity(os.stat(name)) == identity:
                return backups[index + 1 :]
        except OSError:
            continue
    return []


def in_time_order(records: Iterable[SinkRecord | None], window_nanos: int) -> Iterator[SinkRecord]:
    """Records sorted by time within ``window_nanos``; a None (nothing new) lets out all held.

    The sink holds records in export order: batches of several plugins, each some hundred
    milliseconds behind, interleave. A record is held until one ``window_nanos`` newer is seen.
    """
    held: list[tuple[int, int, SinkRecord]] = []
    order = itertools.count()
    newest = 0
    for record in records:
        if record is None:
            while held:
                yield heapq.heappop(held)[2]
            continue
        heapq.heappush(held, (record.time_unix_nano, next(order), record))
        newest = max(newest, record.time_unix_nano)
        while held and held[0][0] <= newest - window_nanos:
            yield heapq.heappop(held)[2]
    while held:
        yield heapq.heappop(held)[2]
