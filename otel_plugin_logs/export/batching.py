"""Export requests cut by their encoded size, and what to do with a request refused as too large.

Collectors refuse a request above a size (gRPC's default 4 MiB, answered OUT_OF_RANGE or
RESOURCE_EXHAUSTED; HTTP 413). The queue's byte bound counts memory, which says little about
the encoded size (a CJK character is 2 bytes in memory and 3 in UTF-8), so batches are cut by
each record's protobuf size instead: exact for a record encoded already (``Entry.encoded``, when
the sink sends protobuf), else an upper bound; each resource and scope wrapper is counted once
per request, bounded (``RequestSize``). A record that alone exceeds a request
is cut down (body truncated with a marker and its original size, then attributes dropped and
counted) rather than sent whole; a request refused anyway is split in halves, and a single
record refused is cut down once more, then dropped and counted: never retried forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from otel_plugin_logs.export.model import Entry, new_entry
from otel_plugin_logs.export.otlp import RECORD_UID_ATTRIBUTE, ResourceInfo
from otel_plugin_logs.wire.records import BODY_ORIGINAL_BYTES, truncate_utf8

# Per-record fields besides body and attributes: two timestamps, severity, ids, flags, tags.
_RECORD_OVERHEAD_BYTES: Final = 96
_UID_KEY_BYTES: Final = len(RECORD_UID_ATTRIBUTE)
_FIELD_OVERHEAD_BYTES: Final = 12  # tag and length varints of one key/value pair, at most
_GROUP_OVERHEAD_BYTES: Final = 32  # a ResourceLogs or ScopeLogs wrapper's tags and lengths
# A ScopeLogs wrapper around its records: three tags and three length varints (5 bytes at most).
_SCOPE_GROUP_BYTES: Final = 18
_MIN_RECORD_BYTES: Final = 1024
# Error codes (as the sinks report them) meaning "this request is too big", not "try later".
_TOO_LARGE_PREFIXES: Final = ("RESOURCE_EXHAUSTED",)
_TOO_LARGE_WORDS: Final = ("larger than", "too large", "too big", "exceeds")


def _text_bytes(text: str) -> int:
    # An upper bound without encoding: 4 bytes per code point fits any UTF-8.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def value_bytes(value: Any) -> int:
    """An upper bound of an attribute value's protobuf encoding (an AnyValue)."""
    kind = value.__class__
    if kind is str:
        return _text_bytes(value) + _FIELD_OVERHEAD_BYTES
    if kind is bytes:
        return len(value) + _FIELD_OVERHEAD_BYTES
    if isinstance(value, Mapping):
        return _FIELD_OVERHEAD_BYTES + sum(
            _text_bytes(str(k)) + value_bytes(v) + _FIELD_OVERHEAD_BYTES for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return _FIELD_OVERHEAD_BYTES + sum(value_bytes(v) + _FIELD_OVERHEAD_BYTES for v in value)
    if kind is int or kind is float or kind is bool or value is None:
        return _FIELD_OVERHEAD_BYTES
    return _text_bytes(str(value)) + _FIELD_OVERHEAD_BYTES


def encoded_bytes(entry: Entry) -> int:
    """The record's size inside an OTLP protobuf request: exact once encoded, else an upper bound."""
    if entry.encoded:
        return len(entry.encoded)
    body = entry.body
    size = _RECORD_OVERHEAD_BYTES + _text_bytes(entry.severity_text) + _text_bytes(entry.scope)
    size += _text_bytes(body) if body.__class__ is str else value_bytes(body)
    # The encoder adds these two beside the attributes; uncounted, a record could exceed its bound.
    if entry.uid:
        size += _UID_KEY_BYTES + _text_bytes(entry.uid) + 2 * _FIELD_OVERHEAD_BYTES
    if entry.event_name:
        size += _text_bytes(entry.event_name) + _FIELD_OVERHEAD_BYTES
    # value_bytes' count, its common cases inline: a call per attribute is most of the cost.
    for key, value in entry.attributes.items():
        size += (len(key) if key.isascii() else _text_bytes(key)) + _FIELD_OVERHEAD_BYTES
        kind = value.__class__
        if kind is str and value.isascii():
            size += len(value) + _FIELD_OVERHEAD_BYTES
        elif kind is int or kind is float or kind is bool:
            size += _FIELD_OVERHEAD_BYTES
        else:
            size += value_bytes(value)
    return size


def resource_bytes(resource: ResourceInfo) -> int:
    """What a resource adds to a request, once per request it appears in."""
    return len(resource.pb) + _GROUP_OVERHEAD_BYTES


class RequestSize:
    """The size of a request being filled, record by record: each record's ``encoded_bytes``, and
    each resource's and each of its scopes' wrappers the first time they appear."""

    __slots__ = ("_scopes", "total_bytes")

    def __init__(self) -> None:
        self._scopes: dict[ResourceInfo, set[str]] = {}
        self.total_bytes = 0

    def cost(self, resource: ResourceInfo, entry: Entry) -> int:
        """What adding the record would add to the request."""
        encoded = entry.encoded
        size = len(encoded) if encoded else encoded_bytes(entry)
        scopes = self._scopes.get(resource)
        if scopes is None:
            return size + resource_bytes(resource) + _text_bytes(entry.scope) + _SCOPE_GROUP_BYTES
        if entry.scope not in scopes:
            return size + _text_bytes(entry.scope) + _SCOPE_GROUP_BYTES
        return size

    def add(self, resource: ResourceInfo, entry: Entry, cost: int) -> None:
        """Count the record in, at the ``cost`` it was given."""
        scopes = self._scopes.get(resource)
        if scopes is None:
            scopes = self._scopes[resource] = set()
        scopes.add(entry.scope)
        self.total_bytes += cost


def fit_record(entry: Entry, max_bytes: int) -> Entry:
    """A copy of ``entry`` whose encoding fits ``max_bytes``: attributes dropped, body cut with a marker."""
    max_bytes = max(_MIN_RECORD_BYTES, max_bytes)
    if encoded_bytes(entry) <= max_bytes:
        return entry
    attributes = dict(entry.attributes)
    dropped = entry.dropped_attributes
    # Attributes keep at most half the room; the largest go first (counted as dropped).
    for key in sorted(attributes, key=lambda k: value_bytes(attributes[k]), reverse=True):
        if _attributes_bytes(attributes) <= max_bytes // 2:
            break
        del attributes[key]
        dropped += 1
    body = entry.body if isinstance(entry.body, str) else str(entry.body)
    room = max_bytes - encoded_bytes(_with(entry, "", attributes)) - _FIELD_OVERHEAD_BYTES * 4
    if BODY_ORIGINAL_BYTES not in attributes:  # the cut adds it: its room too
        room -= len(BODY_ORIGINAL_BYTES) + 2 * _FIELD_OVERHEAD_BYTES
    cut, original_bytes = truncate_utf8(body, max(0, room))
    if original_bytes:
        attributes.setdefault(BODY_ORIGINAL_BYTES, original_bytes)
    return _with(entry, cut, attributes, dropped)


def _attributes_bytes(attributes: Mapping[str, Any]) -> int:
    return sum(_text_bytes(k) + value_bytes(v) + _FIELD_OVERHEAD_BYTES for k, v in attributes.items())


def _with(entry: Entry, body: str, attributes: dict[str, Any], dropped: int | None = None) -> Entry:
    copy = new_entry(
        seq=entry.seq,
        time=entry.time,
        observed_time=entry.observed_time,
        severity_number=entry.severity_number,
        severity_text=entry.severity_text,
        body=body,
        scope=entry.scope,
        attributes=attributes,
        trace_id=entry.trace_id,
        span_id=entry.span_id,
        flags=entry.flags,
        dropped_attributes=entry.dropped_attributes if dropped is None else dropped,
        event_name=entry.event_name,
    )
    copy.uid = entry.uid  # the cut record is the same record: a resend must stay recognisable
    return copy


def refused_as_too_large(error: str) -> bool:
    """Whether an export error (as the sinks word it) says the request was too large."""
    if error.startswith(("HTTP 413", "OUT_OF_RANGE")):  # OTLP uses OUT_OF_RANGE for nothing else
        return True
    return error.startswith(_TOO_LARGE_PREFIXES) and any(word in error for word in _TOO_LARGE_WORDS)
