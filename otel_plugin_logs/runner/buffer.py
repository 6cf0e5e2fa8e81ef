"""The runner's bounded buffer of records not sent yet, shed by severity.

Records wait in four deques, one per severity class. When the buffer is over its count or
byte bound, the oldest record of the lowest non-empty class goes first; every record shed is
counted. Not thread-safe by itself: the handler's lock guards it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Final


@dataclass(slots=True)
class QueuedRecord:
    """A record accepted by ``emit``, waiting for the sender."""

    seq: int
    record: logging.LogRecord
    message: Any  # the rendered message, the format string (with args), or a structlog dict's copy
    args: tuple[Any, ...] | None  # immutable arguments the sender renders into message, if any
    context: Any  # the OTel Context current at the call, or None
    size_bytes: int  # what this record counts against the byte bound
    has_extras: bool  # the caller passed attributes of its own (extra=...)

    def text(self) -> Any:
        """The message as logged: rendered now if it was kept with its arguments (may raise)."""
        args = self.args
        return self.message if args is None else self.message % args


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

    def append(self, item: QueuedRecord, levelno: int) -> int:
        """Queue ``item``; returns the count now queued."""
        self._queues[_LEVEL_CLASS[levelno] if 0 <= levelno < 64 else 3].append(item)
        self.count += 1
        self.size_bytes += item.size_bytes
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
            self.size_bytes -= item.size_bytes
            dropped.append(item)
        self.shed_total += len(dropped)
        return dropped

    def take(self, max_records: int) -> list[QueuedRecord]:
        """The oldest records by sequence, up to ``max_records``, removed."""
        if self.count <= max_records:
            return self.take_all()
        items: list[QueuedRecord] = []
        queues = [queue for queue in self._queues if queue]
        while len(items) < max_records and queues:
            best = min(queues, key=_head_seq)
            items.append(best.popleft())
            if not best:
                queues.remove(best)
        self._removed(items)
        return items

    def take_all(self) -> list[QueuedRecord]:
        """Every record, in sequence order, removed."""
        items: list[QueuedRecord] = []
        for queue in self._queues:
            items.extend(queue)
            queue.clear()
        items.sort(key=_seq_of)
        self.count = 0
        self.size_bytes = 0
        return items

    def holds_through(self, seq: int) -> bool:
        """Whether some record numbered ``seq`` or lower is still queued."""
        return any(queue and queue[0].seq <= seq for queue in self._queues)

    def _removed(self, items: list[QueuedRecord]) -> None:
        self.count -= len(items)
        self.size_bytes -= sum(item.size_bytes for item in items)


def _seq_of(item: QueuedRecord) -> int:
    return item.seq


def _head_seq(queue: deque[QueuedRecord]) -> int:
    return queue[0].seq
