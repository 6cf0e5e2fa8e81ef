"""The runner's bounded buffer of records not sent yet, shed by severity.

Records wait in four deques, one per severity class. When the buffer is over its count or
byte bound, the oldest record of the lowest non-empty class goes first; every record shed is
counted. Not thread-safe by itself: the handler's lock guards it.

A queued record is a tuple laid out as ``Q`` says, not an object: ``emit`` builds it without a
Python call, it holds a fraction of what the ``LogRecord`` held (the record itself is kept only
when it carries extras, an exception or a stack), and the garbage collector stops tracking a
tuple of plain values.
"""

from __future__ import annotations

import logging
from collections import deque

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, Final


class Q:
    """Indexes of the fields of a queued record."""

    SEQ: Final = 0
    SIZE_BYTES: Final = 1  # what it counts against the byte bound: the memory it holds
    LEVELNO: Final = 2
    CREATED: Final = 3
    LEVELNAME: Final = 4
    NAME: Final = 5
    MESSAGE: Final = 6  # the rendered message, the format string (with ARGS), or a structlog dict's copy
    ARGS: Final = 7  # immutable arguments the sender renders into MESSAGE, or None
    CONTEXT: Final = 8  # the OTel Context current at the call, or None
    PATHNAME: Final = 9
    FUNC_NAME: Final = 10
    LINENO: Final = 11
    THREAD: Final = 12
    THREAD_NAME: Final = 13
    RECORD: Final = 14  # the LogRecord when it has extras, an exception or a stack; else None
    FIELDS: Final = 15


QueuedRecord = tuple["Any", ...]  # laid out as ``Q``; quoted: typing is not imported at run time


def queued_text(item: QueuedRecord) -> Any:
    """The message as logged: rendered now if it was kept with its arguments (may raise)."""
    args = item[Q.ARGS]
    message = item[Q.MESSAGE]
    return message if args is None else message % args


def level_class(levelno: int) -> int:
    """0: below INFO, 1: INFO, 2: WARNING, 3: ERROR and above."""
    if levelno < logging.INFO:
        return 0
    if levelno < logging.WARNING:
        return 1
    if levelno < logging.ERROR:
        return 2
    return 3


_LEVEL_CLASS: Final = [level_class(n) for n in range(64)]


def class_of(levelno: int) -> int:
    """``level_class``, by table for the stdlib's range."""
    return _LEVEL_CLASS[levelno] if 0 <= levelno < 64 else 3


class SeverityBuffer:
    """Records by severity class, bounded by count and bytes."""

    __slots__ = ("_max_bytes", "_max_records", "_queues", "count", "shed_total", "size_bytes")

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._queues: tuple[deque[QueuedRecord], ...] = (deque(), deque(), deque(), deque())
        self.count = 0
        self.size_bytes = 0
        self.shed_total = 0

    def append(self, item: QueuedRecord) -> int:
        """Queue ``item``; returns the count now queued."""
        levelno = item[2]  # Q.LEVELNO, by number: this runs for every record
        self._queues[_LEVEL_CLASS[levelno] if 0 <= levelno < 64 else 3].append(item)
        self.count += 1
        self.size_bytes += item[1]  # Q.SIZE_BYTES
        return self.count

    def over_bounds(self, held_bytes: int) -> bool:
        """Whether the buffer, plus ``held_bytes`` held elsewhere (the send window), is too big."""
        return self.count > self._max_records or self.size_bytes + held_bytes > self._max_bytes

    def shed(self, held_bytes: int) -> list[QueuedRecord]:
        """Drop the oldest of the lowest class until within bounds; returns what was dropped."""
        dropped: list[QueuedRecord] = []
        while self.count and self.over_bounds(held_bytes):
            for queue in self._queues:
                if queue:
                    item = queue.popleft()
                    break
            self.count -= 1
            self.size_bytes -= item[Q.SIZE_BYTES]
            dropped.append(item)
        self.shed_total += len(dropped)
        return dropped

    def take(self, max_records: int) -> list[QueuedRecord]:
        """The oldest records by sequence, up to ``max_records``, removed."""
        if self.count <= max_records:
            return self.take_all()
        queues = [queue for queue in self._queues if queue]
        if len(queues) == 1:  # the common case: one severity class; its order is the sequence's
            queue = queues[0]
            items = [queue.popleft() for _ in range(max_records)]
        else:
            items = []
            while len(items) < max_records and queues:
                best = min(queues, key=_head_seq)
                items.append(best.popleft())
                if not best:
                    queues.remove(best)
        self._removed(items)
        return items

    def take_all(self) -> list[QueuedRecord]:
        """Every record, in sequence order, removed."""
        queues = [queue for queue in self._queues if queue]
        items: list[QueuedRecord] = []
        for queue in queues:
            items.extend(queue)
            queue.clear()
        if len(queues) > 1:
            items.sort(key=_seq_of)
        self.count = 0
        self.size_bytes = 0
        return items

    def holds_through(self, seq: int) -> bool:
        """Whether some record numbered ``seq`` or lower is still queued."""
        return any(queue and queue[0][Q.SEQ] <= seq for queue in self._queues)

    def _removed(self, items: list[QueuedRecord]) -> None:
        self.count -= len(items)
        self.size_bytes -= sum(item[Q.SIZE_BYTES] for item in items)


def _seq_of(item: QueuedRecord) -> int:
    seq: int = item[Q.SEQ]
    return seq


def _head_seq(queue: deque[QueuedRecord]) -> int:
    seq: int = queue[0][Q.SEQ]
    return seq
