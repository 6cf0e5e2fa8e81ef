"""The asyncio side of runner connections: the listener, accepts, and one I/O driver per socket.

Each ``SocketDriver`` owns a sans-IO ``RunnerConnection`` and a budgeted frame reader; it
hands events and frames to a ``ConnectionHandler`` (the host's intake), which decides what
they are worth. Runs on the bridge's loop thread; ``close`` and ``send`` may be called from
any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from otel_plugin_logs.host.connection import (
    Event,
    HelloReceived,
    HelloRefused,
    ProtocolViolation,
    RunnerConnection,
)
from otel_plugin_logs.host.limits import (
    ACCEPT_ERROR,
    CLOSED_STALLED,
    EVICTED_PENDING,
    BudgetedFrameReader,
    ConnectionLimits,
    ConnectionTable,
    Frame,
    IngestBudget,
    UnixListener,
    has_spoken,
    peer_credentials,
)
from otel_plugin_logs.host.streams import Stream
from otel_plugin_logs.wire.framing import ProtocolError, encode_message

_log = logging.getLogger("otel_plugin_logs.bridge")


class ConnectionHandler(Protocol):
    """What the server needs of the host: the meaning of hellos and frames, and the books."""

    def on_hello(self, driver: SocketDriver, event: HelloReceived | HelloRefused) -> None: ...

    def on_frame(self, driver: SocketDriver, frame: Frame) -> None: ...

    def on_lost(self, driver: SocketDriver) -> None: ...

    def reject(self, driver: SocketDriver, reason: str, detail: str) -> None: ...

    def bad_input(self, driver: SocketDriver, reason: str, detail: str) -> None: ...

    def refused(self, reason: str, pid: int | None, uid: int | None) -> None: ...

    def accept_failed(self, error: OSError) -> None: ...


class SocketDriver(asyncio.Protocol):
    """One runner socket. Its peer's pid and uid were read from the kernel when accepted."""

    def __init__(
        self, server: ConnectionServer, peer_pid: int | None, peer_uid: int | None, max_frame_bytes: int
    ) -> None:
        self.server = server
        self.machine = RunnerConnection(max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.reader = BudgetedFrameReader(server.budget, max_frame_bytes)
        self.peer_pid = peer_pid
        self.peer_uid = peer_uid
        self.stream: Stream | None = None
        self.plugin_name = "?"
        self.closed = False
        now = time.monotonic()
        self.last_data = now
        # Checked by the server's periodic expiry: a timer per connection would outlive it.
        self.handshake_deadline = now + server.limits.handshake_timeout_seconds

    @property
    def uid_key(self) -> int:
        return -1 if self.peer_uid is None else self.peer_uid

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.closed:
            transport.close()  # it was closed (evicted) before its transport existed

    def data_received(self, data: bytes) -> None:
        self.last_data = time.monotonic()
        if self.stream is None:
            self.server.table.spoke(self)
        self._handle(self.reader.feed(data))

    def _handle(self, frames: Iterator[Frame]) -> None:
        handler = self.server.handler
        budget = self.server.budget
        try:
            for frame in frames:
                if self.closed:
                    budget.release(frame.owner, frame.reserved_bytes)
                    return
                if self.stream is not None:  # the ingest worker takes it from here, in arrival order
                    handler.on_frame(self, frame)
                    continue
                try:  # the hello: answered here, at once, however busy the worker is
                    self._on_event(self.machine.receive_frame(frame.body))
                finally:
                    budget.release(frame.owner, frame.reserved_bytes)
        except ProtocolError as error:  # from the reader: a frame too large
            handler.bad_input(self, error.reason, error.detail)
        except Exception as error:  # a bug of ours must not take the host down with it
            handler.bad_input(self, "internal_error", f"{type(error).__name__}: {error}")
            _log.debug("internal error on a runner connection", exc_info=True)
        if self.closed or self.transport is None:
            return
        if self.reader.blocked:
            # Its frame does not fit the ingest budget: leave the rest in the kernel's buffer.
            self.transport.pause_reading()
            budget.wait(self._wake)
        elif not self.transport.is_reading():
            self.transport.resume_reading()

    def _on_event(self, event: Event | None) -> None:
        handler = self.server.handler
        if isinstance(event, HelloReceived | HelloRefused):
            handler.on_hello(self, event)
        elif isinstance(event, ProtocolViolation):
            handler.bad_input(self, event.reason, event.detail)

    def _wake(self) -> None:
        loop = self.server.loop
        if not self.closed:
            loop.call_soon(self._resume)

    def _resume(self) -> None:
        if not self.closed:
            self._handle(self.reader.resume())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True  # frames it sent before are still taken in: the machine stays open
        self.reader.release()
        self.server.budget.forget(self._wake)
        self.server.lost(self)

    def write(self, data: bytes) -> None:
        if data and not self.closed and self.transport is not None:
            self.transport.write(data)

    def send(self, message: Mapping[str, Any]) -> None:
        self.write(encode_message(message))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.on_loop(self._close_transport)

    def _close_transport(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ConnectionServer:
    """The listening socket and every runner connection: admitted, in handshake, authenticated."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: ConnectionLimits,
        max_frame_bytes: int,
        handler: ConnectionHandler,
    ) -> None:
        self.loop = loop
        self.limits = limits
        self.handler = handler
        self.table = ConnectionTable(limits)
        self.budget = IngestBudget(limits.max_buffered_bytes, limits.plugin_share_bytes)
        self.loop_ident = -1  # the loop thread's ident, once it runs
        self._max_frame_bytes = max_frame_bytes
        self._lock = threading.Lock()
        self._handshaking: set[SocketDriver] = set()  # accepted, hello not processed yet
        self._connections: set[SocketDriver] = set()  # authenticated
        self._listener: UnixListener | None = None
        self._listen_fd = -1
        self._accept_tasks: set[asyncio.Task[None]] = set()

    def on_loop(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the loop thread: transports belong to it."""
        if threading.get_ident() == self.loop_ident:
            call()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to do any more
                self.loop.call_soon_threadsafe(call)

    def listen(self, path: str) -> None:
        """Start accepting on ``path`` (loop thread)."""
        self._listener = UnixListener(self.loop, path, self._on_accept, self.handler.accept_failed)
        self._listen_fd = self._listener.fileno()

    def _on_accept(self, sock: socket.socket) -> None:
        """Count a new connection in, or refuse it at once when a cap is reached (loop thread)."""
        pid, uid = peer_credentials(sock)
        driver = SocketDriver(self, pid, uid, self._max_frame_bytes)
        with self._lock:
            refused = self.table.admit(driver, driver.uid_key, spoke=has_spoken(sock))
            if refused is None:
                self._handshaking.add(driver)
        if refused is not None:
            sock.close()
            self.handler.refused(refused, pid, uid)
            return
        evicted = self.table.oldest_pending_over_cap()
        if isinstance(evicted, SocketDriver):
            self.table.authenticated(evicted)  # out of the handshake pool: closing
            self.handler.reject(evicted, EVICTED_PENDING, "too many connections in their handshake")
        task = self.loop.create_task(self._connect_accepted(driver, sock))
        self._accept_tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._accept_tasks.discard)

    async def _connect_accepted(self, driver: SocketDriver, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: driver, sock)
        except Exception as error:  # e.g. EMFILE while setting the transport up
            sock.close()
            driver.closed = True
            self.lost(driver)
            self.handler.accept_failed(error if isinstance(error, OSError) else OSError(str(error)))

    def hello_done(self, driver: SocketDriver) -> None:
        with self._lock:
            self._handshaking.discard(driver)

    def authenticated(self, driver: SocketDriver) -> None:
        self.table.authenticated(driver)
        with self._lock:
            self._connections.add(driver)

    def lost(self, driver: SocketDriver) -> None:
        with self._lock:
            self.table.remove(driver, driver.uid_key)
            self._handshaking.discard(driver)
            self._connections.discard(driver)
        self.handler.on_lost(driver)

    def live(self) -> list[SocketDriver]:
        with self._lock:
            return [c for c in self._connections if c.stream is not None and not c.closed]

    def handshaking(self) -> bool:
        with self._lock:
            return bool(self._handshaking)

    def backlog_empty(self) -> bool:
        """No connection waits in the listen backlog."""
        if self._listen_fd < 0:
            return True
        try:
            readable, _, _ = select.select([self._listen_fd], [], [], 0)
        except (OSError, ValueError):
            return True
        return not readable

    def expire(self) -> None:
        """Close connections past a deadline: no hello, a frame begun but not finished, idle."""
        now = time.monotonic()
        limits = self.limits
        with self._lock:
            late = [c for c in self._handshaking if c.stream is None and now >= c.handshake_deadline]
            stalled = []
            idle = []
            for conn in self._connections:
                started = conn.reader.frame_started
                if started is not None and now - started >= limits.frame_timeout_seconds:
                    stalled.append(conn)
                elif now - conn.last_data >= limits.idle_timeout_seconds:
                    idle.append(conn)
        for conn in late:
            if not conn.closed:
                detail = f"no hello within {limits.handshake_timeout_seconds:g} s"
                self.handler.reject(conn, "handshake_timeout", detail)
            self.hello_done(conn)
        for conn in stalled:
            detail = f"a frame unfinished after {limits.frame_timeout_seconds:g} s"
            self.handler.bad_input(conn, CLOSED_STALLED, detail)
        for conn in idle:
            _log.debug("closing the idle connection of plugin %s (pid %s)", conn.plugin_name, conn.peer_pid)
            conn.close()

    async def close(self) -> None:
        """Stop listening and close every connection (loop thread)."""
        if self._listener is not None:
            self._listener.close()
            self._listen_fd = -1
        with self._lock:
            every = [*self._connections, *self._handshaking]
        for conn in every:
            conn.close()
        await asyncio.sleep(0)  # let the transports' connection_lost run


__all__ = ["ACCEPT_ERROR", "ConnectionHandler", "ConnectionServer", "SocketDriver"]
