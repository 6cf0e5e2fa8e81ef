"""Bounds on what runner connections can make the host hold: caps, budgets, deadlines, accepts.

Everything a runner sends is input from an adversary, and so is the number of connections it
opens. The host bounds:

- connections: all together, per peer uid, and those still in their handshake (tighter: the
  oldest is closed to make room, so a flood of silent connections cannot keep a legitimate
  runner, which says hello at once, from getting in);
- bytes of partly received frames: a frame's declared length is reserved from one budget
  shared by all connections (with a share per plugin) *before* its body is buffered. A
  connection whose frame does not fit is not read (the kernel's socket buffer holds the rest)
  until another frame completes or a connection goes;
- time: a handshake deadline, a deadline for a frame begun, and an idle deadline;
- accept errors (EMFILE and friends): the listening socket backs off instead of spinning,
  and the error is reported by the caller once per interval rather than per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.wire.framing import HEADER_BYTES, ProtocolError

# A hello is a few hundred bytes; before it, a connection may not announce anything bigger.
MAX_HELLO_BYTES: Final = 4096
_LENGTH: Final = struct.Struct(">I")
_ACCEPTS_PER_WAKEUP: Final = 32  # then the loop reads what the accepted runners sent
_ACCEPT_BACKOFF_MIN_SECONDS: Final = 0.02
_ACCEPT_BACKOFF_MAX_SECONDS: Final = 1.0
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
PRE_AUTH_OWNER: Final = ""  # the budget's owner for frames read before a hello was accepted

# Reasons a connection is refused or closed by these bounds (counted in rejected_connections).
REFUSED_CONNECTIONS: Final = "connection_limit"
REFUSED_UID_CONNECTIONS: Final = "uid_connection_limit"
EVICTED_PENDING: Final = "pending_evicted"
CLOSED_STALLED: Final = "frame_timeout"
ACCEPT_ERROR: Final = "accept_error"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds above, resolved from a ``HostConfig`` and the process's open-file limit."""

    max_connections: int
    max_connections_per_uid: int
    max_pending_connections: int
    handshake_timeout_seconds: float
    frame_timeout_seconds: float
    idle_timeout_seconds: float
    max_buffered_bytes: int
    plugin_share_bytes: int

    @classmethod
    def from_config(cls, config: HostConfig) -> ConnectionLimits:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        # Half the descriptors stay for the host itself: its files, its plugins' pipes.
        fd_cap = soft // 2 if soft != resource.RLIM_INFINITY and soft > 0 else config.max_connections
        total = max(1, min(config.max_connections, fd_cap))
        return cls(
            max_connections=total,
            max_connections_per_uid=min(config.max_connections_per_uid, total),
            max_pending_connections=min(config.max_pending_connections, total),
            handshake_timeout_seconds=config.handshake_timeout_millis / 1000.0,
            frame_timeout_seconds=config.frame_timeout_millis / 1000.0,
            idle_timeout_seconds=config.idle_timeout_millis / 1000.0,
            # One largest frame always fits, or a runner allowed to send it would wait forever.
            max_buffered_bytes=max(config.ingest_max_buffered_bytes, config.max_frame_bytes),
            # A plugin may hold a quarter, and always one largest frame: four can progress at once.
            plugin_share_bytes=max(config.ingest_max_buffered_bytes // 4, config.max_frame_bytes),
        )


class ConnectionTable:
    """Counts of open connections, in total and by uid, and those in their handshake (oldest first).

    Of the connections in their handshake, those that have sent nothing yet are the first to
    go when the pool is over its cap: a runner says hello as soon as it connects, a flood of
    silent connections does not.
    """

    __slots__ = ("_by_uid", "_limits", "_silent", "_speaking", "total")

    def __init__(self, limits: ConnectionLimits) -> None:
        self._limits = limits
        self._by_uid: dict[int, int] = {}
        # Insertion-ordered: the oldest first.
        self._silent: dict[object, None] = {}
        self._speaking: dict[object, None] = {}
        self.total = 0

    def admit(self, key: object, uid: int, *, spoke: bool) -> str | None:
        """Count a new connection in; returns the refusal reason instead when a cap is reached."""
        if self.total >= self._limits.max_connections:
            return REFUSED_CONNECTIONS
        if self._by_uid.get(uid, 0) >= self._limits.max_connections_per_uid:
            return REFUSED_UID_CONNECTIONS
        self.total += 1
        self._by_uid[uid] = self._by_uid.get(uid, 0) + 1
        (self._speaking if spoke else self._silent)[key] = None
        return None

    def spoke(self, key: object) -> None:
        """A connection in its handshake sent its first bytes."""
        if self._silent.pop(key, 0) is None:
            self._speaking[key] = None

    def oldest_pending_over_cap(self) -> object | None:
        """The connection to close when the handshake pool is over its cap (the oldest silent first)."""
        if len(self._silent) + len(self._speaking) <= self._limits.max_pending_connections:
            return None
        return next(iter(self._silent or self._speaking))

    def authenticated(self, key: object) -> None:
        """Out of the handshake pool (its hello was accepted, or it is being closed)."""
        self._silent.pop(key, None)
        self._speaking.pop(key, None)

    def remove(self, key: object, uid: int) -> None:
        self.authenticated(key)
        count = self._by_uid.get(uid, 0)
        if count <= 0:
            return
        self.total -= 1
        if count == 1:
            del self._by_uid[uid]
        else:
            self._by_uid[uid] = count - 1

    @property
    def pending(self) -> int:
        return len(self._silent) + len(self._speaking)


class IngestBudget:
    """Bytes reserved by frames being received, with a cap for all and a share per owner (plugin).

    Used on the event loop's thread only. A connection that could not reserve waits in FIFO
    order; each release wakes the waiters, which try again.
    """

    __slots__ = ("_by_owner", "_max_bytes", "_share_bytes", "_waiters", "peak_bytes", "used_bytes")

    def __init__(self, max_bytes: int, share_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._share_bytes = share_bytes
        self._by_owner: dict[str, int] = {}
        self._waiters: deque[Callable[[], None]] = deque()
        self.used_bytes = 0
        self.peak_bytes = 0

    def reserve(self, owner: str, nbytes: int) -> bool:
        held = self._by_owner.get(owner, 0)
        if self.used_bytes + nbytes > self._max_bytes or held + nbytes > self._share_bytes:
            return False
        self._by_owner[owner] = held + nbytes
        self.used_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.used_bytes)
        return True

    def release(self, owner: str, nbytes: int) -> None:
        if nbytes <= 0:
            return
        held = self._by_owner.get(owner, 0) - nbytes
        if held > 0:
            self._by_owner[owner] = held
        else:
            self._by_owner.pop(owner, None)
        self.used_bytes -= nbytes
        waiters = list(self._waiters)
        self._waiters.clear()
        for wake in waiters:
            wake()

    def wait(self, wake: Callable[[], None]) -> None:
        self._waiters.append(wake)

    def forget(self, wake: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(wake)


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete frame body and the ingest budget it holds until handled."""

    body: bytes
    owner: str
    reserved_bytes: int


class BudgetedFrameReader:
    """Cuts a connection's bytes into frame bodies, reserving each frame's length first.

    Before ``owner`` is set (the hello was accepted) a frame may announce at most
    ``MAX_HELLO_BYTES``. ``blocked`` is True while the frame being read does not fit the
    budget: the caller stops reading the connection and calls ``resume`` when woken.
    """

    __slots__ = (
        "_budget",
        "_buffer",
        "_max_frame_bytes",
        "_needed",
        "_reserved",
        "blocked",
        "frame_started",
        "owner",
    )

    def __init__(self, budget: IngestBudget, max_frame_bytes: int) -> None:
        self._budget = budget
        self._max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._needed = -1  # body length of the frame being read, -1 while reading a header
        self._reserved = 0
        self.owner: str | None = None
        self.blocked = False
        self.frame_started: float | None = None  # monotonic time its reservation was made

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Add bytes; yield each complete frame. Raises ``ProtocolError``."""
        self._buffer += data
        return self.resume()

    def resume(self) -> Iterator[Frame]:
        """Yield the frames the buffered bytes complete, as far as the budget allows.

        Each frame still holds its reservation: ``IngestBudget.release`` it once handled.
        """
        buffer = self._buffer
        while True:
            if self._needed < 0:
                if len(buffer) < HEADER_BYTES:
                    return
                (length,) = _LENGTH.unpack_from(buffer)
                limit = self._max_frame_bytes if self.owner is not None else MAX_HELLO_BYTES
                if length > limit:
                    buffer.clear()
                    what = "frame" if self.owner is not None else "frame before the hello was accepted"
                    raise ProtocolError("frame_too_large", f"{what}: length prefix {length} > max {limit}")
                del buffer[:HEADER_BYTES]
                self._needed = length
            if not self._reserved and self._needed > 0:
                owner = self.owner if self.owner is not None else PRE_AUTH_OWNER
                if not self._budget.reserve(owner, self._needed):
                    self.blocked = True
                    return
                self.blocked = False
                self._reserved = self._needed
                self.frame_started = time.monotonic()
            if len(buffer) < self._needed:
                return
            body = bytes(buffer[: self._needed])
            del buffer[: self._needed]
            self._needed = -1
            self.frame_started = None
            reserved, self._reserved = self._reserved, 0
            yield Frame(body, self.owner if self.owner is not None else PRE_AUTH_OWNER, reserved)

    def release(self) -> None:
        """Give back the reservation of a frame not received whole (the connection went)."""
        if self._reserved:
            reserved, self._reserved = self._reserved, 0
            self._budget.release(self.owner if self.owner is not None else PRE_AUTH_OWNER, reserved)

    def set_owner(self, owner: str) -> None:
        """The hello was accepted: later frames count against ``owner``'s share."""
        if self._reserved:  # cannot happen between frames; keep the books straight regardless
            self.release()
        self.owner = owner

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)


class UnixListener:
    """A listening Unix socket whose accept loop backs off on resource errors (EMFILE).

    asyncio's own server logs a traceback for each failed accept; this one pauses the
    listening socket (doubling the pause, up to a second) and hands the error to ``on_error``
    once per pause, for the caller to count and report.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        path: str,
        on_accept: Callable[[socket.socket], None],
        on_error: Callable[[OSError], None],
        backlog: int = 1024,
    ) -> None:
        self._loop = loop
        self._on_accept = on_accept
        self._on_error = on_error
        self._backoff_seconds = 0.0
        self._closed = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.setblocking(False)
            self._sock.bind(path)
            os.chmod(path, 0o600)
            self._sock.listen(backlog)
        except OSError:
            self._sock.close()
            raise
        self._fd = self._sock.fileno()
        loop.add_reader(self._fd, self._accept)

    def fileno(self) -> int:
        return self._fd

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in _RESOURCE_ERRNOS:
                    self._pause()
                self._on_error(error)
                return
            self._backoff_seconds = 0.0
            self._on_accept(conn)

    def _pause(self) -> None:
        self._loop.remove_reader(self._fd)
        self._backoff_seconds = min(
            _ACCEPT_BACKOFF_MAX_SECONDS, max(_ACCEPT_BACKOFF_MIN_SECONDS, self._backoff_seconds * 2)
        )
        self._loop.call_later(self._backoff_seconds, self._resume)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._fd, self._accept)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
        self._sock.close()


def has_spoken(sock: socket.socket) -> bool:
    """Whether a just-accepted peer already sent bytes (its hello), without reading them."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:
        return False


def peer_credentials(sock: socket.socket) -> tuple[int | None, int | None]:
    """(pid, uid) of a Unix-socket peer from the kernel (SO_PEERCRED), or Nones where unavailable."""
    creds = struct.Struct("3i")
    try:
        pid, uid, _ = creds.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, creds.size))
    except (OSError, AttributeError):
        return None, None
    return pid, uid
