"""A record's attributes made safe to carry on, with the memory they hold and their encodings.

Part of ``host.entries``' work on untrusted input: keys and values are cleaned (non-UTF-8 text,
over-long text, too many attributes, nesting), their memory counted as ``value_memory_bytes``
would count it (summed while each value is at hand), and, for the usual plain pairs, their
protobuf KeyValue found in a cache per ``Limits``: a pair already found clean is one lookup.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from otel_plugin_logs.export.model import ENTRY_OVERHEAD_BYTES, value_memory_bytes
from otel_plugin_logs.export.otlp import attribute_bytes
from otel_plugin_logs.wire.records import INT64_MAX, INT64_MIN, coerce_value

MAX_KEY_LENGTH: Final = 256
_getsizeof: Final = sys.getsizeof
# What sys.getsizeof says of scalars on this interpreter, measured once.
_ASCII_STR_BYTES: Final = sys.getsizeof("")
_SMALL_INT: Final = 2**30  # one 30-bit digit
_SMALL_INT_BYTES: Final = sys.getsizeof(1)
_BOOL_BYTES: Final = sys.getsizeof(True)
_FLOAT_BYTES: Final = sys.getsizeof(0.5)
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
            (clean_text(k, MAX_KEY_LENGTH) or "_"): _clean_nested(v, max_length) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_clean_nested(v, max_length) for v in value]
    if value.__class__ is str:
        return clean_text(value, max_length + 16)
    return value


def entry_memory_bytes(body: str, attributes: dict[str, Any], summed: int) -> int:
    """The entry's memory, given what its attributes' keys and values sum to (negative: recount)."""
    if summed < 0:  # a key was written twice: count what is there
        summed = value_memory_bytes(attributes)
    else:
        size = len(attributes)
        summed += _DICT_BYTES[size] if size < len(_DICT_BYTES) else _getsizeof(attributes)
    return (
        ENTRY_OVERHEAD_BYTES + (_ASCII_STR_BYTES + len(body) if body.isascii() else _getsizeof(body)) + summed
    )


def put_attribute(attributes: dict[str, Any], key: str, value: Any) -> int:
    """Set an attribute; the memory it adds, or a large negative count when it replaced one."""
    replaced = key in attributes
    attributes[key] = value
    return _REPLACED if replaced else _getsizeof(key) + value_memory_bytes(value)


def clean_attributes(
    raw: Mapping[str, Any], limits: Limits
) -> tuple[dict[str, Any], int, int, list[bytes] | None]:
    """(attributes within the limits, how many were dropped, the memory of their keys and values,
    None: no pair encoded), for attributes ``unchanged_attributes`` found in need of cleaning.

    The memory is ``value_memory_bytes``'s count, summed here while each value is at hand; it
    is negative when two keys were cleaned to one name (the caller then counts the result).
    Nothing is remembered here: a host whose sink does not take protobuf must not fill the pair
    cache, and for one that does the check already failed on this record.
    """
    attributes, dropped, memory = _cleaned_attributes(raw, limits)
    return attributes, dropped, memory, None


def unchanged_attributes(
    raw: Mapping[str, Any], limits: Limits, *, encoded: bool
) -> tuple[dict[str, Any], int, int, list[bytes] | None] | None:
    """``clean_attributes``' result when nothing needs cleaning, else None: with each pair's
    KeyValue when the record is ``encoded`` (``plain_attributes``), else ``checked_attributes``'."""
    if len(raw) > limits.max_attribute_count:
        return None
    if encoded:
        return plain_attributes(raw, limits)
    return checked_attributes(raw, limits.max_attribute_length)


def plain_attributes(
    raw: Mapping[str, Any], limits: Limits
) -> tuple[dict[str, Any], int, int, list[bytes]] | None:
    """``clean_attributes``' result when nothing needs cleaning (short ASCII keys, plain scalars),
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


def checked_attributes(raw: Mapping[str, Any], max_len: int) -> tuple[dict[str, Any], int, int, None] | None:
    """``plain_attributes`` without the cache (nothing encoded, nothing remembered): for a host
    whose sink does not take protobuf, so that what it keeps does not grow with the runners it saw
    (each runner brings its own thread ids). None as soon as something needs cleaning."""
    memory = 0
    for key, value in raw.items():
        pair_bytes = plain_pair_bytes(key, value, max_len)
        if pair_bytes is None:
            return None
        memory += pair_bytes
    kept = raw if raw.__class__ is dict else dict(raw)
    return kept, 0, memory, None


def plain_pair_bytes(key: str, value: Any, max_len: int) -> int | None:
    """The memory of a pair (key and value) that needs no cleaning: a short ASCII key and a plain
    scalar within the limits; None when it needs cleaning. One definition for both checks."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii():
        return None
    kind = value.__class__
    if kind is str:
        if len(value) > max_len or not value.isascii():
            return None
        return 2 * _ASCII_STR_BYTES + len(key) + len(value)
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            return None
        small = value and -_SMALL_INT < value < _SMALL_INT
        return _ASCII_STR_BYTES + len(key) + (_SMALL_INT_BYTES if small else _getsizeof(value))
    if kind is bool:
        return _ASCII_STR_BYTES + len(key) + _BOOL_BYTES
    if kind is float and math.isfinite(value):
        return _ASCII_STR_BYTES + len(key) + _FLOAT_BYTES
    return None


def _checked_pair(
    pairs: dict[tuple[str, type, Any], CleanPair], key: str, value: Any, max_len: int
) -> CleanPair | None:
    """The pair as ``CleanPair`` when it needs no cleaning (and remembered if small), else None."""
    memory = plain_pair_bytes(key, value, max_len)
    if memory is None:
        return None
    kind = value.__class__
    pair = CleanPair(attribute_bytes(key, value), memory)
    # -0.0 equals 0.0 as a key but not as a double: zeros are checked each time.
    if len(pair.encoded) < _MAX_CACHED_PAIR_BYTES and (kind is not float or value):
        if len(pairs) >= _CLEAN_PAIRS_LIMIT:
            pairs.clear()
        pairs[(key, kind, value)] = pair
    return pair


def _cleaned_attributes(raw: Mapping[str, Any], limits: Limits) -> tuple[dict[str, Any], int, int]:
    """``clean_attributes`` of any attributes: keys and values cleaned, their count capped."""
    attributes: dict[str, Any] = {}
    dropped = memory = 0
    max_len = limits.max_attribute_length
    budget = limits.max_attribute_count
    renamed = False  # raw keys are distinct: only a cleaned one can make two keys one name
    for key, value in raw.items():
        if len(attributes) >= budget:
            dropped += 1
            continue
        name = key
        if not key or len(key) > MAX_KEY_LENGTH:
            name = clean_text(key, MAX_KEY_LENGTH) or "_"
            renamed = True
        # A name written twice (a cleaned key meeting a key spelled as it was cleaned to, in
        # either order) is counted once: the sum is marked for a recount.
        if renamed and name in attributes:
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
