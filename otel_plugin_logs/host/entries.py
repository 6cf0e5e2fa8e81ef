"""From validated wire records to the host's entries; all of it is input from an untrusted process.

``wire.validate`` has checked shape and types strictly; ``build_entry`` clamps what is
well-typed but unreasonable: timestamps, attribute counts and sizes, nesting, non-UTF-8 text,
ids of the wrong length. The host never raises on a record: it either repairs it (and says so
in an attribute) or rejects it with a reason.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
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
from otel_plugin_logs.export.model import ENTRY_OVERHEAD_BYTES, Entry, built_entry, value_memory_bytes
from otel_plugin_logs.export.otlp import attribute_bytes, encode_record, encode_record_from
from otel_plugin_logs.wire.records import (
    BODY_ORIGINAL_BYTES,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    coerce_value,
    severity_number,
    truncate_utf8,
)
from otel_plugin_logs.wire.validate import Level, Name

ORIGINAL_TIME_ATTRIBUTE: Final = "otel_plugin_logs.original_time_unix_nano"
_FUTURE_TOLERANCE_NANOS: Final = 3600 * 10**9
_MAX_KEY_LENGTH: Final = 256
_MAX_SCOPE_LENGTH: Final = 256
_MAX_SEVERITY_TEXT: Final = 32
_getsizeof: Final = sys.getsizeof
# What sys.getsizeof says of scalars on this interpreter, measured once.
_ASCII_STR_BYTES: Final = sys.getsizeof("")
_SMALL_INT: Final = 2**30  # one 30-bit digit
_SMALL_INT_BYTES: Final = sys.getsizeof(1)
_BOOL_BYTES: Final = sys.getsizeof(True)
_FLOAT_BYTES: Final = sys.getsizeof(0.5)
_BYTES_BYTES: Final = sys.getsizeof(b"")  # a bytes object is this plus its length
_ZERO_TRACE_ID: Final = bytes(16)
_ZERO_SPAN_ID: Final = bytes(8)
# The clean-pair cache's bound: a few MiB at most, far more pairs than a plugin's call sites repeat.
_CLEAN_PAIRS_LIMIT: Final = 4096
_MAX_CACHED_PAIR_BYTES: Final = 512


# A dict filled by insertion alone (as the attributes are) has a size set by its length.
def _inserted(count: int) -> dict[str, int]:
    filled: dict[str, int] = {}
    for n in range(count):
        filled[str(n)] = n
    return filled


_DICT_BYTES: Final = tuple(sys.getsizeof(_inserted(n)) for n in range(160))
# Far below any real count: a sum that includes it stays negative, "recount".
_REPLACED: Final = -(2**62)


def clean_text(value: str, max_length: int) -> str:
    """Text safe to carry on: lone surrogates (non-UTF-8 input) replaced, length capped."""
    if len(value) > max_length:
        value = value[:max_length]
    if value.isascii():  # O(1) in CPython: most text needs no check at all
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


@dataclass(frozen=True, slots=True)
class CleanPair:
    """An attribute found clean under one ``Limits``: its KeyValue and what its key and value hold."""

    encoded: bytes  # as LogRecord.attributes (field 6)
    memory_bytes: int  # sys.getsizeof of the key plus that of the value


class Limits:
    """The per-record caps the host enforces, from its config and the OTel attribute limits.

    Fixed once made: ``clean_pairs`` remembers the pairs found clean under these caps.
    """

    __slots__ = ("clean_pairs", "max_attribute_count", "max_attribute_length", "max_body_bytes")

    def __init__(self, max_body_bytes: int, max_attribute_length: int, max_attribute_count: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.max_attribute_length = max_attribute_length
        self.max_attribute_count = max_attribute_count
        # (key, value's class, value) → the pair checked and encoded: most records repeat their
        # attributes (code location, thread, a few extras), so most pairs are checked only once.
        self.clean_pairs: dict[tuple[str, type, Any], CleanPair] = {}


def _clean_value(value: Any, max_length: int) -> Any:
    coerced = coerce_value(value, max_length)
    if coerced.__class__ is str:
        return clean_text(coerced, max_length + 16)
    if isinstance(coerced, dict | list):
        return _clean_nested(coerced, max_length)
    return coerced


def _clean_nested(value: Any, max_length: int) -> Any:
    if isinstance(value, dict):
        # Empty keys are invalid attribute keys (the SDK drops them); keep the value under "_".
        return {
            (clean_text(k, _MAX_KEY_LENGTH) or "_"): _clean_nested(v, max_length) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_clean_nested(v, max_length) for v in value]
    if value.__class__ is str:
        return clean_text(value, max_length + 16)
    return value


def build_entry(
    record: Any, limits: Limits, now_ns: int | None = None, *, uid_prefix: str | None = None
) -> tuple[Entry, int, str | None]:
    """A validated wire record → (export entry, stdlib level, exception stack trace or None).

    With ``uid_prefix`` the entry also gets its ``log.record.uid`` (the prefix, then its sequence
    number in hex) and its protobuf encoding, ``Entry.encoded``, counted in its memory.
    """
    (seq, time_ns, observed_ns, sev_number, sev_text, body, logger, raw_attributes) = record[:8]
    trace_id, span_id, flags, exception, levelno = record[8:]
    now = time.time_ns() if now_ns is None else now_ns
    plain = (
        _plain_attributes(raw_attributes, limits)
        if len(raw_attributes) <= limits.max_attribute_count
        else None
    )
    attributes, dropped, memory, parts = plain or _clean_attributes(raw_attributes, limits)
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
            memory += _put(
                attributes,
                ORIGINAL_TIME_ATTRIBUTE,
                time_ns if INT64_MIN <= time_ns <= INT64_MAX else str(time_ns),
            )
        time_ns = observed_ns
    if odd_body:
        body = clean_text(body, len(body))
        body, original = truncate_utf8(body, limits.max_body_bytes)
        if original and BODY_ORIGINAL_BYTES not in attributes:
            memory += _put(attributes, BODY_ORIGINAL_BYTES, original)
    stacktrace = None
    if exception is not None:
        added, stacktrace = _add_exception(attributes, exception, limits.max_attribute_length)
        memory += added
    level = levelno if 0 <= levelno <= 1000 else (0 if levelno < 0 else 1000)
    if sev_number == 0 and level > 0:
        sev_number = severity_number(level)
    text = sev_text if sev_text and len(sev_text) <= _MAX_SEVERITY_TEXT and sev_text.isprintable() else ""
    if not text:
        text = _level_text(level)
    if trace_id is not None and (len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID):
        trace_id = None
    if span_id is not None and (len(span_id) != 8 or span_id == _ZERO_SPAN_ID):
        span_id = None
    if trace_id is None or span_id is None:
        trace_id = span_id = None
        flags = 0
    scope = logger if logger.isascii() and len(logger) <= _MAX_SCOPE_LENGTH else clean_text(logger, 256)
    if scope.startswith(BRIDGE_SCOPE_NAME):  # the bridge's notices: a runner cannot speak as the bridge
        scope = "runner:" + scope
    entry = built_entry(
        seq,
        time_ns,
        observed_ns,
        sev_number,
        text,
        body,
        scope,
        attributes,
        trace_id,
        span_id,
        flags & 0xFF,
        dropped,
        _memory_bytes(body, attributes, memory),
    )
    if uid_prefix is not None:
        # f"{seq:016x}", at a third of the cost (a runner's sequence numbers are positive int64s)
        uid = uid_prefix + (seq.to_bytes(8, "big").hex() if 0 <= seq <= UINT64_MAX else f"{seq:016x}")
        _encode(entry, uid, parts)
    return entry, level, stacktrace


def _encode(entry: Entry, uid: str, attribute_parts: list[bytes] | None) -> None:
    """Give ``entry`` its uid and its encoding (from its attributes' KeyValues when known)."""
    entry.uid = uid
    if attribute_parts is None:
        encoded = entry.encoded = encode_record(entry)
    else:
        encoded = entry.encoded = encode_record_from(entry, attribute_parts)
    entry.memory_bytes += _BYTES_BYTES + len(encoded)


def _memory_bytes(body: str, attributes: dict[str, Any], summed: int) -> int:
    """The entry's memory, given what its attributes' keys and values sum to (negative: recount)."""
    if summed < 0:  # a key was written twice: count what is there
        summed = value_memory_bytes(attributes)
    else:
        size = len(attributes)
        summed += _DICT_BYTES[size] if size < len(_DICT_BYTES) else _getsizeof(attributes)
    return (
        ENTRY_OVERHEAD_BYTES + (_ASCII_STR_BYTES + len(body) if body.isascii() else _getsizeof(body)) + summed
    )


def _add_exception(attributes: dict[str, Any], exception: Any, max_length: int) -> tuple[int, str | None]:
    """The exception's attributes added: (the memory they add, the stack trace or None)."""
    kind, message, stack = exception
    memory = 0
    stacktrace = None
    if kind:
        memory += _put(attributes, EXCEPTION_TYPE, clean_text(kind, _MAX_KEY_LENGTH))
    if message:
        memory += _put(attributes, EXCEPTION_MESSAGE, clean_text(message, max_length))
    if stack:
        stacktrace = clean_text(stack, max(max_length, 64 * 1024))
        memory += _put(attributes, EXCEPTION_STACKTRACE, stacktrace)
    return memory, stacktrace


def _put(attributes: dict[str, Any], key: str, value: Any) -> int:
    """Set an attribute; the memory it adds, or a large negative count when it replaced one."""
    replaced = key in attributes
    attributes[key] = value
    return _REPLACED if replaced else _getsizeof(key) + value_memory_bytes(value)


def _clean_attributes(
    raw: Mapping[str, Any], limits: Limits
) -> tuple[dict[str, Any], int, int, list[bytes] | None]:
    """(attributes within the limits, how many were dropped, the memory of their keys and values,
    each pair's KeyValue or None).

    The memory is ``value_memory_bytes``'s count, summed here while each value is at hand; it
    is negative when two keys were cleaned to one name (the caller then counts the result).
    """
    if len(raw) <= limits.max_attribute_count:
        plain = _plain_attributes(raw, limits)
        if plain is not None:
            return plain
    attributes, dropped, memory = _cleaned_attributes(raw, limits)
    return attributes, dropped, memory, None


def _plain_attributes(
    raw: Mapping[str, Any], limits: Limits
) -> tuple[dict[str, Any], int, int, list[bytes]] | None:
    """``_clean_attributes``' result when nothing needs cleaning (short ASCII keys, plain scalars),
    from one pass that checks, counts and encodes; None as soon as something needs cleaning.

    A pair in ``limits.clean_pairs`` was checked already: a hit is one lookup. The wire's dict
    is kept as it is (no copy): nothing else holds it.
    """
    pairs = limits.clean_pairs
    get = pairs.get
    memory = 0
    parts = []
    try:
        for key, value in raw.items():
            pair = get((key, value.__class__, value))
            if pair is None:
                pair = _checked_pair(pairs, key, value, limits.max_attribute_length)
                if pair is None:
                    return None
            memory += pair.memory_bytes
            parts.append(pair.encoded)
    except TypeError:  # a list or map value cannot be a cache key: it is not a plain pair
        return None
    return (raw if raw.__class__ is dict else dict(raw)), 0, memory, parts


def _checked_pair(
    pairs: dict[tuple[str, type, Any], CleanPair], key: str, value: Any, max_len: int
) -> CleanPair | None:
    """The pair as ``CleanPair`` when it needs no cleaning (and remembered if small), else None."""
    if not key or len(key) > _MAX_KEY_LENGTH or not key.isascii():
        return None
    kind = value.__class__
    if kind is str:
        if len(value) > max_len or not value.isascii():
            return None
        memory = _ASCII_STR_BYTES + len(value)
    elif kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            return None
        small = value and -_SMALL_INT < value < _SMALL_INT
        memory = _SMALL_INT_BYTES if small else _getsizeof(value)
    elif kind is bool:
        memory = _BOOL_BYTES
    elif kind is float and math.isfinite(value):
        memory = _FLOAT_BYTES
    else:
        return None
    pair = CleanPair(attribute_bytes(key, value), _ASCII_STR_BYTES + len(key) + memory)
    # -0.0 equals 0.0 as a key but not as a double: zeros are checked each time.
    if len(pair.encoded) < _MAX_CACHED_PAIR_BYTES and (kind is not float or value):
        if len(pairs) >= _CLEAN_PAIRS_LIMIT:
            pairs.clear()
        pairs[(key, kind, value)] = pair
    return pair


def _cleaned_attributes(raw: Mapping[str, Any], limits: Limits) -> tuple[dict[str, Any], int, int]:
    """``_clean_attributes`` of any attributes: keys and values cleaned, their count capped."""
    attributes: dict[str, Any] = {}
    dropped = memory = 0
    max_len = limits.max_attribute_length
    budget = limits.max_attribute_count
    for key, value in raw.items():
        if len(attributes) >= budget:
            dropped += 1
            continue
        name = key
        if not key or len(key) > _MAX_KEY_LENGTH:
            name = clean_text(key, _MAX_KEY_LENGTH) or "_"
            if name in attributes:
                memory = _REPLACED
        # sys.getsizeof costs several times a len(): an ASCII str is its length plus a constant.
        memory += _ASCII_STR_BYTES + len(name) if name.isascii() else _getsizeof(name)
        kind = value.__class__
        # Most values are short ASCII strings and plain numbers: they need no cleaning.
        if kind is str:
            if len(value) <= max_len and value.isascii():
                attributes[name] = value
                memory += _ASCII_STR_BYTES + len(value)
                continue
        elif kind is int:
            if INT64_MIN <= value <= INT64_MAX:
                attributes[name] = value
                small = value and -_SMALL_INT < value < _SMALL_INT
                memory += _SMALL_INT_BYTES if small else _getsizeof(value)
                continue
        elif kind is bool:
            attributes[name] = value
            memory += _BOOL_BYTES
            continue
        elif kind is float and math.isfinite(value):
            attributes[name] = value
            memory += _FLOAT_BYTES
            continue
        try:
            cleaned = _clean_value(value, max_len)
        except RecursionError:
            cleaned = "<too deeply nested>"
        attributes[name] = cleaned
        memory += value_memory_bytes(cleaned)
    return attributes, dropped, memory


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
