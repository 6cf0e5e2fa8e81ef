"""The send window: frames sent but not acknowledged, kept for the resend after a reconnect.

Sequence bookkeeping, all about records (a frame is known by its last record's number):
``created_seq``: every record up to it is in a frame (or was dropped); ``transmitted_seq``:
every frame up to it went out on the current connection; ``sent_high``: ... on some
connection (so it may have arrived); ``acked_seq``: the host settled every record up to it.
Not thread-safe by itself: the handler's lock guards it.
"""

from __future__ import annotations

from collections import deque


class SentFrame:
    """One encoded batch frame and the sequence number of its last record.

    A slotted class, not a dataclass: the runner's path does not import dataclasses (it loads
    inspect and ast, which every plugin would pay for at start and again at exit).
    """

    __slots__ = ("frame", "last_seq")

    def __init__(self, last_seq: int, frame: bytes) -> None:
        self.last_seq = last_seq
        self.frame = frame


class SendWindow:
    """Frames kept until acknowledged, and how far the stream got."""

    __slots__ = ("_frames", "acked_seq", "created_seq", "held_bytes", "sent_high", "transmitted_seq")

    def __init__(self) -> None:
        self._frames: deque[SentFrame] = deque()
        self.held_bytes = 0
        self.created_seq = 0
        self.transmitted_seq = 0
        self.sent_high = 0
        self.acked_seq = 0

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, frames: list[SentFrame], created_seq: int) -> None:
        """Keep frames built from records up to ``created_seq``, before any of them is sent."""
        for frame in frames:
            self._frames.append(frame)
            self.held_bytes += len(frame.frame)
        self.created_seq = max(self.created_seq, created_seq)

    def mark_transmitted(self, last_seq: int) -> None:
        """A frame went out on the current connection."""
        self.transmitted_seq = last_seq
        self.sent_high = max(self.sent_high, last_seq)

    def all_sent(self) -> None:
        """Every frame kept went out on the current connection, in order.

        Records after the last frame's that could not be encoded need no sending: they count
        as transmitted too.
        """
        self.transmitted_seq = self.created_seq
        self.sent_high = max(self.sent_high, self.created_seq)

    def release(self, seq: int) -> bool:
        """The host settled every record up to ``seq``: let go of those frames. True if it advanced."""
        advanced = seq > self.acked_seq
        self.acked_seq = max(self.acked_seq, seq)
        frames = self._frames
        while frames and frames[0].last_seq <= seq:
            self.held_bytes -= len(frames.popleft().frame)
        return advanced

    def connection_lost(self) -> None:
        """What was not acknowledged may not have reached the host."""
        self.transmitted_seq = self.acked_seq

    def to_resend(self) -> list[SentFrame]:
        """After a reconnect: every frame kept, to be sent again (the host drops duplicates)."""
        self.transmitted_seq = self.acked_seq
        return list(self._frames)

    def transmitted_through(self, seq: int) -> bool:
        """Every frame with records up to ``seq`` (of those made) went out on this connection."""
        return self.transmitted_seq >= min(seq, self.created_seq)

    @property
    def all_transmitted(self) -> bool:
        return self.transmitted_seq >= self.created_seq

    def give_up_untransmitted(self) -> list[SentFrame]:
        """Frames that never went out on any connection, for the caller to count; none after.

        A frame that went out on an earlier connection may have reached the host: it is left
        to the host's accounting (delivered, or a gap), never counted twice.
        """
        sent = max(self.transmitted_seq, self.sent_high)
        frames = [frame for frame in self._frames if frame.last_seq > sent]
        self.transmitted_seq = self.created_seq
        return frames
