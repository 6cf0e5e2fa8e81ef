"""Connection floods (issue 13, item 1): the host's memory and descriptors stay bounded, an honest plugin gets in."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import PYTHON, CaptureHandler, MemorySink, write_plugin
from reliability_support import BYSTANDER, HERE, RawRunner, describe, no_tracebacks, settled, wait_for

from otel_plugin_logs import HostLogBridge, PluginProcess

MIB = 1024 * 1024
Attack = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def attack(tmp_path: Path) -> Iterator[Attack]:
    """Start attacker.py processes (bounded in count and time); each is killed by pid afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(socket_path: str, kind: str, connections: int, **extra: Any) -> subprocess.Popen[bytes]:
        name = f"attack{len(started)}"
        spec = {
            "socket": socket_path,
            "attack": kind,
            "connections": connections,
            "ready": str(tmp_path / f"{name}.ready"),
            "stop": str(tmp_path / f"{name}.stop"),
            "hold_seconds": 60,
            **extra,
        }
        (tmp_path / f"{name}.json").write_text(json.dumps(spec))
        process = subprocess.Popen([PYTHON, str(HERE / "attacker.py"), str(tmp_path / f"{name}.json")])
        started.append(process)
        assert wait_for(lambda: Path(spec["ready"]).exists() or process.poll() is not None, 60)
        assert process.poll() is None, "the attacker ended before its flood was set up"
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture
def bridge(host_env: Path) -> Iterator[HostLogBridge]:
    bridge = HostLogBridge(sink=MemorySink(), frame_timeout_millis=2_000)
    bridge.start()
    try:
        yield bridge
    finally:
        bridge.shutdown(5000)


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _summary(tmp_path: Path, index: int = 0) -> dict[str, Any]:
    return dict(json.loads((tmp_path / f"attack{index}.ready").read_text()))


def _honest_plugin_gets_in(
    bridge: HostLogBridge, tmp_path: Path, attacker: subprocess.Popen[bytes]
) -> tuple[PluginProcess, float]:
    """Start the bystander during the flood; returns it and how long it took to connect."""
    script = write_plugin(tmp_path, "bystander", BYSTANDER)
    started = time.monotonic()
    process = bridge.spawn_plugin("bystander", [PYTHON, str(script)])

    def connected() -> bool:
        stats = bridge.stats().plugins.get("bystander")
        return stats is not None and stats.connections >= 1

    assert wait_for(connected, 30), "the honest plugin never connected"
    took = time.monotonic() - started
    assert attacker.poll() is None, "the flood was over before the honest plugin got in"
    return process, took


def _bystander_complete(bridge: HostLogBridge, process: PluginProcess) -> None:
    assert process.wait(60) == 0
    assert bridge.wait_for_plugin("bystander", 20)
    # Not force_flush: it would wait for the attacker's connections too, which never answer.
    assert wait_for(lambda: settled(bridge.stats().plugins["bystander"]), 20)
    stats = bridge.stats().plugins["bystander"]
    assert stats.exported == 200 and stats.dropped == {} and settled(stats), describe(stats)
    assert stats.connections == 1, "the honest plugin was disconnected during the flood"


def test_silent_connection_flood_keeps_descriptors_bounded_and_lets_a_plugin_in(
    bridge: HostLogBridge, attack: Attack, tmp_path: Path, record_property: Any
) -> None:
    """3,000 connections that never speak: the handshake pool evicts the oldest silent one, the host's fds stay bounded, a plugin started meanwhile connects at once and loses nothing."""
    fds_before = psutil.Process().num_fds()
    attacker = attack(bridge.socket_path, "silent", 3000)
    assert _summary(tmp_path)["connected"] + _summary(tmp_path)["refused"] == 3000
    fds_during = psutil.Process().num_fds()
    process, took = _honest_plugin_gets_in(bridge, tmp_path, attacker)
    record_property("connect_seconds_during_silent_flood", round(took, 3))
    _bystander_complete(bridge, process)
    rejected = bridge.stats().rejected_connections
    assert rejected.get("pending_evicted", 0) >= 3000 - 64 - 16, rejected
    # The handshake pool (64), as many again being closed, and the plugin's own pipes and socket.
    assert fds_during - fds_before <= 2 * 64 + 16, f"{fds_during - fds_before} more descriptors"


def test_big_length_prefixes_without_a_token_are_refused_before_anything_is_buffered(
    bridge: HostLogBridge, attack: Attack, tmp_path: Path, record_property: Any
) -> None:
    """100 connections announcing 8 MiB frames before any hello: each is closed at its 4-byte prefix; host RSS stays flat."""
    before = _rss()
    attack(bridge.socket_path, "big_prefix", 100)
    # Closed at the prefix, or (having said nothing yet when accepted) evicted from the handshake pool.
    assert wait_for(lambda: sum(bridge.stats().rejected_connections.values()) >= 100, 30), (
        bridge.stats().rejected_connections
    )
    assert bridge.stats().rejected_connections.get("frame_too_large", 0) >= 1
    grown = _rss() - before
    record_property("rss_growth_bytes_big_prefix_no_token", grown)
    assert grown < 32 * MIB, f"host RSS grew by {grown / MIB:.1f} MiB"


def test_unfinished_big_frames_with_a_token_stay_within_the_ingest_budget(
    bridge: HostLogBridge, attack: Attack, tmp_path: Path, record_property: Any
) -> None:
    """A runner's token on 100 connections, each leaving an 8 MiB frame one byte short: at most 64 streams, frames held within the budget, stalled ones closed; an honest plugin is unaffected."""
    token = bridge.register_runner("hog")["OTEL_PLUGIN_LOGS_TOKEN"]
    before = _rss()
    attacker = attack(bridge.socket_path, "big_authed", 100, token=token)
    summary = _summary(tmp_path)
    assert summary["welcomed"] == 64 and summary["rejected"] == 36, summary
    grown = _rss() - before
    process, took = _honest_plugin_gets_in(bridge, tmp_path, attacker)
    record_property("rss_growth_bytes_big_frames_with_token", grown)
    record_property("connect_seconds_during_big_frames", round(took, 3))
    # The budget (64 MiB, 16 MiB for one plugin) plus one read chunk per connection.
    assert grown < 16 * MIB + 64 * 256 * 1024 + 32 * MIB, f"host RSS grew by {grown / MIB:.1f} MiB"
    _bystander_complete(bridge, process)

    def stalled() -> int:
        return bridge.stats().plugins["hog"].bad_input.get("frame_timeout", 0)

    assert wait_for(lambda: stalled() >= 2, 30), bridge.stats().plugins["hog"].bad_input


def test_streams_per_runner_are_capped_and_a_disconnected_one_is_retired(bridge: HostLogBridge) -> None:
    """64 connected streams of one token: the 65th hello is refused; once one disconnects it is retired and the 65th gets in."""
    token = bridge.register_runner("many")["OTEL_PLUGIN_LOGS_TOKEN"]
    runners = [RawRunner(bridge.socket_path, stream=index) for index in range(1, 65)]
    try:
        assert all(runner.hello(token)["t"] == "welcome" for runner in runners)
        extra = RawRunner(bridge.socket_path, stream=65)
        answer = extra.hello(token)
        assert answer["t"] == "reject" and "too_many_streams" in answer["reason"], answer
        extra.close()
        runners[0].close()

        def retry() -> bool:
            again = RawRunner(bridge.socket_path, stream=66)
            welcomed = again.hello(token)["t"] == "welcome"
            runners.append(again)
            return welcomed

        assert wait_for(retry, 20, interval=0.1)
    finally:
        for runner in runners:
            runner.close()
    stats = bridge.stats().plugins["many"]
    assert stats.bad_input == {"too_many_streams": stats.bad_input["too_many_streams"]}, stats.bad_input
    assert stats.uncounted == 0, describe(stats)


EMFILE_HOST = """
import json, logging, os, resource, sys, time
from otel_plugin_logs import HostLogBridge

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
bridge = HostLogBridge(report_interval_millis=60_000)
bridge.start()
filler = []
try:
    while True:  # the rest of a busy host application holds every descriptor but a few
        filler.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    for fd in filler[-8:]:
        os.close(fd)
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(bridge.socket_path)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
while not os.path.exists(sys.argv[2]):
    time.sleep(0.02)
stats = bridge.stats()
bridge.shutdown(2000)
print("STATS " + json.dumps(stats.rejected_connections), file=sys.stderr)
"""


def test_accept_errors_back_off_with_one_counted_warning(
    host_env: Path, attack: Attack, tmp_path: Path
) -> None:
    """A host out of descriptors (EMFILE) under a connection flood: accept backs off, one warning, the failures counted, no traceback."""
    script = write_plugin(tmp_path, "emfile_host", EMFILE_HOST)
    ready, stop = tmp_path / "host.ready", tmp_path / "host.stop"
    host = subprocess.Popen(
        [PYTHON, str(script), str(ready), str(stop)], stderr=subprocess.PIPE, env=dict(os.environ)
    )
    try:
        assert wait_for(lambda: ready.exists() or host.poll() is not None, 30)
        attack(ready.read_text(), "silent", 300)
        stop.touch()
        _, err = host.communicate(timeout=30)
    finally:
        if host.poll() is None:
            os.kill(host.pid, signal.SIGKILL)
            host.wait(10)
    text = err.decode(errors="replace")
    stats = json.loads(text.rsplit("STATS ", 1)[1])
    assert stats.get("accept_error", 0) >= 1, text[-2000:]
    assert text.count("cannot accept runner connections") == 1, text[-2000:]
    assert "Traceback" not in text and "out of system resource" not in text, text[-2000:]


def test_no_traceback_reaches_the_host_log_during_a_flood(
    bridge: HostLogBridge, attack: Attack, tmp_path: Path
) -> None:
    """Refusals and evictions under a 1,000-connection flood are counted warnings, never tracebacks."""
    capture = CaptureHandler()
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        attack(bridge.socket_path, "big_prefix", 1000)
        assert wait_for(lambda: sum(bridge.stats().rejected_connections.values()) >= 1000, 30)
    finally:
        root.removeHandler(capture)
    assert no_tracebacks(capture.records) == []
