"""OTLP encodings of validated plugin records.

Three ways to the same ``ExportLogsServiceRequest``:

* ``encode_request`` writes the protobuf bytes directly. The SDK's ``encode_logs`` costs
  ~67 µs/record here (``Resource.__hash__`` is a ``json.dumps`` per record, then per-attribute
  Python work); building bytes with cached key/value encodings costs a few µs. The bytes go
  out through the SDK exporter's own transport, retries and configuration (``_export``).
* ``encode_json_line`` writes OTLP/JSON (the ``otlpjsonfile`` receiver's format) for the file
  sink.
* ``_otlp_sdk.SdkRecordBuilder`` builds SDK ``ReadableLogRecord`` objects through the public
  ``Logger.emit`` path: used for exporters that only take SDK records (console, a user's own),
  and by the tests as the reference the fast paths must equal.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any, Final

from otel_plugin_logs.export.model import Entry

__all__ = ["Entry", "ResourceInfo", "encode_json_line", "encode_record", "encode_request"]

# A plugin names an event with ``extra={"event.name": ...}``: the host lifts it into the
# LogRecord's event_name (proto field 12, OTLP/JSON ``eventName``), so runners need nothing new.
EVENT_NAME_ATTRIBUTE: Final = "event.name"
# Deterministic per record (runner stream and sequence): a resend after a host restart has
# the same id, so a gateway or backend can drop the duplicate.
RECORD_UID_ATTRIBUTE: Final = "log.record.uid"


class ResourceInfo:
    """A resource and its encodings, computed once per runner connection."""

    __slots__ = ("attributes", "json", "key", "pb")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self.attributes = dict(attributes)
        self.key = tuple(sorted((k, repr(v)) for k, v in self.attributes.items()))
        self.pb = b"".join(_kv(k, v) for k, v in self.attributes.items())
        self.json = {"attributes": [_json_kv(k, v) for k, v in self.attributes.items()]}


# --- protobuf wire format ---------------------------------------------------------------

_pack_fixed32: Final = struct.Struct("<I").pack
_pack_double: Final = struct.Struct("<d").pack
_pack_tagged_fixed64: Final = struct.Struct("<BQ").pack  # a one-byte tag, then its fixed64


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 negatives are ten-byte two's complement varints
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS: Final = tuple(_varint(n) for n in range(16384))


def _ld(tag: bytes, payload: bytes) -> bytes:
    size = len(payload)
    return tag + (_SMALL_VARINTS[size] if size < 16384 else _varint(size)) + payload


def _any_value(value: Any) -> bytes:
    """Encode the body of an AnyValue (oneof fields are written even when zero)."""
    kind = value.__class__
    if kind is str:
        return _ld(b"\x0a", value.encode("utf-8", "surrogatepass"))
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        return b"\x18" + _varint(value)
    if kind is float:
        return b"\x21" + _pack_double(value)
    if value is None:
        return b""
    if kind is bytes:
        return _ld(b"\x3a", value)
    if isinstance(value, Mapping):
        return _ld(b"\x32", b"".join(_ld(b"\x0a", _kv_body(str(k), v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return _ld(b"\x2a", b"".join(_ld(b"\x0a", _any_value(v)) for v in value))
    return _ld(b"\x0a", str(value).encode("utf-8", "surrogatepass"))


def _kv_body(key: str, value: Any) -> bytes:
    return _ld(b"\x0a", key.encode("utf-8", "surrogatepass")) + _ld(b"\x12", _any_value(value))


def _kv(key: str, value: Any) -> bytes:
    """A KeyValue as a repeated field 1 (Resource.attributes) element."""
    return _ld(b"\x0a", _kv_body(key, value))


_KV_CACHE_LIMIT: Final = 16_384
_kv_cache: dict[tuple[str, type, Any], bytes] = {}


def _attribute(key: str, value: Any) -> bytes:
    """A KeyValue as LogRecord.attributes (field 6), cached for repeated scalar pairs."""
    kind = value.__class__
    if kind is str or kind is int or kind is bool or kind is float:
        cache_key = (key, kind, value)
        encoded = _kv_cache.get(cache_key)
        if encoded is None:
            if len(_kv_cache) >= _KV_CACHE_LIMIT:
                _kv_cache.clear()
            encoded = _ld(b"\x32", _kv_body(key, value))
            # -0.0 equals 0.0 as a key but not as a double: zeros are encoded each time.
            if len(encoded) < 512 and (kind is not float or value):
                _kv_cache[cache_key] = encoded
        return encoded
    return _ld(b"\x32", _kv_body(key, value))


_SEVERITIES: dict[tuple[int, str], bytes] = {}


def _severity(number: int, text: str) -> bytes:
    encoded = _SEVERITIES.get((number, text))
    if encoded is None:
        encoded = (b"\x10" + _varint(number) if number else b"") + (
            _ld(b"\x1a", text.encode("utf-8", "surrogatepass")) if text else b""
        )
        if len(_SEVERITIES) < 1024:
            _SEVERITIES[(number, text)] = encoded
    return encoded


# The KeyValue of a 32-character log.record.uid, up to the value's bytes.
_UID_HEAD: Final = _ld(b"\x32", _kv_body(RECORD_UID_ATTRIBUTE, "0" * 32))[:-32]


def event_name_of(entry: Entry) -> str:
    """The record's event name: the bridge's own, or a plugin's ``extra={"event.name": ...}``."""
    if entry.event_name:
        return entry.event_name
    name = entry.attributes.get(EVENT_NAME_ATTRIBUTE)
    return name if name.__class__ is str else ""


def exported_attributes(entry: Entry) -> Iterable[tuple[str, Any]]:
    """The attributes as exported: a string ``event.name`` is lifted into the event-name field,
    and ``log.record.uid`` is added."""
    attributes: Iterable[tuple[str, Any]] = entry.attributes.items()
    if EVENT_NAME_ATTRIBUTE in entry.attributes and event_name_of(entry):
        attributes = [(k, v) for k, v in entry.attributes.items() if k != EVENT_NAME_ATTRIBUTE]
    if entry.uid:
        attributes = [*attributes, (RECORD_UID_ATTRIBUTE, entry.uid)]
    return attributes


def encode_record(entry: Entry) -> bytes:
    """The record's protobuf LogRecord, tagged as a ScopeLogs.log_records element."""
    attributes = entry.attributes
    event_name = event_name_of(entry) if entry.event_name or EVENT_NAME_ATTRIBUTE in attributes else ""
    items: Iterable[tuple[str, Any]] = attributes.items()
    if event_name and EVENT_NAME_ATTRIBUTE in attributes:
        items = [(k, v) for k, v in items if k != EVENT_NAME_ATTRIBUTE]
    # The pair cache's lookup inline: a call per attribute is a good part of a record's cost.
    get = _kv_cache.get
    try:
        parts = [get((k, v.__class__, v)) or _attribute(k, v) for k, v in items]
    except TypeError:  # a list or map value cannot be a cache key: each pair on its own
        parts = [_attribute(k, v) for k, v in items]
    return _record(entry, parts, event_name)


def encode_record_from(entry: Entry, attribute_parts: list[bytes]) -> bytes:
    """``encode_record`` given each attribute's KeyValue (``attribute_bytes``), in the dict's order."""
    if entry.event_name or EVENT_NAME_ATTRIBUTE in entry.attributes:  # lifted out: encoded from the dict
        return encode_record(entry)
    return _record(entry, attribute_parts, "")


def attribute_bytes(key: str, value: Any) -> bytes:
    """One attribute as a LogRecord.attributes (field 6) KeyValue."""
    return _ld(b"\x32", _kv_body(key, value))


def _record(entry: Entry, attribute_parts: list[bytes], event_name: str) -> bytes:
    body = entry.body
    if body.__class__ is str:
        data = body.encode("utf-8", "surrogatepass")
        size = len(data)
        if size < 126:  # the usual short body: its two lengths are one byte each
            value = b"\x2a" + _SMALL_VARINTS[size + 2] + b"\x0a" + _SMALL_VARINTS[size] + data
        else:
            value = _ld(b"\x2a", _ld(b"\x0a", data))
    else:
        value = _ld(b"\x2a", _any_value(body))
    severity = _SEVERITIES.get((entry.severity_number, entry.severity_text))
    if severity is None:
        severity = _severity(entry.severity_number, entry.severity_text)
    parts = [_pack_tagged_fixed64(0x09, entry.time), severity, value, *attribute_parts]
    uid = entry.uid
    if uid:  # unique per record: kept out of the pair cache; the host's are all 32 characters
        parts.append(
            _UID_HEAD + uid.encode()
            if len(uid) == 32 and uid.isascii()
            else _ld(b"\x32", _kv_body(RECORD_UID_ATTRIBUTE, uid))
        )
    if entry.dropped_attributes:
        parts.append(b"\x38" + _varint(entry.dropped_attributes))
    trace_id = entry.trace_id
    span_id = entry.span_id
    if trace_id and span_id and entry.flags:  # the usual traced record: one concatenation
        parts.append(b"\x45" + _pack_fixed32(entry.flags) + b"\x4a\x10" + trace_id + b"\x52\x08" + span_id)
    else:
        if entry.flags:
            parts.append(b"\x45" + _pack_fixed32(entry.flags))
        if trace_id:
            parts.append(b"\x4a\x10" + trace_id)
        if span_id:
            parts.append(b"\x52\x08" + span_id)
    if entry.observed_time:
        parts.append(_pack_tagged_fixed64(0x59, entry.observed_time))
    if event_name:
        parts.append(_ld(b"\x62", event_name.encode("utf-8", "surrogatepass")))  # field 12
    payload = b"".join(parts)
    size = len(payload)
    return b"\x12" + (_SMALL_VARINTS[size] if size < 16384 else _varint(size)) + payload


def _scope(name: str) -> bytes:
    return _ld(b"\x0a", _ld(b"\x0a", name.encode("utf-8", "surrogatepass")) if name else b"")


def group(items: Iterable[tuple[ResourceInfo, Entry]]) -> dict[ResourceInfo, dict[str, list[Entry]]]:
    """Group by resource, then scope, keeping the order of first appearance and of records."""
    groups: dict[ResourceInfo, dict[str, list[Entry]]] = {}
    last_resource: ResourceInfo | None = None
    last_scope = ""
    bucket: list[Entry] = []
    for resource, entry in items:
        scope = entry.scope
        # Runs of one plugin's records from one logger are the rule: their bucket is at hand.
        if resource is not last_resource or scope != last_scope:
            scopes = groups.get(resource)
            if scopes is None:
                scopes = groups[resource] = {}
            found = scopes.get(scope)
            if found is None:
                found = scopes[scope] = []
            bucket, last_resource, last_scope = found, resource, scope
        bucket.append(entry)
    return groups


def encode_request(items: Iterable[tuple[ResourceInfo, Entry]]) -> bytes:
    """Serialized ``ExportLogsServiceRequest`` for the given records."""
    out = []
    for resource, scopes in group(items).items():
        scope_logs = [
            _ld(b"\x12", _scope(scope) + b"".join([e.encoded or encode_record(e) for e in entries]))
            for scope, entries in scopes.items()
        ]
        out.append(_ld(b"\x0a", _ld(b"\x0a", resource.pb) + b"".join(scope_logs)))
    return b"".join(out)


# --- OTLP/JSON --------------------------------------------------------------------------


def _json_value(value: Any) -> dict[str, Any]:
    kind = value.__class__
    if kind is str:
        return {"stringValue": value}
    if kind is bool:
        return {"boolValue": value}
    if kind is int:
        return {"intValue": str(value)}
    if kind is float:
        # proto3 JSON spells non-finite doubles as strings; bare Infinity is not JSON.
        return {
            "doubleValue": value
            if math.isfinite(value)
            else repr(value).replace("inf", "Infinity").replace("nan", "NaN")
        }
    if value is None:
        return {}
    if kind is bytes:
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": [_json_kv(str(k), v) for k, v in value.items()]}}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_json_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _json_kv(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": _json_value(value)}


def _json_record(entry: Entry) -> dict[str, Any]:
    record: dict[str, Any] = {
        "timeUnixNano": str(entry.time),
        "observedTimeUnixNano": str(entry.observed_time),
        "severityNumber": entry.severity_number,
        "severityText": entry.severity_text,
        "body": _json_value(entry.body),
        "attributes": [_json_kv(k, v) for k, v in exported_attributes(entry)],
    }
    event_name = event_name_of(entry)
    if event_name:
        record["eventName"] = event_name
    if entry.dropped_attributes:
        record["droppedAttributesCount"] = entry.dropped_attributes
    if entry.flags:
        record["flags"] = entry.flags
    if entry.trace_id:
        record["traceId"] = entry.trace_id.hex()
    if entry.span_id:
        record["spanId"] = entry.span_id.hex()
    return record


def encode_json_line(items: Iterable[tuple[ResourceInfo, Entry]]) -> str:
    """One line of OTLP/JSON: an ``ExportLogsServiceRequest`` as the otlpjsonfile receiver reads it."""
    resource_logs = []
    for resource, scopes in group(items).items():
        resource_logs.append(
            {
                "resource": resource.json,
                "scopeLogs": [
                    {"scope": {"name": scope}, "logRecords": [_json_record(e) for e in entries]}
                    for scope, entries in scopes.items()
                ],
            }
        )
    return json.dumps({"resourceLogs": resource_logs}, ensure_ascii=False, separators=(",", ":"))


def json_line_to_request(line: str) -> Any:
    """Parse an OTLP/JSON line into an ``ExportLogsServiceRequest``.

    OTLP/JSON writes trace and span ids as hex where protobuf's JSON mapping expects base64,
    so they are converted before the standard parser runs.
    """
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )

    data = json.loads(line)
    for resource_logs in data.get("resourceLogs", []):
        for scope_logs in resource_logs.get("scopeLogs", []):
            for record in scope_logs.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64encode(bytes.fromhex(record[key])).decode("ascii")
    return json_format.ParseDict(data, ExportLogsServiceRequest())
