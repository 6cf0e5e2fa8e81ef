"""The host's core record type.

``Entry`` is one validated plugin record, built by the host (``host.entries.build_entry``),
replayed, queued and encoded. Its memory is what the export queue's byte bound counts: the
builder computes it once, while it already holds each value, so no stage walks the record again.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Final

# The Entry object itself, its ints and the ids: what a record holds besides body and attributes.
ENTRY_OVERHEAD_BYTES: Final = 400
_getsizeof: Final = sys.getsizeof
_ASCII_STR_BYTES: Final = sys.getsizeof("")  # an ASCII str is this plus its length


class Entry:
    """One validated plugin record, ready to export. Built by the host, never by a runner.

    Build it with keywords: ``Entry(seq=..., time=..., ...)``, or ``new_entry(...)`` on the hot
    path; the positional order is kept for older callers. ``memory_bytes`` is the record's
    memory as ``measured_memory_bytes`` counts it: given by a builder that computed it, else
    computed on first use. ``encoded`` is the record's OTLP protobuf (a ScopeLogs.log_records
    element), written once by a host whose sink sends protobuf (b"" otherwise); its bytes are
    part of ``memory_bytes``.
    """

    __slots__ = (
        "attributes",
        "body",
        "dropped_attributes",
        "encoded",
        "event_name",
        "flags",
        "memory_bytes",
        "observed_time",
        "scope",
        "seq",
        "severity_number",
        "severity_text",
        "span_id",
        "time",
        "trace_id",
        "uid",
    )

    def __init__(
        self,
        seq: int,
        time: int,
        observed_time: int,
        severity_number: int,
        severity_text: str,
        body: str,
        scope: str,
        attributes: dict[str, Any],
        trace_id: bytes | None,
        span_id: bytes | None,
        flags: int,
        dropped_attributes: int = 0,
        event_name: str = "",
        *,
        memory_bytes: int = 0,
    ) -> None:
        self.seq = seq
        self.time = time
        self.observed_time = observed_time
        self.severity_number = severity_number
        self.severity_text = severity_text
        self.body = body
        self.scope = scope
        self.attributes = attributes
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.dropped_attributes = dropped_attributes
        self.event_name = event_name
        self.memory_bytes = memory_bytes
        self.uid = ""  # log.record.uid, set by the host when it enqueues the record for export
        self.encoded = b""

    def size_estimate(self) -> int:
        """Bytes this record holds in memory (what the export queue's byte bound counts)."""
        memory = self.memory_bytes
        if not memory:
            memory = self.memory_bytes = measured_memory_bytes(self.body, self.attributes)
        uid = self.uid
        if not uid:
            return memory
        return memory + (_ASCII_STR_BYTES + len(uid) if uid.isascii() else _getsizeof(uid))


_new: Final = object.__new__


def new_entry(
    *,
    seq: int,
    time: int,
    observed_time: int,
    severity_number: int,
    severity_text: str,
    body: str,
    scope: str,
    attributes: dict[str, Any],
    trace_id: bytes | None,
    span_id: bytes | None,
    flags: int,
    dropped_attributes: int = 0,
    event_name: str = "",
    memory_bytes: int = 0,
) -> Entry:
    """An ``Entry`` from keywords (``built_entry`` by position is the host's hot path)."""
    entry = built_entry(
        seq,
        time,
        observed_time,
        severity_number,
        severity_text,
        body,
        scope,
        attributes,
        trace_id,
        span_id,
        flags,
        dropped_attributes,
        memory_bytes,
    )
    entry.event_name = event_name
    return entry


def built_entry(
    seq: int,
    time: int,
    observed_time: int,
    severity_number: int,
    severity_text: str,
    body: str,
    scope: str,
    attributes: dict[str, Any],
    trace_id: bytes | None,
    span_id: bytes | None,
    flags: int,
    dropped_attributes: int,
    memory_bytes: int,
    /,
) -> Entry:
    """``new_entry`` for the host's builder, by position: binding thirteen keywords is most of
    ``new_entry``'s cost."""
    entry: Entry = _new(Entry)
    entry.seq = seq
    entry.time = time
    entry.observed_time = observed_time
    entry.severity_number = severity_number
    entry.severity_text = severity_text
    entry.body = body
    entry.scope = scope
    entry.attributes = attributes
    entry.trace_id = trace_id
    entry.span_id = span_id
    entry.flags = flags
    entry.dropped_attributes = dropped_attributes
    entry.event_name = ""
    entry.memory_bytes = memory_bytes
    entry.uid = ""
    entry.encoded = b""
    return entry


def measured_memory_bytes(body: Any, attributes: Mapping[str, Any]) -> int:
    """The reference count of a record's memory: every attribute key and value, walked."""
    return ENTRY_OVERHEAD_BYTES + _getsizeof(body) + value_memory_bytes(attributes)


def value_memory_bytes(value: Any) -> int:
    """Memory of an attribute value (already coerced: scalars, str, bytes, lists and maps of them)."""
    kind = value.__class__
    if kind is dict:
        return _getsizeof(value) + sum(_getsizeof(k) + value_memory_bytes(v) for k, v in value.items())
    if kind is list:
        return _getsizeof(value) + sum(value_memory_bytes(v) for v in value)
    return _getsizeof(value)
