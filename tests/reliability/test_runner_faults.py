"""Runner-side faults (issue #6, cases 1, 5 and 7): SIGKILL, slow host with a burst, shutdown with records in flight."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from helpers import PYTHON, CaptureHandler, write_plugin
from reliability_support import STEADY_RUNNER, CountingSink, describe, drained, settled, wait_for

from otel_plugin_logs import HostLogBridge, InMemoryTransport, PluginProcess, RunnerLogHandler

FOREVER = """
import logging, os, sys, time
from otel_plugin_logs import runner
acked_path = sys.argv[1]
handler = runner.installed_handler()
def remember(seq):
    with open(acked_path + ".tmp", "w") as out:
        out.write(str(seq))
    os.replace(acked_path + ".tmp", acked_path)
handler.on_ack = remember
log = logging.getLogger("loop")
log.setLevel(logging.INFO)
i = 0
while True:
    log.info("tick %d", i)
    i += 1
    if i % 100 == 0:
        time.sleep(0.005)
"""


def _acked(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _bystander(bridge: HostLogBridge, tmp_path: Path, name: str, count: int) -> PluginProcess:
    script = write_plugin(tmp_path, "steady", STEADY_RUNNER)
    return bridge.spawn_plugin(
        name, [PYTHON, str(script), str(tmp_path / f"{name}.json"), name, "500", str(count)]
    )


def test_sigkill_mid_stream_delivers_every_acknowledged_record(
    tmp_path: Path, host_env: Path, caplog: pytest.LogCaptureFixture, record_property: Any
) -> None:
    """SIGKILL while logging: every acked record was exported, the exit is reported and exported, the host and a bystander are unaffected."""
    acked_file = tmp_path / "acked"
    script = write_plugin(tmp_path, "forever", FOREVER)
    sink = CountingSink()
    with HostLogBridge(sink=sink) as bridge:
        calm = _bystander(bridge, tmp_path, "calm", 1000)
        doomed = bridge.spawn_plugin("doomed", [PYTHON, str(script), str(acked_file)])
        assert wait_for(lambda: _acked(acked_file) > 3000, 60)
        doomed.send_signal(signal.SIGKILL)
        assert doomed.wait(20) == -signal.SIGKILL
        acked = _acked(acked_file)
        assert calm.wait(60) == 0
        assert wait_for(lambda: drained(bridge, "calm"), 20)
        assert bridge.wait_for_plugin("doomed", 10) and bridge.force_flush(10_000)
        live = bridge.stats().plugins["doomed"]
    final = bridge.stats().plugins["doomed"]
    exported = sink.unique("doomed")
    assert set(range(1, acked + 1)) <= exported, (
        f"{len(set(range(1, acked + 1)) - exported)} acked records missing"
    )
    assert sink.rows("doomed") == len(exported) == final.exported
    assert final.exits == (-signal.SIGKILL,)
    assert settled(final), describe(final)
    assert final.emitted == final.exported + final.dropped_total
    assert live.exported == final.exported
    notices = [attrs for plugin, attrs in sink.notices if plugin == "doomed"]
    assert {"bridge.event": "runner_exit", "bridge.reason": "signal 9", "bridge.count": 1} in notices
    assert any(
        "exited with signal 9" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )
    calm_stats = bridge.stats().plugins["calm"]
    assert calm_stats.exported == calm_stats.emitted == 1000 and calm_stats.dropped == {}
    record_property("acked_before_kill", acked)
    record_property("doomed", describe(final))


ANNOUNCE_THEN_DIE = """
import os, signal, socket, time
from otel_plugin_logs.wire.framing import FrameDecoder, encode_message
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["OTEL_PLUGIN_LOGS_SOCKET"])
sock.sendall(encode_message({"t": "hello", "v": 1, "token": os.environ["OTEL_PLUGIN_LOGS_TOKEN"],
                             "pid": os.getpid(), "stream": 5}))
now = time.time_ns()
records = [[seq, now, now, 9, "INFO", "sent %d" % seq, "announce", {}, None, None, 0, None, 20]
           for seq in range(1, 51)]
# 100 records logged, the first 50 sent: the other 50 die with the process.
sock.sendall(encode_message({"t": "batch", "stream": 5, "dropped": {}, "accepted": 100, "records": records}))
decoder = FrameDecoder()
while True:
    if any(m.get("t") == "ack" and m.get("seq", 0) >= 50 for m in decoder.feed(sock.recv(65536))):
        break
sock.close()  # the connection goes first (say a send timed out), without a bye ...
time.sleep(0.5)  # ... the host sees the runner still alive ...
os.kill(os.getpid(), signal.SIGKILL)  # ... and then it dies
"""


def test_killed_runner_leaves_no_uncounted_records_while_the_host_keeps_running(
    tmp_path: Path, host_env: Path
) -> None:
    """A runner that lost its connection, then was killed: once its exit is reported, the 50 records it never sent are a gap."""
    script = write_plugin(tmp_path, "announce", ANNOUNCE_THEN_DIE)
    sink = CountingSink()
    with HostLogBridge(sink=sink) as bridge:
        process = bridge.spawn_plugin("announce", [PYTHON, str(script)], auto_install=False)
        assert process.wait(30) == -signal.SIGKILL
        assert bridge.wait_for_plugin("announce", 10) and bridge.force_flush(10_000)
        live = bridge.stats().plugins["announce"]
        assert live.exported == 50 and live.emitted == 100
        assert settled(live) and live.dropped == {"gap": 50}, describe(live)


def test_killed_runner_is_fully_counted_by_shutdown(tmp_path: Path, host_env: Path) -> None:
    """At the latest when the bridge shuts down, a killed runner's unsent records are counted as gap."""
    script = write_plugin(tmp_path, "announce", ANNOUNCE_THEN_DIE)
    with HostLogBridge(sink=CountingSink()) as bridge:
        process = bridge.spawn_plugin("announce", [PYTHON, str(script)], auto_install=False)
        assert process.wait(30) == -signal.SIGKILL
        assert bridge.wait_for_plugin("announce", 10) and bridge.force_flush(10_000)
    final = bridge.stats().plugins["announce"]
    assert final.exported == 50 and final.dropped == {"gap": 50} and settled(final), describe(final)


SLOW_HOST_BURST = """
import json, logging, sys
from otel_plugin_logs import runner
out_path, count = sys.argv[1], int(sys.argv[2])
handler = runner.installed_handler()
log = logging.getLogger("burst")
log.setLevel(logging.INFO)
peak_queued = peak_bytes = 0
for i in range(count):
    log.info("burst %d", i)
    if i % 50 == 0:
        s = handler.stats()
        peak_queued = max(peak_queued, s["queued"])
        peak_bytes = max(peak_bytes, s["queued_bytes"] + s["unacked_bytes"])
complete = handler.shutdown()
with open(out_path, "w") as out:
    json.dump({"peak_queued": peak_queued, "peak_bytes": peak_bytes, "complete": complete, **handler.stats()}, out)
"""


def test_slow_host_and_a_burst_keep_the_runner_within_its_bounds_and_count_drops(
    tmp_path: Path, host_env: Path, record_property: Any
) -> None:
    """A 50k burst against a host that acks slowly: the runner's queue and bytes stay under their bounds, every drop is counted."""
    script = write_plugin(tmp_path, "burst", SLOW_HOST_BURST)
    out = tmp_path / "burst.json"
    sink = CountingSink()
    sink.delay = 0.05  # every export request takes 50 ms: acks trail far behind the burst
    env = dict(
        os.environ,
        OTEL_PLUGIN_LOGS_RUNNER_MAX_QUEUE_RECORDS="2000",
        OTEL_PLUGIN_LOGS_RUNNER_MAX_QUEUE_BYTES=str(1024 * 1024),
    )
    with HostLogBridge(sink=sink, export_max_batch_records=256) as bridge:
        process = bridge.spawn_plugin("burst", [PYTHON, str(script), str(out), "50000"], env=env)
        assert process.wait(120) == 0
        assert wait_for(lambda: drained(bridge, "burst"), 60)
        stats = bridge.stats().plugins["burst"]
    runner = json.loads(out.read_text())
    record_property("runner_peaks", (runner["peak_queued"], runner["peak_bytes"]))
    record_property("burst", describe(stats))
    assert runner["peak_queued"] <= 2000 and runner["peak_bytes"] <= 1024 * 1024, runner
    assert runner["accepted"] == stats.emitted == 50_000
    assert runner["dropped"].get("queue_full", 0) > 0, "the burst should have overrun the runner's buffer"
    assert stats.dropped.get("runner_queue_full") == runner["dropped"]["queue_full"]
    assert settled(stats) and stats.exported + stats.dropped_total == 50_000, describe(stats)
    assert sink.rows("burst") == len(sink.unique("burst")) == stats.exported


def test_runner_byte_bound_holds_for_real_memory(capfd: pytest.CaptureFixture[str]) -> None:
    """With the host unreachable, the memory the runner's buffer really holds (tracemalloc) stays within max_queue_bytes."""
    bound = 1024 * 1024
    handler = RunnerLogHandler(
        InMemoryTransport(lambda body: 0, fail=True),
        max_queue_bytes=bound,
        max_queue_records=1_000_000,
        reconnect_max_backoff_millis=60_000,
    )
    logger = logging.getLogger("bounded")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.info("warm-up")
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(5000):
            logger.info("request %d done", i, extra={"payload": f"{i:08d}" * 500})
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        handler.shutdown(0)
        capfd.readouterr()
    assert handler.stats()["queued_bytes"] <= bound
    assert held <= bound * 1.25, f"{held / bound:.1f}x the configured bound"


SHUTDOWN_RUNNER = """
import logging, sys, time
log = logging.getLogger("inflight")
log.setLevel(logging.INFO)
for i in range(int(sys.argv[2])):
    log.info("inflight %d", i)
open(sys.argv[1], "w").close()
time.sleep(60)
"""


@pytest.mark.parametrize("healthy", [True, False], ids=["exporter-up", "exporter-down"])
def test_clean_shutdown_with_records_in_flight_exports_or_counts_them(
    tmp_path: Path, host_env: Path, healthy: bool, record_property: Any
) -> None:
    """bridge.shutdown() with 20k records in runner, socket and export queue: all exported in the deadline, or counted."""
    script = write_plugin(tmp_path, "inflight", SHUTDOWN_RUNNER)
    marker = tmp_path / "logged"
    sink = CountingSink()
    sink.fail = not healthy
    replayed = CaptureHandler()
    logging.getLogger("plugin").addHandler(replayed)
    bridge = HostLogBridge(sink=sink, export_retry_max_backoff_millis=100)
    bridge.start()
    process = bridge.spawn_plugin("inflight", [PYTHON, str(script), str(marker), "20000"])
    try:
        assert wait_for(marker.exists, 60)
        clean = bridge.shutdown(10_000 if healthy else 1500)
    finally:
        process.kill()
        logging.getLogger("plugin").removeHandler(replayed)
    stats = bridge.stats().plugins["inflight"]
    record_property("inflight", describe(stats))
    assert stats.pending == 0 and stats.uncounted == 0, describe(stats)
    assert stats.emitted == 20_000
    if healthy:
        assert clean and stats.exported == 20_000 and stats.dropped == {}, describe(stats)
        assert sink.unique("inflight") == set(range(1, 20_001))
    else:
        assert stats.exported == 0 and stats.dropped == {"shutdown_unexported": 20_000}, describe(stats)


def test_shutdown_says_so_when_it_had_to_drop_records(tmp_path: Path, host_env: Path) -> None:
    """With the exporter down, shutdown() returns False because records were dropped at shutdown."""
    script = write_plugin(tmp_path, "inflight", SHUTDOWN_RUNNER)
    marker = tmp_path / "logged"
    sink = CountingSink()
    sink.fail = True
    bridge = HostLogBridge(sink=sink, export_retry_max_backoff_millis=100)
    bridge.start()
    process = bridge.spawn_plugin("inflight", [PYTHON, str(script), str(marker), "5000"])
    try:
        assert wait_for(marker.exists, 60)
        assert wait_for(lambda: bridge.stats().plugins["inflight"].received == 5000, 30)
        clean = bridge.shutdown(1000)
    finally:
        process.kill()
    assert bridge.stats().plugins["inflight"].dropped == {"shutdown_unexported": 5000}
    assert clean is False
