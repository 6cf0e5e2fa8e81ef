"""The bridge's lifecycle: NEW -> RUNNING -> STOPPING -> CLOSED, with one deadline for shutdown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import MemorySink

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.host.bridge import HostState


def test_a_new_bridge_is_new(host_env: Path) -> None:
    """Before start() nothing runs and the state says so."""
    assert HostLogBridge(sink=MemorySink()).state is HostState.NEW


def test_shutdown_before_start_closes_the_bridge(host_env: Path) -> None:
    """shutdown() on a bridge never started closes it; it reports nothing lost."""
    bridge = HostLogBridge(sink=MemorySink())
    assert bridge.shutdown(1000)
    assert bridge.state is HostState.CLOSED


def test_start_after_shutdown_raises_a_clear_error(host_env: Path) -> None:
    """A closed bridge cannot start again: that would leave a loop and a socket behind."""
    bridge = HostLogBridge(sink=MemorySink())
    bridge.shutdown(1000)
    with pytest.raises(RuntimeError, match="shut down"):
        bridge.start()


def test_start_while_running_is_idempotent(host_env: Path) -> None:
    """A second start() returns the same running bridge."""
    with HostLogBridge(sink=MemorySink()) as bridge:
        assert bridge.start() is bridge
        assert bridge.state is HostState.RUNNING


def test_shutdown_closes_and_removes_the_socket(host_env: Path) -> None:
    """After shutdown the bridge is closed and its socket is gone."""
    bridge = HostLogBridge(sink=MemorySink()).start()
    socket_path = bridge.socket_path
    assert os.path.exists(socket_path)
    assert bridge.shutdown(2000)
    assert bridge.state is HostState.CLOSED
    assert not os.path.exists(socket_path)


def test_a_second_shutdown_does_nothing(host_env: Path) -> None:
    """shutdown() is idempotent: the second call returns at once, still closed."""
    bridge = HostLogBridge(sink=MemorySink()).start()
    bridge.shutdown(2000)
    assert bridge.shutdown(2000)
    assert bridge.state is HostState.CLOSED


def test_registering_a_runner_needs_a_running_bridge(host_env: Path) -> None:
    """A token is only issued by a bridge that listens."""
    bridge = HostLogBridge(sink=MemorySink())
    with pytest.raises(RuntimeError, match="start the bridge"):
        bridge.register_runner("early")
