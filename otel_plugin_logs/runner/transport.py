"""How a runner's frames reach the host.

``Transport`` is the seam: the handler speaks in frame bodies (msgpack bytes) and decoded
messages, a transport moves them. ``UnixSocketTransport`` is the real one; a plugin runtime
that already has an IPC channel subclasses it with the same four methods, and tests use
``InMemoryTransport``, which hands bodies straight to a ``HostLogBridge``.

Runner side only: nothing here imports the host or the OTel SDK.
"""

from __future__ import annotations

import abc
import contextlib
import os
import select
import socket
import time
from collections.abc import Callable

from otel_plugin_logs.wire import messages
from otel_plugin_logs.wire.framing import (
    HEADER_BYTES,
    FrameDecoder,
    ProtocolError,
    decode_message,
    encode_message,
)
from otel_plugin_logs.wire.limits import DEFAULT_MAX_FRAME_BYTES
from otel_plugin_logs.wire.messages import PROTOCOL_VERSION, REJECT, WELCOME

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any


class TransportError(Exception):
    """The channel to the host is down or broke; the handler reconnects and resends."""


class TransportRejected(TransportError):
    """The host refused this runner (bad token, version...). Retrying will not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"rejected by the host: {reason}")
        self.reason = reason


class Transport(abc.ABC):
    """A connection from one runner to its host.

    Subclasses implement the four abstract methods; the others have defaults that suit a
    channel without a socket of its own.
    """

    @abc.abstractmethod
    def connect(self, hello: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        """Open the channel, send ``hello`` and return the host's welcome message.

        Raises ``TransportRejected`` when the host refuses, ``TransportError`` otherwise.
        """

    @abc.abstractmethod
    def send(self, frame: bytes) -> None:
        """Send one complete frame (``encode_message`` output). Raises ``TransportError``."""

    @abc.abstractmethod
    def receive(self, timeout_seconds: float) -> list[dict[str, Any]]:
        """Messages from the host that arrived within the timeout (may be empty)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the channel; idempotent."""

    def close_gracefully(self, timeout_seconds: float) -> None:
        """Close after the bye, letting the host read everything sent; by default ``close``."""
        self.close()

    def close_after_fork(self) -> None:
        """In a forked child: let go of the parent's channel without disturbing it; by default nothing."""
        return


class _DuckTransport(Transport):
    """An object with the four methods that does not derive from ``Transport``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect(self, hello: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        welcome: dict[str, Any] = self._inner.connect(hello, timeout_seconds)
        return welcome

    def send(self, frame: bytes) -> None:
        self._inner.send(frame)

    def receive(self, timeout_seconds: float) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = self._inner.receive(timeout_seconds)
        return received

    def close(self) -> None:
        self._inner.close()


def as_transport(transport: Any) -> Transport:
    """``transport`` as a ``Transport``: one written before it was a base class is wrapped."""
    return transport if isinstance(transport, Transport) else _DuckTransport(transport)


class UnixSocketTransport(Transport):
    """Length-prefixed msgpack frames over a Unix stream socket."""

    def __init__(
        self,
        path: str,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        send_timeout_seconds: float = 10.0,
    ) -> None:
        self._path = path
        self._max_frame_bytes = max_frame_bytes
        self._send_timeout_seconds = send_timeout_seconds
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder(max_frame_bytes)
        self._inbox: list[dict[str, Any]] = []

    def connect(self, hello: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        self.close()
        deadline = time.monotonic() + timeout_seconds
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.set_inheritable(False)
        try:
            sock.settimeout(max(0.001, timeout_seconds))
            sock.connect(self._path)
            sock.sendall(encode_message(hello))
        except OSError as error:
            sock.close()
            raise TransportError(f"cannot reach the host at {self._path}: {error}") from None
        self._sock = sock
        self._decoder = FrameDecoder(self._max_frame_bytes)
        self._inbox = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise TransportError("the host did not answer the handshake in time")
            for message in self.receive(remaining):
                kind = message["t"]
                if kind == WELCOME:
                    if message.get("v") != PROTOCOL_VERSION:
                        self.close()
                        raise TransportRejected(f"host speaks protocol {message.get('v')!r}")
                    return message
                if kind == REJECT:
                    self.close()
                    raise TransportRejected(str(message.get("reason", "no reason given")))
            if self._sock is None:
                raise TransportError("the host closed the connection during the handshake")

    def send(self, frame: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise TransportError("not connected")
        try:
            sock.settimeout(self._send_timeout_seconds)
            sock.sendall(frame)
        except OSError as error:
            # A timed-out sendall may have written part of the frame: the stream is no
            # longer aligned, so the only safe continuation is a new connection.
            self.close()
            raise TransportError(f"send failed: {error}") from None

    def receive(self, timeout_seconds: float) -> list[dict[str, Any]]:
        sock = self._sock
        if sock is None:
            raise TransportError("not connected")
        out, self._inbox = self._inbox, []
        if out:
            return out
        try:
            readable, _, _ = select.select([sock], [], [], max(0.0, timeout_seconds))
            if not readable:
                return out
            sock.settimeout(0)
            data = sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return out
        except (OSError, ValueError) as error:
            self.close()
            raise TransportError(f"receive failed: {error}") from None
        if not data:
            self.close()
            raise TransportError("the host closed the connection")
        try:
            out.extend(self._decoder.feed(data))
        except ProtocolError as error:
            self.close()
            raise TransportError(f"bad frame from the host: {error}") from None
        return out

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def close_gracefully(self, timeout_seconds: float) -> None:
        """Close after the host has read everything: send EOF, wait for the host's EOF.

        Closing a socket with the host's acknowledgements still unread makes the host's next
        write fail, and the host then drops whatever it had not read yet of this connection:
        the last batch and the bye. Half-closing first lets the host read to the end.
        """
        sock = self._sock
        if sock is None:
            return
        deadline = time.monotonic() + max(0.0, timeout_seconds)
        try:
            sock.shutdown(socket.SHUT_WR)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                readable, _, _ = select.select([sock], [], [], remaining)
                if readable and not sock.recv(65536):
                    break
        except (OSError, ValueError):
            pass
        self.close()

    def close_after_fork(self) -> None:
        """In a forked child: drop the parent's socket without touching the shared stream."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                os.close(sock.detach())

    @property
    def connected(self) -> bool:
        return self._sock is not None


class InMemoryTransport(Transport):
    """A transport double: frames go straight to a host-side callback, acks come back.

    ``deliver(body)`` is typically ``lambda body: bridge.handle_batch("name", body)``; it
    returns the highest settled sequence number, which becomes the next ack. It is also a
    template for carrying batches over a plugin runtime's own RPC.
    """

    def __init__(self, deliver: Callable[[bytes], int], *, fail: bool = False) -> None:
        self._deliver = deliver
        self._acks: list[dict[str, Any]] = []
        self.fail = fail  # tests flip it to simulate an outage
        self.connected = False
        self.sent_frames = 0

    def connect(self, hello: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        if self.fail:
            raise TransportError("in-memory transport is failing")
        self.connected = True
        return messages.welcome(0, DEFAULT_MAX_FRAME_BYTES)

    def send(self, frame: bytes) -> None:
        if self.fail or not self.connected:
            self.connected = False
            raise TransportError("in-memory transport is failing")
        message = decode_message(frame[HEADER_BYTES:])
        if message["t"] in (messages.BATCH, messages.BYE):
            self._acks.append(messages.ack(self._deliver(frame[HEADER_BYTES:])))
        self.sent_frames += 1

    def receive(self, timeout_seconds: float) -> list[dict[str, Any]]:
        if not self.connected:
            raise TransportError("not connected")
        out, self._acks = self._acks, []
        if not out and timeout_seconds > 0:
            time.sleep(min(timeout_seconds, 0.005))
        return out

    def close(self) -> None:
        self.connected = False
