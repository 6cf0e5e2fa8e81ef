"""wait_acked asks a real host where it stands at a pace, not in a loop of empty batches."""

from __future__ import annotations

import logging
import os

import pytest

from otel_plugin_logs import HostLogBridge, RunnerLogHandler, UnixSocketTransport
from otel_plugin_logs.testing import MemorySink
from otel_plugin_logs.wire.framing import HEADER_BYTES, decode_message


class CountingSocket(UnixSocketTransport):
    """The real socket transport, counting the empty batches it sends."""

    empty_batches = 0

    def send(self, frame: bytes) -> None:
        if not decode_message(frame[HEADER_BYTES:]).get("records"):
            self.empty_batches += 1
        super().send(frame)


def test_wait_acked_sends_a_few_probes_while_the_host_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting for the host's acknowledgement costs a probe per poll interval, not one per sender cycle."""
    with HostLogBridge(sink=MemorySink()) as bridge:
        env = bridge.register_runner("probes", pid=os.getpid())
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        transport = CountingSocket(env["OTEL_PLUGIN_LOGS_SOCKET"])
        handler = RunnerLogHandler(transport)
        logger = logging.getLogger("probes.unit")
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
        try:
            for rounds in range(5):
                for i in range(200):
                    logger.info("record %d of round %d", i, rounds)
                assert handler.wait_acked(10_000)
        finally:
            handler.shutdown(2000)
            logger.handlers[:] = []
    # Five waits of about one host ack interval each: a poll-paced probe is a handful per wait.
    assert transport.empty_batches <= 5 * 15
