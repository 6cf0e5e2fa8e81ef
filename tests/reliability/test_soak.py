"""Soak (issue #6, case 8): memory and file descriptors of host and runner stay flat after warm-up."""

from __future__ import annotations

import gc
import json
import logging
import os
import tracemalloc
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import PYTHON, write_plugin
from reliability_support import CountingSink, describe, drained, wait_for

from otel_plugin_logs import HostLogBridge, InMemoryTransport, RunnerLogHandler

SOAK_RUNNER = """
import gc, json, logging, os, sys, time, tracemalloc
from otel_plugin_logs import runner
out_dir, rate, seconds, warm, every = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
handler = runner.installed_handler()
log = logging.getLogger("soak")
log.setLevel(logging.INFO)
tracemalloc.start()
samples = []
start = time.monotonic()
next_sample = start + warm
i = 0
# At least four sample points however slow the machine is (each waits for both sides to
# settle), within four times the planned length.
while (time.monotonic() - start < seconds or len(samples) < 4) and time.monotonic() - start < 4 * seconds:
    log.info("soak %d", i, extra={"user": "u%d" % (i % 100), "n": i, "tags": ["a", "b"]})
    i += 1
    if i % 50 == 0:
        ahead = start + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    if time.monotonic() >= next_sample:
        # A sample point: everything settled on both sides, then both measure.
        assert handler.wait_acked(20000)
        gc.collect()
        k = len(samples)
        samples.append({"records": i, "traced": tracemalloc.get_traced_memory()[0],
                        "fds": len(os.listdir("/proc/self/fd"))})
        open(os.path.join(out_dir, "sample-%d" % k), "w").close()
        deadline = time.monotonic() + 20
        while not os.path.exists(os.path.join(out_dir, "host-%d" % k)) and time.monotonic() < deadline:
            time.sleep(0.01)
        next_sample = time.monotonic() + every
handler.wait_acked(20000)
with open(os.path.join(out_dir, "runner.json"), "w") as out:
    json.dump({"samples": samples, "emitted": i, **handler.stats()}, out)
"""


class _Counting(logging.Handler):
    """Replay target that keeps nothing: counts records and formats them, as a console would."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.count += 1


def _soak(tmp_path: Path, seconds: float, warm: float, every: float, rate: float = 2000.0) -> dict[str, Any]:
    script = write_plugin(tmp_path, "soak", SOAK_RUNNER)
    out_dir = tmp_path / "soak"
    out_dir.mkdir()
    replay = _Counting()
    plugin_logger = logging.getLogger("plugin")
    plugin_logger.addHandler(replay)
    plugin_logger.setLevel(logging.INFO)
    plugin_logger.propagate = False  # pytest's own log capture on the root logger keeps every record
    me = psutil.Process()
    sink = CountingSink(keep=False)
    host_samples: list[dict[str, int]] = []
    gc.collect()
    tracemalloc.start()
    try:
        with HostLogBridge(sink=sink) as bridge:
            process = bridge.spawn_plugin(
                "soak", [PYTHON, str(script), str(out_dir), str(rate), str(seconds), str(warm), str(every)]
            )
            # os.path, not pathlib, in this loop: pathlib interns every path part it builds.
            k = 0
            while True:
                sample = os.path.join(str(out_dir), f"sample-{k}")
                if not wait_for(
                    lambda s=sample: os.path.exists(s) or process.popen.poll() is not None, every + 60
                ):
                    break
                if not os.path.exists(sample):
                    break
                assert wait_for(lambda: bridge.stats().queue_records == 0, 20)
                gc.collect()
                host_samples.append(
                    {
                        "traced": tracemalloc.get_traced_memory()[0],
                        "fds": me.num_fds(),
                        "rss": me.memory_info().rss,
                    }
                )
                open(os.path.join(str(out_dir), f"host-{k}"), "w").close()
                k += 1
            assert process.wait(seconds + 120) == 0
            assert wait_for(lambda: drained(bridge, "soak"), 30)
            stats = bridge.stats().plugins["soak"]
    finally:
        tracemalloc.stop()
        plugin_logger.removeHandler(replay)
    runner = json.loads((out_dir / "runner.json").read_text())
    return {"host": host_samples, "runner": runner, "stats": stats, "replayed": replay.count}


def _check_flat(result: dict[str, Any], record_property: Any) -> None:
    host, runner, stats = result["host"], result["runner"], result["stats"]
    assert len(host) >= 3 and len(runner["samples"]) == len(host), (host, runner["samples"])
    first, last = host[0], host[-1]
    runner_first, runner_last = runner["samples"][0], runner["samples"][-1]
    records = runner_last["records"] - runner_first["records"]
    record_property("records_between_samples", records)
    record_property("host_traced_growth", last["traced"] - first["traced"])
    record_property("host_rss_growth", last["rss"] - first["rss"])
    record_property("host_fds", [s["fds"] for s in host])
    record_property("runner_traced_growth", runner_last["traced"] - runner_first["traced"])
    record_property("runner_fds", [s["fds"] for s in runner["samples"]])
    assert records > 5000
    assert stats.emitted == stats.exported == runner["emitted"] and stats.dropped == {}, describe(stats)
    assert result["replayed"] == runner["emitted"]
    assert {s["fds"] for s in host} == {first["fds"]}, host
    assert {s["fds"] for s in runner["samples"]} == {runner_first["fds"]}, runner["samples"]
    # A leak grows in every interval; a one-off resize of an interpreter-wide table does not.
    middle = host[len(host) // 2]
    assert last["traced"] - middle["traced"] < 512 * 1024, host
    assert last["traced"] - first["traced"] < 4 * 1024 * 1024, host
    assert runner_last["traced"] - runner_first["traced"] < 256 * 1024, runner["samples"]
    assert last["rss"] - first["rss"] < 32 * 1024 * 1024, host


def test_short_soak_memory_and_file_descriptors_stay_flat(
    tmp_path: Path, host_env: Path, record_property: Any
) -> None:
    """12 s at 2,000 records/s: after warm-up, traced memory and open fds of host and runner do not grow."""
    _check_flat(_soak(tmp_path, seconds=12, warm=3, every=2.5), record_property)


@pytest.mark.soak
@pytest.mark.timeout(1200)
def test_long_soak_memory_and_file_descriptors_stay_flat(
    tmp_path: Path, host_env: Path, record_property: Any
) -> None:
    """10 minutes at 2,000 records/s: memory and fds flat after warm-up."""
    _check_flat(_soak(tmp_path, seconds=600, warm=30, every=60), record_property)


SHORT_LIVED = """
import logging
log = logging.getLogger("short")
log.setLevel(logging.INFO)
for i in range(50):
    log.info("short %d", i)
"""


def test_host_memory_stays_flat_across_runner_restarts(
    tmp_path: Path, host_env: Path, record_property: Any
) -> None:
    """A plugin restarted 40 times: the host's memory does not grow with the number of runners that came and went."""
    script = write_plugin(tmp_path, "short", SHORT_LIVED)
    me = psutil.Process()

    def cycle(bridge: HostLogBridge, times: int) -> None:
        for _ in range(times):
            process = bridge.spawn_plugin("short", [PYTHON, str(script)])
            assert process.wait(30) == 0
            assert wait_for(lambda: drained(bridge, "short"), 10)

    with HostLogBridge(sink=CountingSink(keep=False)) as bridge:
        cycle(bridge, 5)
        gc.collect()
        tracemalloc.start()
        try:
            before, fds = tracemalloc.get_traced_memory()[0], me.num_fds()
            cycle(bridge, 40)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert me.num_fds() == fds
    record_property("bytes_per_runner", grown // 40)
    assert grown < 16 * 1024, f"{grown // 40} bytes kept per runner that exited"


def test_host_memory_stays_flat_across_rpc_runners_that_said_bye(host_env: Path) -> None:
    """Runners speaking through handle_batch leave nothing behind once they said bye; a retried bye changes nothing."""

    def frames_of_one_runner() -> list[bytes]:
        """What one runner sends over the host's RPC: a batch of one record, then its bye."""
        frames: list[bytes] = []
        handler = RunnerLogHandler(InMemoryTransport(lambda body: frames.append(body) or 1 << 62))
        handler.handle(logging.LogRecord("rpc.side", logging.INFO, __file__, 1, "hello %d", (1,), None))
        assert handler.shutdown(5000)
        return frames

    runners = [frames_of_one_runner() for _ in range(205)]  # built first: only the host is measured
    with HostLogBridge(sink=CountingSink(keep=False)) as bridge:
        for frames in runners[:5]:
            for frame in frames:
                bridge.handle_batch("rpc", frame)
        assert bridge.force_flush(5000)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for frames in runners[5:]:
                for frame in frames:
                    bridge.handle_batch("rpc", frame)
            assert bridge.force_flush(5000)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        balance = bridge.stats().plugins["rpc"]
        for frame in runners[0]:  # the first runner's frames again, its bye last: a retry
            bridge.handle_batch("rpc", frame)
        again = bridge.stats().plugins["rpc"]
    assert (balance.emitted, balance.exported, balance.dropped, balance.uncounted) == (205, 205, {}, 0)
    assert (again.emitted, again.exported, again.dropped, again.duplicates) == (205, 205, {}, 0)
    # Kept per finished rpc stream: one entry in a bounded map of retired streams.
    assert grown < 200 * 256, f"{grown // 200} bytes kept per rpc runner that said bye"
