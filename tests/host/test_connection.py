"""The runner connection state machine, driven with bytes only: no socket, loop or thread."""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from otel_plugin_logs.host.connection import (
    BatchReceived,
    ByeReceived,
    ConnectionState,
    HelloReceived,
    HelloRefused,
    ProtocolViolation,
    RunnerConnection,
)
from otel_plugin_logs.wire import messages
from otel_plugin_logs.wire.framing import FrameDecoder, encode_message

MAX_FRAME_BYTES = 64 * 1024


def hello_frame(**changes: Any) -> bytes:
    message = messages.hello("token-1", 1234, 0, "1.0", "3.11")
    message.update(changes)
    return encode_message(message)


def batch_frame(accepted: int = 1, **changes: Any) -> bytes:
    message = {**messages.batch_header(0, {}, accepted), "records": [], **changes}
    return encode_message(message)


def streaming() -> RunnerConnection:
    connection = RunnerConnection(MAX_FRAME_BYTES)
    connection.receive_data(hello_frame())
    connection.welcome(0, MAX_FRAME_BYTES)
    return connection


def decode(data: bytes) -> list[dict[str, Any]]:
    return list(FrameDecoder(MAX_FRAME_BYTES).feed(data))


def test_a_new_connection_awaits_its_hello() -> None:
    """Before anything arrives, the machine waits for a hello."""
    assert RunnerConnection(MAX_FRAME_BYTES).state is ConnectionState.AWAITING_HELLO


def test_a_hello_is_an_event_carrying_its_fields() -> None:
    """A well-formed hello comes out as HelloReceived with the runner's token, pid and stream."""
    (event,) = RunnerConnection(MAX_FRAME_BYTES).receive_data(hello_frame(stream=7))
    assert isinstance(event, HelloReceived)
    assert (event.hello.token, event.hello.pid, event.hello.stream) == ("token-1", 1234, 7)


def test_a_hello_split_over_many_reads_is_one_event() -> None:
    """Bytes arriving one at a time make the same single event."""
    connection = RunnerConnection(MAX_FRAME_BYTES)
    events = [event for byte in hello_frame() for event in connection.receive_data(bytes([byte]))]
    assert [type(event) for event in events] == [HelloReceived]


def test_a_hello_of_another_protocol_version_is_refused() -> None:
    """A hello of another version asks for a reject answer, naming the versions."""
    (event,) = RunnerConnection(MAX_FRAME_BYTES).receive_data(hello_frame(v=999))
    assert isinstance(event, HelloRefused)
    assert event.reason == "protocol_version"


def test_a_malformed_hello_is_refused() -> None:
    """A hello whose fields have the wrong types is refused as malformed."""
    (event,) = RunnerConnection(MAX_FRAME_BYTES).receive_data(hello_frame(pid="1234"))
    assert isinstance(event, HelloRefused)
    assert event.reason == "malformed_hello"


def test_a_batch_before_the_hello_is_a_violation() -> None:
    """The first frame must be a hello: a batch first closes the machine."""
    connection = RunnerConnection(MAX_FRAME_BYTES)
    (event,) = connection.receive_data(batch_frame())
    assert isinstance(event, ProtocolViolation)
    assert event.reason == "unexpected_frame"
    assert connection.state is ConnectionState.CLOSED


def test_welcome_starts_streaming_and_says_where_the_stream_stands() -> None:
    """Accepting the hello yields a welcome frame with the settled sequence number."""
    connection = RunnerConnection(MAX_FRAME_BYTES)
    connection.receive_data(hello_frame())
    (welcome,) = decode(connection.welcome(41, MAX_FRAME_BYTES))
    assert welcome["t"] == messages.WELCOME
    assert welcome["acked"] == 41
    assert connection.state is ConnectionState.STREAMING


def test_a_batch_while_streaming_is_an_event_with_its_header() -> None:
    """A batch after the welcome comes out as BatchReceived with its accepted count."""
    (event,) = streaming().receive_data(batch_frame(accepted=5))
    assert isinstance(event, BatchReceived)
    assert event.header.accepted == 5


def test_a_bye_is_its_own_event_and_is_remembered() -> None:
    """A bye comes out as ByeReceived, and the machine remembers that the runner said bye."""
    connection = streaming()
    (event,) = connection.receive_data(batch_frame(t=messages.BYE))
    assert isinstance(event, ByeReceived)
    assert connection.said_bye


def test_a_frame_body_reports_its_size() -> None:
    """A frame body cut by the I/O driver carries its size, for the byte rate limit."""
    body = msgpack.packb({**messages.batch_header(0, {}, 1), "records": []})
    event = streaming().receive_frame(body)
    assert isinstance(event, BatchReceived)
    assert event.frame_bytes == len(body)


def test_a_second_hello_is_a_violation() -> None:
    """Once streaming, only batches and a bye are allowed."""
    (event,) = streaming().receive_data(hello_frame())
    assert isinstance(event, ProtocolViolation)
    assert event.reason == "unexpected_frame"


def test_a_malformed_batch_is_a_violation() -> None:
    """A batch whose header has the wrong types closes the machine."""
    (event,) = streaming().receive_data(batch_frame(accepted="many"))
    assert isinstance(event, ProtocolViolation)
    assert event.reason == "malformed_batch"


def test_undecodable_bytes_are_a_violation() -> None:
    """A frame whose body is not msgpack is malformed."""
    body = b"\xc1\xc1\xc1"
    (event,) = streaming().receive_data(struct.pack(">I", len(body)) + body)
    assert isinstance(event, ProtocolViolation)
    assert event.reason == "malformed"


def test_an_oversized_length_prefix_is_a_violation_before_the_body() -> None:
    """A length prefix over the frame limit is refused from its four bytes alone."""
    (event,) = RunnerConnection(MAX_FRAME_BYTES).receive_data(struct.pack(">I", MAX_FRAME_BYTES + 1))
    assert isinstance(event, ProtocolViolation)
    assert event.reason == "frame_too_large"


def test_frames_after_a_violation_are_ignored() -> None:
    """After a violation nothing more comes out, whatever arrives."""
    connection = streaming()
    connection.receive_data(hello_frame())
    assert connection.receive_data(batch_frame()) == []
    assert connection.receive_frame(msgpack.packb({"t": "batch"})) is None


def test_frames_coalesced_in_one_read_stop_at_the_violation() -> None:
    """A good batch, a bad frame and another batch in one read: two events, the last ignored."""
    data = batch_frame() + hello_frame() + batch_frame()
    events = streaming().receive_data(data)
    assert [type(event) for event in events] == [BatchReceived, ProtocolViolation]


def test_reject_closes_and_says_why() -> None:
    """Refusing a hello yields a reject frame with the reason, and closes the machine."""
    connection = RunnerConnection(MAX_FRAME_BYTES)
    connection.receive_data(hello_frame())
    (reject,) = decode(connection.reject("bad_token", "unknown session token"))
    assert reject["t"] == messages.REJECT
    assert reject["reason"] == "bad_token: unknown session token"
    assert connection.state is ConnectionState.CLOSED


def test_acks_and_flushes_are_only_sent_while_streaming() -> None:
    """Before the welcome there is nothing to acknowledge: ack and flush yield no bytes."""
    connection = RunnerConnection(MAX_FRAME_BYTES)
    assert connection.ack(3) == b""
    assert connection.flush(1) == b""


def test_an_ack_while_streaming_names_the_sequence_number() -> None:
    """While streaming, an ack frame carries the settled sequence number."""
    (ack,) = decode(streaming().ack(9))
    assert ack == messages.ack(9)


def test_close_ends_the_machine() -> None:
    """After close, no event comes out and nothing is sent."""
    connection = streaming()
    connection.close()
    assert connection.receive_data(batch_frame()) == []
    assert connection.ack(1) == b""
