"""What ``emit`` keeps of a record, on the caller's thread, as cheaply as it can.

The message must not change after the call, so it is rendered at once when an argument could
change (a list, a dict, any object); when every argument is immutable (str, int, float, bool,
None) the format string and the arguments are kept and the sender renders them, which gives
the same text. The byte estimate is what the record will take on the wire, from string
lengths: exact for ASCII, four bytes a character otherwise, plus a fixed allowance for the
fields every record carries; the sender counts frames by their real size.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

from otel_plugin_logs.runner import trace_context
from otel_plugin_logs.runner.buffer import QueuedRecord
from otel_plugin_logs.runner.encoding import RECORD_FIELDS

# Arguments whose text cannot change after the call: the sender may render them later.
_IMMUTABLE_ARGS: Final = frozenset({str, int, float, bool, type(None)})
# The wire bytes of a record besides its strings: numbers, the keys of the fixed attributes,
# framing (measured: 121 with the largest sequence numbers and times).
WIRE_FIXED_BYTES: Final = 128
_SPAN_BYTES: Final = 32  # a trace id and a span id, when a context is current
_NUMBER_TEXT_BYTES: Final = 24  # the longest text of an int64 or a float
_STRUCTLOG_KEY_BYTES: Final = 64  # per key of a structlog event dict: key, value, coercion
_EXTRA_KEY_BYTES: Final = 64
_PLAIN_RECORD_FIELDS: Final = len(logging.makeLogRecord({}).__dict__)


def take(record: logging.LogRecord) -> QueuedRecord:
    """The queued form of ``record`` (its sequence number is set when it is queued)."""
    msg = record.msg
    args: Any = record.args
    kept_args: tuple[Any, ...] | None = None
    if msg.__class__ is str and (not args or args.__class__ is tuple):
        message: Any = msg
        size = len(msg) if msg.isascii() else 4 * len(msg)
        for arg in args or ():
            kind = arg.__class__
            if kind is str:
                size += len(arg) if arg.isascii() else 4 * len(arg)
            elif kind in _IMMUTABLE_ARGS:
                size += _NUMBER_TEXT_BYTES
            else:
                message = record.getMessage()  # an argument could change: render now
                size = _text_bytes(message)
                break
        else:
            kept_args = args or None
    elif msg.__class__ is dict:
        message = dict(msg)  # structlog event dict, copied against later mutation
        size = _STRUCTLOG_KEY_BYTES * len(message) + _text_bytes(str(message.get("event", "")))
    else:
        message = record.getMessage()
        size = _text_bytes(message)
    fields = record.__dict__
    added = len(fields) - _PLAIN_RECORD_FIELDS
    # A handler that formatted the record before this one added `message` (and `asctime`):
    # those are not extras.
    has_extras = added > 0 and added > ("message" in fields) + ("asctime" in fields)
    if has_extras:
        size += _extras_bytes(fields)
    try:
        size += (
            WIRE_FIXED_BYTES
            + len(record.name)
            + len(record.pathname)
            + len(record.funcName or "")
            + len(record.threadName or "")
        )
    except TypeError:  # a record made by hand with odd fields: a generous guess
        size += WIRE_FIXED_BYTES + 1024
    context = trace_context.capture_context()
    if context is not None:
        size += _SPAN_BYTES
    return QueuedRecord(0, record, message, kept_args, context, size, has_extras)


def _text_bytes(text: str) -> int:
    return len(text) if text.isascii() else 4 * len(text)


def _extras_bytes(fields: dict[str, Any]) -> int:
    """A record's extras, shallow: what the byte bound counts besides the message."""
    return sum(
        _EXTRA_KEY_BYTES + sys.getsizeof(value) for key, value in fields.items() if key not in RECORD_FIELDS
    )
