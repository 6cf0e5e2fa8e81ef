"""RpcTransport: the full runner handler over a plugin runtime's own RPC client (send_event, is_connected)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PYTHON, CaptureHandler, MemorySink, wait_until

from otel_plugin_logs import (
    FrameEncoding,
    HostLogBridge,
    ProtocolError,
    RpcTransport,
    RunnerLogHandler,
    TransportError,
    frame_from_event,
)
from otel_plugin_logs.wire.framing import encode_message


class SyncClient:
    """A client of the seed's shape whose host side is a bridge in this process."""

    def __init__(
        self, bridge: HostLogBridge, plugin: str, *, replies: bool = True, json_channel: bool = False
    ):
        self.bridge = bridge
        self.plugin = plugin
        self.replies = replies
        self.json_channel = json_channel
        self.is_connected = True
        self.lose_replies = 0  # the host takes the next N events, but their replies are lost
        self.threads: set[int] = set()

    def handle(self, name: str, payload: Any) -> Any:
        self.threads.add(threading.get_ident())
        assert name == "otel_plugin_logs.frame"
        if self.json_channel:
            payload = json.loads(json.dumps(payload))
        settled = self.bridge.handle_batch(self.plugin, frame_from_event(payload), pid=1234)
        if self.lose_replies:
            self.lose_replies -= 1
            raise ConnectionResetError("the channel broke before the reply")
        return settled if self.replies else None

    def send_event(self, name: str, payload: Any) -> Any:
        return self.handle(name, payload)


class AsyncClient(SyncClient):
    """The same with a coroutine send_event, as an asyncio runtime has it."""

    async def send_event(self, name: str, payload: Any) -> Any:  # type: ignore[override]
        await asyncio.sleep(0)
        return self.handle(name, payload)


async def _thread_ident() -> int:
    return threading.get_ident()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread, stopped and closed afterwards."""
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.call_soon_threadsafe(running.stop)
        thread.join(10)
        running.close()


@pytest.fixture
def bridge(host_env: Path) -> Iterator[tuple[HostLogBridge, MemorySink]]:
    """A started bridge exporting to memory."""
    sink = MemorySink()
    with HostLogBridge(sink=sink) as started:
        yield started, sink


def plugin_logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger("rpc.plugin")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def test_records_reach_the_host_with_typed_attributes(bridge: Any, capture: CaptureHandler) -> None:
    """Over a sync client, every record is replayed and exported, its extras keeping their types."""
    host, sink = bridge
    handler = RunnerLogHandler(RpcTransport(SyncClient(host, "rpcplugin")))
    logger = plugin_logger(handler)
    for i in range(20):
        logger.info("record %d", i, extra={"count": i, "ok": True, "ratio": 0.5})
    assert handler.shutdown(5000)
    assert host.force_flush(5000)
    assert [r.name for r in capture.plugin_records("rpcplugin")] == ["plugin.rpcplugin.rpc.plugin"] * 20
    exported = sink.entries("rpcplugin")
    assert [e.body for e in exported] == [f"record {i}" for i in range(20)]
    assert exported[3].attributes["count"] == 3 and exported[3].attributes["ok"] is True
    assert exported[3].attributes["code.function.name"] == "test_records_reach_the_host_with_typed_attributes"
    assert host.stats().plugins["rpcplugin"].uncounted == 0


def test_a_coroutine_client_is_called_on_its_own_loop(bridge: Any, loop: asyncio.AbstractEventLoop) -> None:
    """send_event as a coroutine runs on the runtime's loop, never on the handler's thread."""
    host, sink = bridge
    client = AsyncClient(host, "asyncplugin")
    handler = RunnerLogHandler(RpcTransport(client, loop=loop))
    logger = plugin_logger(handler)
    for i in range(10):
        logger.warning("async %d", i)
    assert handler.shutdown(5000)
    assert host.force_flush(5000)
    assert [e.body for e in sink.entries("asyncplugin")] == [f"async {i}" for i in range(10)]
    assert client.threads == {asyncio.run_coroutine_threadsafe(_thread_ident(), loop).result(5)}


def test_trace_context_travels_with_the_record(bridge: Any) -> None:
    """A record logged inside a span carries its trace and span ids to the host."""
    from opentelemetry.sdk.trace import TracerProvider

    host, sink = bridge
    handler = RunnerLogHandler(RpcTransport(SyncClient(host, "traced")))
    logger = plugin_logger(handler)
    with TracerProvider().get_tracer("test").start_as_current_span("work") as span:
        logger.info("inside")
        context = span.get_span_context()
    assert handler.shutdown(5000)
    assert host.force_flush(5000)
    (exported,) = sink.entries("traced")
    assert exported.trace_id == context.trace_id.to_bytes(16, "big")
    assert exported.span_id == context.span_id.to_bytes(8, "big")


def test_host_replies_release_what_the_runner_keeps_for_resending(bridge: Any) -> None:
    """When send_event returns the host's settled sequence, the runner learns every record was settled."""
    host, _ = bridge
    handler = RunnerLogHandler(RpcTransport(SyncClient(host, "acked")))
    logger = plugin_logger(handler)
    for i in range(50):
        logger.info("r %d", i)
    assert handler.force_flush(5000)
    assert wait_until(lambda: handler.stats()["acked_seq"] == 50, 20)
    assert handler.stats()["unacked_bytes"] == 0
    assert handler.shutdown(5000)


def test_a_channel_without_replies_settles_a_frame_once_sent(bridge: Any) -> None:
    """send_event returning nothing: a frame the channel took is no longer kept by the runner."""
    host, sink = bridge
    handler = RunnerLogHandler(RpcTransport(SyncClient(host, "noreply", replies=False)))
    logger = plugin_logger(handler)
    for i in range(30):
        logger.info("r %d", i)
    assert handler.force_flush(5000)
    assert wait_until(lambda: handler.stats()["acked_seq"] == 30, 20)
    assert handler.shutdown(5000)
    assert host.force_flush(5000)
    assert len(sink.entries("noreply")) == 30


def test_a_broken_channel_is_resent_and_the_host_drops_the_copies(bridge: Any) -> None:
    """A reply lost to a broken channel: the frame is resent, exported once, the copy counted as duplicate."""
    host, sink = bridge
    client = SyncClient(host, "resend")
    client.is_connected = False  # all 20 records wait, then go out as one frame
    handler = RunnerLogHandler(RpcTransport(client), reconnect_max_backoff_millis=100)
    logger = plugin_logger(handler)
    for i in range(20):
        logger.info("r %d", i)
    client.lose_replies = 1
    client.is_connected = True
    assert handler.shutdown(10_000)
    assert host.force_flush(5000)
    stats = host.stats().plugins["resend"]
    assert [e.body for e in sink.entries("resend")] == [f"r {i}" for i in range(20)]
    assert stats.duplicates == 20 and stats.exported == 20 and stats.uncounted == 0


def test_records_wait_while_the_client_is_disconnected(bridge: Any) -> None:
    """is_connected False: nothing is sent or lost; once it is back every record arrives."""
    host, sink = bridge
    client = SyncClient(host, "offline")
    client.is_connected = False
    handler = RunnerLogHandler(RpcTransport(client), reconnect_max_backoff_millis=100)
    logger = plugin_logger(handler)
    for i in range(15):
        logger.info("r %d", i)
    assert not handler.force_flush(300)
    assert "offline" not in host.stats().plugins
    client.is_connected = True
    assert handler.force_flush(10_000)
    assert handler.shutdown(5000)
    assert host.force_flush(5000)
    assert len(sink.entries("offline")) == 15


def test_is_connected_may_be_a_method(bridge: Any) -> None:
    """A client whose is_connected is a method is asked by calling it: False keeps records back."""
    host, sink = bridge

    class MethodClient:
        def __init__(self) -> None:
            self.inner = SyncClient(host, "method")
            self.up = False

        def is_connected(self) -> bool:
            return self.up

        def send_event(self, name: str, payload: Any) -> Any:
            return self.inner.handle(name, payload)

    client = MethodClient()
    handler = RunnerLogHandler(RpcTransport(client), reconnect_max_backoff_millis=100)
    plugin_logger(handler).info("waits for the channel")
    assert not handler.force_flush(300)
    client.up = True
    assert handler.shutdown(5000)
    assert host.force_flush(5000)
    assert [e.body for e in sink.entries("method")] == ["waits for the channel"]


def test_a_json_channel_carries_frames_as_base64(bridge: Any) -> None:
    """FrameEncoding.BASE64 survives a JSON round trip, binary trace ids and all."""
    from opentelemetry.sdk.trace import TracerProvider

    host, sink = bridge
    client = SyncClient(host, "jsonplugin", json_channel=True)
    handler = RunnerLogHandler(RpcTransport(client, encoding=FrameEncoding.BASE64))
    logger = plugin_logger(handler)
    with TracerProvider().get_tracer("test").start_as_current_span("work"):
        logger.error("über JSON", extra={"n": 1})
    assert handler.shutdown(5000)
    assert host.force_flush(5000)
    (exported,) = sink.entries("jsonplugin")
    assert exported.body == "über JSON" and exported.attributes["n"] == 1 and exported.trace_id is not None


def test_a_coroutine_client_without_a_loop_is_a_clear_error(bridge: Any) -> None:
    """Without the loop a coroutine cannot be run from the handler's thread: the send says so."""
    host, _ = bridge
    transport = RpcTransport(AsyncClient(host, "x"))
    transport.connect({"stream": 1}, 1.0)
    with pytest.raises(TransportError, match="give RpcTransport the loop"):
        transport.send(encode_message({"t": "batch", "stream": 1, "records": []}))


def test_a_reply_that_never_comes_times_out(loop: asyncio.AbstractEventLoop) -> None:
    """A send_event that hangs fails the send after reply_timeout_millis instead of blocking the handler."""

    class Hanging:
        is_connected = True

        async def send_event(self, name: str, payload: Any) -> None:
            await asyncio.Event().wait()

    transport = RpcTransport(Hanging(), loop=loop, reply_timeout_millis=200)
    transport.connect({"stream": 1}, 1.0)
    with pytest.raises(TransportError, match="did not complete"):
        transport.send(encode_message({"t": "batch", "stream": 1, "records": []}))
    assert not transport.connected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"raw", "malformed_batch"),
        ({"frame": "not bytes"}, "malformed_batch"),
        ({"frame_b64": "!!!"}, "malformed_batch"),
        ({"frame": b"x" * (8 * 1024 * 1024 + 1)}, "frame_too_large"),
        ({"frame_b64": "A" * (12 * 1024 * 1024)}, "frame_too_large"),
    ],
)
def test_frame_from_event_refuses_anything_else(payload: Any, reason: str) -> None:
    """The host-side unwrapping raises ProtocolError with a frame's reason for a payload that is not one."""
    with pytest.raises(ProtocolError) as raised:
        frame_from_event(payload)
    assert raised.value.reason == reason


def test_the_runner_side_imports_neither_pydantic_nor_the_sdk() -> None:
    """Importing the runner side with RpcTransport keeps a plugin process free of pydantic and the SDK."""
    code = (
        "import sys; from otel_plugin_logs.runner import RpcTransport, RunnerLogHandler; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'pydantic' or m.startswith('opentelemetry.sdk')]; "
        "print(bad)"
    )
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
