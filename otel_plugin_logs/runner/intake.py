"""What ``emit`` keeps of a record, on the caller's thread, as cheaply as it can.

The message must not change after the call, so it is rendered at once when an argument could
change (a list, a dict, any object); when every argument is immutable (str, int, float, bool,
None) the format string and the arguments are kept and the sender renders them, which gives
the same text. The ``LogRecord`` itself is let go unless the sender needs it (extras, an
exception, a stack): a queued record is a tuple of its fields (``buffer.Q``).

The byte count is the memory the queued record holds, from string lengths and the sizes of
the objects it keeps (measured at import): exact or above for what it owns, above for what it
may share with the caller (a format string, an argument); the send window counts its frames
by their real size.
"""

from __future__ import annotations

import logging
import sys

from otel_plugin_logs.runner import trace_context
from otel_plugin_logs.runner.buffer import Q
from otel_plugin_logs.runner.encoding import RECORD_FIELDS, has_extras

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, Final

# Arguments whose text cannot change after the call: the sender may render them later.
_IMMUTABLE_ARGS: Final = frozenset({str, int, float, bool, type(None)})
# A queued tuple (seq included), its float time, thread id and line number, its deque slot.
QUEUED_FIXED_BYTES: Final = (
    sys.getsizeof((0,) * Q.FIELDS) + sys.getsizeof(1.5) + sys.getsizeof(2**62) + sys.getsizeof(1000) + 8
)
_STR_BYTES: Final = sys.getsizeof("")  # a str's header; ASCII then takes a byte a character
_WIDE_STR_BYTES: Final = sys.getsizeof("\U0001f600") - 4  # other text: at most four bytes a character
_TUPLE_BYTES: Final = sys.getsizeof(())
_NUMBER_BYTES: Final = sys.getsizeof(2**62)
_plain = logging.makeLogRecord({})
_RECORD_OBJECT_BYTES: Final = sys.getsizeof(_plain)
_RECORD_NUMBERS_BYTES: Final = 6 * _NUMBER_BYTES  # its times, process id, thread id
_PLAIN_RECORD_FIELDS: Final = len(_plain.__dict__)
del _plain
_EXC_INFO_BYTES: Final = 4096  # an exception and its traceback: frames the record keeps alive
_STRUCTLOG_KEY_BYTES: Final = 64  # per key of a structlog event dict's copy: slot, key, value


def take(record: logging.LogRecord) -> tuple[Any, ...]:
    """The fields of the queued form of ``record`` after ``Q.SEQ`` (prefixed when it is queued)."""
    size, message, kept_args, kept = message_of(record)
    return (
        size,
        record.levelno,
        record.created,
        record.levelname,
        record.name,
        message,
        kept_args,
        trace_context.capture_context(),
        record.pathname,
        record.funcName,
        record.lineno,
        record.thread,
        record.threadName,
        kept,
    )


def message_of(
    record: logging.LogRecord,
) -> tuple[int, Any, tuple[Any, ...] | None, logging.LogRecord | None]:
    """What the queue keeps of a record's message: ``(Q.SIZE_BYTES, Q.MESSAGE, Q.ARGS, Q.RECORD)``.

    The size is the whole queued record's (``QUEUED_FIXED_BYTES`` included). This may run the
    plugin's code (``__str__`` of an argument): the caller holds no lock.
    """
    msg = record.msg
    args: Any = record.args
    kept_args: tuple[Any, ...] | None = None
    message: Any = msg
    if msg.__class__ is str and args.__class__ is tuple:
        # Text sizes inline (not through _text_bytes): this runs for every record.
        size = _STR_BYTES + len(msg) if msg.isascii() else _WIDE_STR_BYTES + 4 * len(msg)
        if args:
            size += _TUPLE_BYTES + 8 * len(args)
            for arg in args:
                kind = arg.__class__
                if kind is str:
                    size += _STR_BYTES + len(arg) if arg.isascii() else _WIDE_STR_BYTES + 4 * len(arg)
                elif kind in _IMMUTABLE_ARGS:
                    size += _NUMBER_BYTES
                else:
                    message = record.getMessage()  # an argument could change: render now
                    size = _text_bytes(message)
                    break
            else:
                kept_args = args
    elif msg.__class__ is dict:
        message = dict(msg)  # structlog event dict, copied against later mutation
        size = sys.getsizeof(message) + _STRUCTLOG_KEY_BYTES * len(message)
    else:
        message = record.getMessage()
        size = _text_bytes(message)
    # Extras make the attribute dict longer than a plain record's: has_extras only then.
    if (
        record.exc_info
        or record.exc_text
        or record.stack_info
        or (len(record.__dict__) > _PLAIN_RECORD_FIELDS and has_extras(record))
    ):
        return QUEUED_FIXED_BYTES + size + _record_bytes(record), message, kept_args, record
    return QUEUED_FIXED_BYTES + size, message, kept_args, None


def _text_bytes(text: Any) -> int:
    if text.__class__ is not str:
        return sys.getsizeof(text)
    return _STR_BYTES + len(text) if text.isascii() else _WIDE_STR_BYTES + 4 * len(text)


def _record_bytes(record: logging.LogRecord) -> int:
    """A LogRecord kept whole: itself, its attribute dict (no longer shared once it has extras),
    the numbers it owns, its extras (shallow), its exception and texts."""
    fields = record.__dict__
    size = _RECORD_OBJECT_BYTES + sys.getsizeof(fields) + _record_values_bytes(fields)
    if record.exc_info:
        size += _EXC_INFO_BYTES
    return size + _text_bytes(record.exc_text or "") + _text_bytes(record.stack_info or "")


def _record_values_bytes(fields: dict[str, Any]) -> int:
    return _RECORD_NUMBERS_BYTES + sum(
        sys.getsizeof(value) for key, value in fields.items() if key not in RECORD_FIELDS
    )
