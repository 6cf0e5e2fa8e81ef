"""From validated wire records to the host's entries; all of it is input from an untrusted process.

``wire.validate`` has checked shape and types strictly; ``build_entry`` clamps what is
well-typed but unreasonable: timestamps, attribute counts and sizes, nesting, non-UTF-8 text,
ids of the wrong length. The host never raises on a record: it either repairs it (and says so
in an attribute) or rejects it with a reason.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from otel_plugin_logs.conventions import BRIDGE_SCOPE_NAME
from otel_plugin_logs.export.model import Entry, built_entry
from otel_plugin_logs.export.otlp import encode_record, encode_record_from
from otel_plugin_logs.host.attributes import (
    MAX_KEY_LENGTH,
    Limits,
    clean_attributes,
    clean_text,
    entry_memory_bytes,
    put_attribute,
    unchanged_attributes,
)
from otel_plugin_logs.wire.records import (
    BODY_ORIGINAL_BYTES,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    severity_number,
    truncate_utf8,
)
from otel_plugin_logs.wire.validate import Level, Name

__all__ = [  # Limits and clean_text live in host.attributes; the host's modules take them from here
    "LEGACY_ENTRIES",
    "MAX_LEGACY_ENTRIES",
    "ORIGINAL_TIME_ATTRIBUTE",
    "LegacyBatch",
    "LegacyEntry",
    "Limits",
    "build_entry",
    "clean_text",
    "sanitize_counters",
    "validate_legacy_entries",
]

ORIGINAL_TIME_ATTRIBUTE: Final = "otel_plugin_logs.original_time_unix_nano"
_FUTURE_TOLERANCE_NANOS: Final = 3600 * 10**9
_MAX_SCOPE_LENGTH: Final = 256
_MAX_SEVERITY_TEXT: Final = 32
_BYTES_BYTES: Final = sys.getsizeof(b"")  # a bytes object is this plus its length
_ZERO_TRACE_ID: Final = bytes(16)
_ZERO_SPAN_ID: Final = bytes(8)


def build_entry(
    record: Any, limits: Limits, now_ns: int | None = None, *, uid_prefix: str | None = None
) -> tuple[Entry, int, str | None]:
    """A validated wire record → (export entry, stdlib level, exception stack trace or None).

    With ``uid_prefix`` it also gets its uid (the prefix, then ``seq`` in hex) and its encoding.
    """
    (seq, time_ns, observed_ns, sev_number, sev_text, body, logger, raw_attributes) = record[:8]
    trace_id, span_id, flags, exception, levelno = record[8:]
    now = time.time_ns() if now_ns is None else now_ns
    plain = unchanged_attributes(raw_attributes, limits, encoded=uid_prefix is not None)
    attributes, dropped, memory, parts = plain or clean_attributes(raw_attributes, limits)
    if not 0 < observed_ns <= now + _FUTURE_TOLERANCE_NANOS:
        observed_ns = now
    odd_time = not 0 < time_ns <= now + _FUTURE_TOLERANCE_NANOS
    odd_body = not body.isascii() or len(body) > limits.max_body_bytes  # most bodies are short ASCII
    if odd_time or odd_body or exception is not None:
        parts = None  # attributes are added below: the record is encoded from the dict
        if attributes is raw_attributes:  # the wire's dict, taken as it was: not ours to change
            attributes = dict(attributes)
    if odd_time:
        if len(attributes) < limits.max_attribute_count:
            memory += put_attribute(attributes, ORIGINAL_TIME_ATTRIBUTE, _time_value(time_ns))
        time_ns = observed_ns
    if odd_body:
        body, added = _clean_body(body, attributes, limits.max_body_bytes)
        memory += added
    stacktrace = None
    if exception is not None:
        added, stacktrace = _add_exception(attributes, exception, limits.max_attribute_length)
        memory += added
    level = levelno if 0 <= levelno <= 1000 else (0 if levelno < 0 else 1000)
    if sev_number == 0 and level > 0:
        sev_number = severity_number(level)
    usable = sev_text and len(sev_text) <= _MAX_SEVERITY_TEXT and sev_text.isprintable()
    text = sev_text if usable else _level_text(level)
    if trace_id is None or span_id is None or not _valid_ids(trace_id, span_id):
        trace_id = span_id = None  # half a context is none
        flags = 0
    entry = built_entry(
        seq,
        time_ns,
        observed_ns,
        sev_number,
        text,
        body,
        _scope(logger),
        attributes,
        trace_id,
        span_id,
        flags & 0xFF,
        dropped,
        entry_memory_bytes(body, attributes, memory),
    )
    if uid_prefix is not None:
        # f"{seq:016x}", at a third of the cost (a runner's sequence numbers are positive int64s)
        uid = uid_prefix + (seq.to_bytes(8, "big").hex() if 0 <= seq <= UINT64_MAX else f"{seq:016x}")
        _encode(entry, uid, parts)
    return entry, level, stacktrace


def _valid_ids(trace_id: bytes, span_id: bytes) -> bool:
    """Ids of the right lengths, neither all zeros (W3C: an invalid context)."""
    if len(trace_id) != 16 or len(span_id) != 8:
        return False
    return trace_id != _ZERO_TRACE_ID and span_id != _ZERO_SPAN_ID


def _time_value(time_ns: int) -> int | str:
    """A timestamp as an attribute value: an int64, or its text beyond."""
    return time_ns if INT64_MIN <= time_ns <= INT64_MAX else str(time_ns)


def _clean_body(body: str, attributes: dict[str, Any], max_bytes: int) -> tuple[str, int]:
    """(the body made valid UTF-8 and cut to ``max_bytes``, the memory of the attribute it added)."""
    body = clean_text(body, len(body))
    body, original = truncate_utf8(body, max_bytes)
    if original and BODY_ORIGINAL_BYTES not in attributes:
        return body, put_attribute(attributes, BODY_ORIGINAL_BYTES, original)
    return body, 0


def _scope(logger: str) -> str:
    scope = logger if logger.isascii() and len(logger) <= _MAX_SCOPE_LENGTH else clean_text(logger, 256)
    if scope.startswith(BRIDGE_SCOPE_NAME):  # the bridge's notices: a runner cannot speak as the bridge
        scope = "runner:" + scope
    return scope


def _encode(entry: Entry, uid: str, attribute_parts: list[bytes] | None) -> None:
    """Give ``entry`` its uid and its encoding (from its attributes' KeyValues when known)."""
    entry.uid = uid
    if attribute_parts is None:
        encoded = entry.encoded = encode_record(entry)
    else:
        encoded = entry.encoded = encode_record_from(entry, attribute_parts)
    entry.memory_bytes += _BYTES_BYTES + len(encoded)


def _add_exception(attributes: dict[str, Any], exception: Any, max_length: int) -> tuple[int, str | None]:
    """The exception's attributes added: (the memory they add, the stack trace or None)."""
    kind, message, stack = exception
    memory = 0
    stacktrace = None
    if kind:
        memory += put_attribute(attributes, EXCEPTION_TYPE, clean_text(kind, MAX_KEY_LENGTH))
    if message:
        memory += put_attribute(attributes, EXCEPTION_MESSAGE, clean_text(message, max_length))
    if stack:
        stacktrace = clean_text(stack, max(max_length, 64 * 1024))
        memory += put_attribute(attributes, EXCEPTION_STACKTRACE, stacktrace)
    return memory, stacktrace


def _level_text(levelno: int) -> str:
    import logging

    name = logging.getLevelName(levelno)
    return name if isinstance(name, str) and not name.startswith("Level ") else f"LEVEL{levelno}"


def sanitize_counters(raw: Mapping[str, int]) -> dict[str, int]:
    """Runner-reported drop counters, with reason names reduced to a safe alphabet."""
    out: dict[str, int] = {}
    for reason, count in raw.items():
        safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-.") else "_" for ch in reason)[:64]
        key = safe if safe.startswith("runner_") else f"runner_{safe or 'unknown'}"
        # A runner may claim anything: clamped to an int64 before it meets any arithmetic.
        out[key] = min(INT64_MAX, out.get(key, 0) + max(0, min(int(count), INT64_MAX)))
    return out


# --- the seed runtime's payload: {"entries": [{timestamp_ms, level, logger_name, message, exception_text}]}

MAX_LEGACY_ENTRIES: Final = 10_000
_MAX_LEGACY_TEXT: Final = 8 * 1024 * 1024  # a message or a stack trace: bounded like one frame
_MAX_LEGACY_TIMESTAMP_MS: Final = UINT64_MAX // 1_000_000


class LegacyEntry(BaseModel):
    """One entry of a seed-style ``runner.log_batch`` payload."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    timestamp_ms: Annotated[StrictInt, Field(ge=0, le=_MAX_LEGACY_TIMESTAMP_MS)]
    level: Level | Annotated[StrictStr, Field(min_length=1, max_length=_MAX_SEVERITY_TEXT)]
    logger_name: Name
    message: Annotated[StrictStr, Field(max_length=_MAX_LEGACY_TEXT)]
    exception_text: Annotated[StrictStr, Field(max_length=_MAX_LEGACY_TEXT)] | None = None


class LegacyBatch(BaseModel):
    """The envelope of a seed-style payload; its entries are validated one by one."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    entries: Annotated[list[Any], Field(max_length=MAX_LEGACY_ENTRIES)]


LEGACY_ENTRIES: Final = TypeAdapter(list[LegacyEntry])


def validate_legacy_entries(raw: list[Any]) -> tuple[list[tuple[int, LegacyEntry]], list[str]]:
    """Valid entries with their index, and one reason per invalid entry. Fast when all are valid."""
    try:
        return list(enumerate(LEGACY_ENTRIES.validate_python(raw))), []
    except ValidationError:
        pass
    valid: list[tuple[int, LegacyEntry]] = []
    reasons: list[str] = []
    for index, item in enumerate(raw):
        try:
            valid.append((index, LegacyEntry.model_validate(item)))
        except ValidationError as error:
            detail = error.errors(include_url=False, include_input=False)[0]
            # Only the field: a union's members would add their tags ("level.constrained-int").
            where = "".join(f".{part}" for part in detail.get("loc", ())[:1])
            reasons.append(f"entries.{index}{where}: {detail.get('msg', 'invalid')}")
    return valid, reasons
