"""Hosts in their own processes, killed and restarted on one runtime dir (shared by the restart tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers import PYTHON, write_plugin
from reliability_support import HERE, read_sink_file, wait_for

BACKOFF_CAP_MILLIS = 400

RESTART_RUNNER = """
import json, logging, os, sys, time
from otel_plugin_logs import runner
out_path, prefix, rate, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
go = sys.argv[5] if len(sys.argv) > 5 else ""
pre = int(sys.argv[6]) if len(sys.argv) > 6 else 0
handler = runner.installed_handler()
attempts = []  # the backoff in effect at each connection attempt
handler.on_connect_attempt = attempts.append
log = logging.getLogger("restart")
log.setLevel(logging.INFO)
peak_queued = peak_bytes = 0
if go:  # phase 1: connect, burst `pre` records at once, get them settled, then wait for the go
    log.info("warmup")
    handler.wait_acked(30000)
    for i in range(pre):
        log.info("%s %d", prefix, i)
    handler.wait_acked(30000)
    with open(out_path + ".phase1", "w"):
        pass
    while not os.path.exists(go):
        time.sleep(0.01)
start = time.monotonic()
for i in range(pre, pre + count):
    log.info("%s %d", prefix, i)
    if i % 10 == 0:
        s = handler.stats()
        peak_queued = max(peak_queued, s["queued"])
        peak_bytes = max(peak_bytes, s["queued_bytes"] + s["unacked_bytes"])
        if rate > 0:
            ahead = start + (i - pre) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
with open(out_path + ".logged", "w"):
    pass
acked = handler.wait_acked(60000)
stats = handler.stats()
complete = handler.shutdown()
with open(out_path + ".tmp", "w") as out:
    json.dump({"acked": acked, "complete": complete, "peak_queued": peak_queued, "peak_bytes": peak_bytes,
               "attempts": attempts, **stats}, out)
os.replace(out_path + ".tmp", out_path)
"""


class HostProcess:
    """One incarnation of the host bridge in its own process (see host_process.py)."""

    def __init__(
        self,
        work: Path,
        label: str,
        runtime_dir: Path,
        spawn: list[dict[str, Any]] | None = None,
        hold: bool = False,
    ) -> None:
        self.dir = work / label
        self.dir.mkdir(parents=True)
        self.sink_dir = self.dir / "sink"
        self.sink_dir.mkdir()
        self.hold = self.dir / "hold"
        self.held = self.dir / "held"
        self.ready = self.dir / "ready.json"
        self.stats_path = self.dir / "stats.json"
        spec = {
            "runtime_dir": str(runtime_dir),
            "sink_dir": str(self.sink_dir),
            "spawn": spawn or [],
            "ready": str(self.ready),
            "stats": str(self.stats_path),
            "hold": str(self.hold),
            "held": str(self.held),
            "settings": {"export_schedule_delay_millis": 100},
        }
        (self.dir / "spec.json").write_text(json.dumps(spec))
        if hold:
            self.hold.touch()
        self.log = open(self.dir / "host.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [PYTHON, str(HERE / "host_process.py"), str(self.dir / "spec.json")],
            stdout=self.log,
            stderr=self.log,
        )
        assert wait_for(self.ready.exists, 60), (self.dir / "host.log").read_text()
        self.pids: dict[str, int] = json.loads(self.ready.read_text())["pids"]

    def stats(self) -> dict[str, Any]:
        try:
            return json.loads(self.stats_path.read_text())
        except (FileNotFoundError, ValueError):
            return {"plugins": {}}

    def plugin(self, name: str) -> dict[str, Any]:
        return self.stats()["plugins"].get(name, {})

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0
        self.log.close()
        return self.stats()

    def records(self) -> list[dict[str, Any]]:
        return read_sink_file(self.sink_dir)


@contextlib.contextmanager
def cleanup(hosts: list[HostProcess]) -> Iterator[None]:
    try:
        yield
    finally:
        for host in hosts:
            if host.process.poll() is None:
                host.process.kill()
                host.process.wait(10)
            for pid in host.pids.values():  # runners this test's host started
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def runner_spec(
    script: Path,
    out: Path,
    name: str,
    rate: int,
    count: int,
    env: dict[str, str],
    go: Path | None = None,
    pre: int = 0,
) -> dict[str, Any]:
    argv = [PYTHON, str(script), str(out), name, str(rate), str(count)]
    if go is not None:
        argv += [str(go), str(pre)]
    return {
        "name": name,
        "argv": argv,
        "env": {"OTEL_PLUGIN_LOGS_RECONNECT_MAX_BACKOFF_MILLIS": str(BACKOFF_CAP_MILLIS), **env},
    }


def restart_between_export_and_ack(tmp_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Plugin gamma logs 100 records; its host is killed after writing a batch to the sink and
    before acknowledging it; a second host on the same runtime dir takes the runner back.
    Returns the records both hosts exported and the second host's final stats."""
    runtime = tmp_path / "rt"
    script = write_plugin(tmp_path, "restart", RESTART_RUNNER)
    out = tmp_path / "gamma.json"
    hosts: list[HostProcess] = []
    with cleanup(hosts):
        first = HostProcess(
            tmp_path, "host-1", runtime, [runner_spec(script, out, "gamma", 0, 100, {})], hold=True
        )
        hosts.append(first)
        assert wait_for(first.held.exists, 60)  # written to the sink, not yet settled nor acked
        first.kill()
        second = HostProcess(tmp_path, "host-2", runtime)
        hosts.append(second)
        assert wait_for(out.exists, 60)
        assert wait_for(lambda: not second.plugin("gamma").get("busy", True), 30)
        final = second.stop()
        return first.records() + second.records(), final
