"""The protocol of one runner connection as a state machine, without I/O (in the manner of h11).

Bytes (or frame bodies an I/O driver cut) go in through ``receive_data`` / ``receive_frame``
and come out as events; what the host answers comes out of ``welcome``, ``reject``, ``ack``
and ``flush`` as bytes to write. The machine knows no socket, loop, thread or file: the
server drives it, the bridge decides what a hello is worth.

States: AWAITING_HELLO (the first frame must be a hello), STREAMING (batches and a bye),
CLOSED (refused, broken or closed: every later frame is ignored).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from otel_plugin_logs.wire import messages
from otel_plugin_logs.wire.framing import FrameDecoder, ProtocolError, decode_message, encode_message
from otel_plugin_logs.wire.messages import BATCH, BYE, HELLO, PROTOCOL_VERSION
from otel_plugin_logs.wire.validate import BatchHeader, Hello, first_error


class ConnectionState(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    STREAMING = "streaming"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class HelloReceived:
    """A well-formed hello of the host's protocol version: the host checks its token next."""

    hello: Hello


@dataclass(frozen=True, slots=True)
class HelloRefused:
    """A hello the host cannot take (another protocol version, malformed): answer with a reject."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class BatchReceived:
    header: BatchHeader
    frame_bytes: int


@dataclass(frozen=True, slots=True)
class ByeReceived:
    """The runner's last batch: it ends after this."""

    header: BatchHeader
    frame_bytes: int


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """Bad input: the connection is closed (no answer); frames after it are ignored."""

    reason: str
    detail: str


Event = HelloReceived | HelloRefused | BatchReceived | ByeReceived | ProtocolViolation


class RunnerConnection:
    """The host's side of one runner connection."""

    __slots__ = ("_decoder", "_max_frame_bytes", "said_bye", "state")

    def __init__(self, max_frame_bytes: int) -> None:
        self._max_frame_bytes = max_frame_bytes
        self._decoder: FrameDecoder | None = None  # made by the first receive_data
        self.state = ConnectionState.AWAITING_HELLO
        self.said_bye = False

    # --- input ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Bytes as they came off the wire, cut into frames here; returns their events in order."""
        if self._decoder is None:
            self._decoder = FrameDecoder(self._max_frame_bytes)
        events: list[Event] = []
        try:
            for message in self._decoder.feed(data):
                event = self._on_message(message, 0)
                if event is not None:
                    events.append(event)
                if self.state is ConnectionState.CLOSED:
                    break
        except ProtocolError as error:
            if self.state is not ConnectionState.CLOSED:
                events.append(self._violation(error.reason, error.detail))
        return events

    def receive_frame(self, body: bytes) -> Event | None:
        """One frame body an I/O driver cut (it bounds what it buffers); None once closed."""
        if self.state is ConnectionState.CLOSED:
            return None
        try:
            message = decode_message(body, self._max_frame_bytes)
        except ProtocolError as error:
            return self._violation(error.reason, error.detail)
        return self._on_message(message, len(body))

    def violation(self, reason: str, detail: str) -> ProtocolViolation:
        """Bad input seen by the driver (a frame too large, a stalled frame): closes the machine."""
        return self._violation(reason, detail)

    # --- output ---------------------------------------------------------------------------

    def welcome(self, settled: int, max_frame_bytes: int) -> bytes:
        """The hello was accepted: batches may follow."""
        if self.state is not ConnectionState.AWAITING_HELLO:
            return b""
        self.state = ConnectionState.STREAMING
        return encode_message(messages.welcome(settled, max_frame_bytes))

    def reject(self, reason: str, detail: str) -> bytes:
        """Refuse the runner, saying why; the connection is closed after these bytes."""
        if self.state is ConnectionState.CLOSED:
            return b""
        self.state = ConnectionState.CLOSED
        return encode_message(messages.reject(f"{reason}: {detail}"))

    def ack(self, seq: int) -> bytes:
        return self._streaming(messages.ack(seq))

    def flush(self, flush_id: int) -> bytes:
        return self._streaming(messages.flush(flush_id))

    def close(self) -> None:
        self.state = ConnectionState.CLOSED

    # --- internals ------------------------------------------------------------------------

    def _streaming(self, message: dict[str, Any]) -> bytes:
        return encode_message(message) if self.state is ConnectionState.STREAMING else b""

    def _violation(self, reason: str, detail: str) -> ProtocolViolation:
        self.state = ConnectionState.CLOSED
        return ProtocolViolation(reason, detail)

    def _on_message(self, message: dict[str, Any], frame_bytes: int) -> Event | None:
        kind = message["t"]
        if self.state is ConnectionState.AWAITING_HELLO:
            if kind != HELLO:
                return self._violation("unexpected_frame", f"expected hello, got {kind[:32]!r}")
            return self._on_hello(message)
        if self.state is ConnectionState.CLOSED:
            return None
        if kind not in (BATCH, BYE):
            return self._violation("unexpected_frame", f"unexpected {kind[:32]!r} after the handshake")
        try:
            header = BatchHeader.model_validate(message)
        except ValidationError as error:
            return self._violation("malformed_batch", first_error(error))
        if kind == BYE:
            self.said_bye = True
            return ByeReceived(header, frame_bytes)
        return BatchReceived(header, frame_bytes)

    def _on_hello(self, message: dict[str, Any]) -> Event:
        if message.get("v") != PROTOCOL_VERSION:
            version = message.get("v")
            return HelloRefused(
                "protocol_version", f"runner speaks {version!r}, host speaks {PROTOCOL_VERSION}"
            )
        try:
            return HelloReceived(Hello.model_validate(message))
        except ValidationError as error:
            return HelloRefused("malformed_hello", first_error(error))
