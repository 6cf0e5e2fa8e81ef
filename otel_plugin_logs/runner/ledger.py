"""What the caller's thread and the sender share: the buffer, the send window and the counts.

One reentrant lock guards all of it (reentrant: a signal handler may log while this thread
is inside ``emit``'s critical section).
"""

from __future__ import annotations

import os
import threading
from collections import Counter

from otel_plugin_logs.runner.buffer import QueuedRecord, SeverityBuffer
from otel_plugin_logs.runner.window import SendWindow
from otel_plugin_logs.wire import messages
from otel_plugin_logs.wire.drops import DropReason

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any


class Ledger:
    """The books of one stream of records: accepted, queued, in flight, dropped by reason."""

    __slots__ = ("buffer", "dropped", "last_seq", "lock", "sender_idle", "stream", "window")

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self.lock = threading.RLock()
        self.buffer = SeverityBuffer(max_records, max_bytes)
        self.window = SendWindow()
        self.dropped: Counter[DropReason] = Counter()
        self.last_seq = 0  # records accepted (numbered) so far
        # secrets.randbits(63) without importing secrets (hmac, hashlib, random): 63 bits of os.urandom.
        self.stream = int.from_bytes(os.urandom(8), "big") >> 1
        self.sender_idle = False  # the sender waits for work: the next record wakes it

    def count_drop(self, reason: DropReason, count: int = 1) -> None:
        with self.lock:
            self.dropped[reason] += count

    def dropped_by_reason(self) -> dict[str, int]:
        """The drop counts as the wire carries them."""
        with self.lock:
            return {str(reason): count for reason, count in self.dropped.items() if count}

    def header(self, flushed: int, *, bye: bool = False) -> dict[str, Any]:
        """The fields of a batch (or bye) frame before its records: where the stream stands."""
        with self.lock:
            dropped = self.dropped_by_reason()
            accepted = self.last_seq
        build = messages.bye_header if bye else messages.batch_header
        return build(self.stream, dropped, accepted, flushed)

    def take_all_queued(self, reason: DropReason) -> list[QueuedRecord]:
        """Empty the buffer, counting every record in it as dropped for ``reason``."""
        with self.lock:
            items = self.buffer.take_all()
            self.dropped[reason] += len(items)
        return items

    def sent_through(self, seq: int) -> bool:
        """Every record up to ``seq`` was transmitted (or dropped and counted)."""
        with self.lock:
            return not self.buffer.holds_through(seq) and self.window.transmitted_through(seq)

    def lost_nothing(self) -> bool:
        """Nothing is queued and nothing was ever dropped."""
        with self.lock:
            return self.buffer.count == 0 and not any(self.dropped.values())
