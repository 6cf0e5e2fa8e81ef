"""A ``Transport`` over a plugin runtime's own RPC client: no socket of ours.

The runtime already connects each runner to its host (``rpc_client.send_event(name,
payload)``, sync or a coroutine, and ``is_connected``). ``RpcTransport`` carries the
handler's frames as events on it, so a runner gets the whole ``RunnerLogHandler`` (trace
context, typed attributes, level-aware shedding, counted drops) over that channel::

    transport = RpcTransport(rpc_client, loop=asyncio.get_running_loop())
    logging.root.addHandler(RunnerLogHandler(transport))

and the host answers each event with ``bridge.handle_batch(plugin, frame_from_event(payload))``.

Acknowledgements: when ``send_event`` returns the host's answer (the settled sequence number,
an int, or a map with ``seq``), frames are kept until the host settled them and resent after
the channel broke. When it returns nothing, the channel cannot carry a reply: a frame counts
as settled once ``send_event`` returned without error, and only failed sends are resent.

Runner side only: nothing here imports pydantic, the OTel SDK or the host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import enum
import inspect
import time
from collections.abc import Mapping
from typing import Any, Final, Protocol

import msgpack

from otel_plugin_logs.runner.transport import Transport, TransportError
from otel_plugin_logs.wire import messages
from otel_plugin_logs.wire.framing import HEADER_BYTES, ProtocolError
from otel_plugin_logs.wire.limits import DEFAULT_MAX_FRAME_BYTES
from otel_plugin_logs.wire.messages import BATCH

FRAME_EVENT: Final = "otel_plugin_logs.frame"
FRAME_KEY: Final = "frame"  # the payload's key for the frame as bytes
FRAME_BASE64_KEY: Final = "frame_b64"  # ... and as base64 text
_IDLE_SLEEP_SECONDS: Final = 0.005


class FrameEncoding(enum.Enum):
    """How a frame rides in the event payload."""

    BYTES = "bytes"  # {"frame": b"..."}: channels that carry bytes (msgpack, pickle-free binary)
    BASE64 = "base64"  # {"frame_b64": "..."}: JSON channels


class RpcClient(Protocol):
    """The shape of the runtime's client; ``is_connected`` may be a property or a method."""

    def send_event(self, name: str, payload: dict[str, Any]) -> Any:
        """Send one event to the host; may return a value, or an awaitable of it."""
        ...


class RpcTransport(Transport):
    """Frames as events of the runtime's RPC client.

    ``loop``: the runtime's event loop, needed when ``send_event`` is a coroutine (and used for
    sync clients too, so the client is only ever called on its own loop). In an asyncio runner,
    shut the handler down off the loop (``await asyncio.to_thread(handler.shutdown)``): its
    last frames are sent through that loop.
    """

    def __init__(
        self,
        client: RpcClient,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        event_name: str = FRAME_EVENT,
        encoding: FrameEncoding = FrameEncoding.BYTES,
        reply_timeout_millis: int = 10_000,
        poll_interval_millis: int = 50,
    ) -> None:
        self._client = client
        self._loop = loop
        self._event_name = event_name
        self._encoding = encoding
        self._reply_timeout_seconds = reply_timeout_millis / 1000.0
        self._poll_interval_seconds = poll_interval_millis / 1000.0
        self._connected = False
        self._stream = 0
        self._inbox: list[dict[str, Any]] = []
        self._host_acks = False  # the host answered with a sequence number at least once
        self._sent_seq = 0
        self._acked_seq = 0
        self._last_call = 0.0

    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self, hello: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        # The runtime's channel already says who this runner is: no token, no handshake.
        if not self._client_connected():
            raise TransportError("the runtime's RPC client is not connected")
        self._stream = int(hello.get("stream", 0))
        self._connected = True
        self._inbox = []
        self._sent_seq = self._acked_seq = 0
        # acked 0: the handler resends whatever it holds; the host discards what it has.
        return messages.welcome(0, DEFAULT_MAX_FRAME_BYTES)

    def send(self, frame: bytes) -> None:
        if not self._connected:
            raise TransportError("not connected")
        body = frame[HEADER_BYTES:]
        last_seq = last_record_seq(body)
        reply = self._call(body)
        if last_seq:
            self._sent_seq = max(self._sent_seq, last_seq)
        self._on_reply(reply, last_seq)

    def receive(self, timeout_seconds: float) -> list[dict[str, Any]]:
        if not self._connected:
            raise TransportError("not connected")
        if (
            not self._inbox
            and self._host_acks
            and self._acked_seq < self._sent_seq
            and time.monotonic() - self._last_call >= self._poll_interval_seconds
        ):
            # The host settles a batch after it answered (once exported): an empty batch
            # asks how far it got, so the handler can release what it keeps for resending.
            poll: bytes = msgpack.packb({"t": BATCH, "stream": self._stream}, use_bin_type=True)
            self._on_reply(self._call(poll), 0)
        out, self._inbox = self._inbox, []
        if not out and timeout_seconds > 0:
            time.sleep(min(timeout_seconds, _IDLE_SLEEP_SECONDS))
        return out

    def close(self) -> None:
        self._connected = False

    # --- internals -------------------------------------------------------------------------

    def _client_connected(self) -> bool:
        value = getattr(self._client, "is_connected", True)
        try:
            return bool(value() if callable(value) else value)
        except Exception:
            return False

    def _payload(self, body: bytes) -> dict[str, Any]:
        if self._encoding is FrameEncoding.BASE64:
            return {FRAME_BASE64_KEY: base64.b64encode(body).decode("ascii")}
        return {FRAME_KEY: body}

    def _call(self, body: bytes) -> Any:
        if not self._client_connected():
            self.close()
            raise TransportError("the runtime's RPC client is not connected")
        payload = self._payload(body)
        self._last_call = time.monotonic()
        try:
            if self._loop is None:
                result = self._client.send_event(self._event_name, payload=payload)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise TransportError("send_event returned an awaitable: give RpcTransport the loop")
            else:
                if self._loop.is_closed():
                    raise TransportError("the runtime's event loop is closed")
                future = asyncio.run_coroutine_threadsafe(self._invoke(payload), self._loop)
                try:
                    result = future.result(self._reply_timeout_seconds)
                except concurrent.futures.TimeoutError:
                    future.cancel()
                    raise TransportError(
                        f"send_event did not complete within {self._reply_timeout_seconds:g} s"
                    ) from None
        except TransportError:
            self.close()
            raise
        except Exception as error:
            # The channel broke or refused the event: the handler keeps the frame and resends.
            self.close()
            raise TransportError(f"send_event failed: {type(error).__name__}: {error}") from None
        return result

    async def _invoke(self, payload: dict[str, Any]) -> Any:
        result = self._client.send_event(self._event_name, payload=payload)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _on_reply(self, reply: Any, last_seq: int) -> None:
        seq = _reply_seq(reply)
        if seq is not None:
            self._host_acks = True
        elif last_seq:
            seq = last_seq  # no reply on this channel: accepted by it counts as settled
        else:
            return
        self._acked_seq = max(self._acked_seq, seq)
        self._inbox.append(messages.ack(seq))


def _reply_seq(reply: Any) -> int | None:
    if isinstance(reply, int) and not isinstance(reply, bool):
        return reply
    if isinstance(reply, Mapping):
        seq = reply.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return seq
    return None


def last_record_seq(body: bytes) -> int:
    """The sequence number of a frame's last record (0 for none), without building the others."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(body), 1))
    unpacker.feed(body)
    try:
        fields = unpacker.read_map_header()
        for _ in range(fields):
            key = unpacker.unpack()
            if key != "records":
                unpacker.skip()
                continue
            count = unpacker.read_array_header()
            for _ in range(count - 1):
                unpacker.skip()
            if count:
                record = unpacker.unpack()
                return int(record[0])
    except Exception:
        return 0  # not a batch the handler built: nothing to acknowledge from it
    return 0


def frame_from_event(payload: Any, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    """Host side: the frame body an ``RpcTransport`` event carries, for ``handle_batch``.

    Raises ``ProtocolError`` (``malformed_batch``, ``frame_too_large``) for anything else.
    """
    if isinstance(payload, Mapping):
        frame = payload.get(FRAME_KEY)
        if isinstance(frame, bytes | bytearray | memoryview):
            body = bytes(frame)
        elif isinstance(payload.get(FRAME_BASE64_KEY), str):
            encoded: str = payload[FRAME_BASE64_KEY]
            if len(encoded) > (max_frame_bytes // 3 + 1) * 4:
                raise ProtocolError("frame_too_large", f"base64 frame of {len(encoded)} characters")
            try:
                body = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as error:
                raise ProtocolError("malformed_batch", f"frame_b64: {error}") from None
        else:
            raise ProtocolError("malformed_batch", "an RpcTransport event has 'frame' or 'frame_b64'")
    else:
        raise ProtocolError(
            "malformed_batch", f"an RpcTransport event is a map, got {type(payload).__name__}"
        )
    if len(body) > max_frame_bytes:
        raise ProtocolError("frame_too_large", f"frame of {len(body)} > max {max_frame_bytes}")
    return body
