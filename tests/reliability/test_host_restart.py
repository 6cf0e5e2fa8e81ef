"""The host is killed and restarted while runners keep logging (issue #6, case 2), and a frozen host (case 5)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import PYTHON, MemorySink, write_plugin
from reliability_support import RawRunner, numbered, read_sink_file, wait_for
from restart_support import (
    BACKOFF_CAP_MILLIS,
    RESTART_RUNNER,
    HostProcess,
    cleanup,
    restart_between_export_and_ack,
    runner_spec,
)

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.export.file_sink import FileSink
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.otlp import Entry, ResourceInfo


def test_host_killed_and_restarted_while_runners_log_loses_nothing_uncounted(
    tmp_path: Path, host_env: Path, record_property: Any
) -> None:
    """SIGKILL the host mid-stream, restart it on the same runtime dir: runners back off, reconnect, resend; delivered + counted == emitted."""
    runtime = tmp_path / "rt"
    script = write_plugin(tmp_path, "restart", RESTART_RUNNER)
    outs = {name: tmp_path / f"{name}.json" for name in ("alpha", "beta")}
    spawn = [
        runner_spec(script, outs["alpha"], "alpha", 500, 2500, {}),
        runner_spec(
            script, outs["beta"], "beta", 500, 2500, {"OTEL_PLUGIN_LOGS_RUNNER_MAX_QUEUE_RECORDS": "200"}
        ),
    ]
    hosts: list[HostProcess] = []
    with cleanup(hosts):
        first = HostProcess(tmp_path, "host-1", runtime, spawn)
        hosts.append(first)
        assert wait_for(lambda: all(first.plugin(n).get("exported", 0) >= 300 for n in outs), 60)
        first.kill()
        time.sleep(1.5)  # the outage: runners keep logging and retry with backoff
        second = HostProcess(tmp_path, "host-2", runtime)
        hosts.append(second)
        assert wait_for(lambda: all(path.exists() for path in outs.values()), 90)
        assert wait_for(
            lambda: all(
                not second.plugin(n).get("busy", True) and second.plugin(n)["pending"] == 0 for n in outs
            ),
            30,
        )
        final = second.stop()
        records = first.records() + second.records()
    for name, out in outs.items():
        runner = json.loads(out.read_text())
        stats = final["plugins"][name]
        delivered = Counter(numbered((r["body"] for r in records if r["plugin"] == name), name))
        assert set(delivered) <= set(range(2500))
        runner_dropped = sum(runner["dropped"].values())
        host_dropped = sum(v for k, v in stats["dropped"].items() if not k.startswith("runner_"))
        assert runner["accepted"] == 2500
        assert len(delivered) + runner_dropped + host_dropped == 2500, (name, len(delivered), runner, stats)
        assert stats["connections"] >= 1 and runner["acked"], (name, runner, stats)
        assert runner["peak_queued"] <= (200 if name == "beta" else 20_000)
        backoffs = runner["attempts"][1:]
        assert (
            len(backoffs) >= 3 and backoffs == sorted(backoffs) and max(backoffs) <= BACKOFF_CAP_MILLIS / 1000
        )
        record_property(f"{name}_delivered", len(delivered))
        record_property(f"{name}_dropped", runner["dropped"])
        record_property(f"{name}_sink_duplicates", sum(delivered.values()) - len(delivered))
        record_property(f"{name}_counted_duplicates", stats["duplicates"])
    assert json.loads(outs["alpha"].read_text())["dropped"] == {}
    assert json.loads(outs["beta"].read_text())["dropped"].get("queue_full", 0) > 0


def test_records_exported_again_after_a_host_restart_are_counted_as_duplicates(
    tmp_path: Path, host_env: Path
) -> None:
    """A host killed between writing a batch and acknowledging it: the restarted host's duplicate count covers the re-export."""
    records, final = restart_between_export_and_ack(tmp_path)
    delivered = Counter(numbered((r["body"] for r in records if r["plugin"] == "gamma"), "gamma"))
    assert set(delivered) == set(range(100))
    doubled = sum(delivered.values()) - len(delivered)
    assert doubled > 0  # the setup really produced a re-export
    assert final["plugins"]["gamma"]["duplicates"] == doubled


def test_restarted_host_counters_balance_when_the_runner_dropped_before_the_restart(
    tmp_path: Path, host_env: Path
) -> None:
    """A runner that dropped records under the first host: the restarted host's emitted == exported + dropped + pending."""
    runtime = tmp_path / "rt"
    script = write_plugin(tmp_path, "restart", RESTART_RUNNER)
    out = tmp_path / "delta.json"
    go = tmp_path / "go"
    env = {"OTEL_PLUGIN_LOGS_RUNNER_MAX_QUEUE_RECORDS": "50"}
    hosts: list[HostProcess] = []
    with cleanup(hosts):
        first = HostProcess(
            tmp_path, "host-1", runtime, [runner_spec(script, out, "delta", 0, 100, env, go, pre=3000)]
        )
        hosts.append(first)
        assert wait_for(Path(str(out) + ".phase1").exists, 60)
        assert wait_for(lambda: first.plugin("delta").get("dropped", {}).get("runner_queue_full", 0) > 0, 30)
        assert first.plugin("delta")["uncounted"] == 0
        time.sleep(0.3)  # the last acks are sent and the registry saved
        first.kill()
        second = HostProcess(tmp_path, "host-2", runtime)
        hosts.append(second)
        go.touch()
        assert wait_for(out.exists, 60)
        assert wait_for(
            lambda: not second.plugin("delta").get("busy", True) and second.plugin("delta")["pending"] == 0,
            30,
        )
        final = second.stop()
    assert final["plugins"]["delta"]["uncounted"] == 0, final["plugins"]["delta"]


def test_frozen_host_never_blocks_emit_and_the_runner_catches_up(tmp_path: Path, host_env: Path) -> None:
    """With the host SIGSTOPped, a runner still logs 20k records (emit never waits for the host); after SIGCONT everything is delivered or counted."""
    runtime = tmp_path / "rt"
    script = write_plugin(tmp_path, "restart", RESTART_RUNNER)
    out = tmp_path / "frozen.json"
    go = tmp_path / "go"
    hosts: list[HostProcess] = []
    with cleanup(hosts):
        host = HostProcess(tmp_path, "host", runtime, [runner_spec(script, out, "frozen", 0, 20_000, {}, go)])
        assert wait_for(Path(str(out) + ".phase1").exists, 60)
        hosts.append(host)
        host.process.send_signal(signal.SIGSTOP)
        try:
            go.touch()
            assert wait_for(lambda: Path(str(out) + ".logged").exists(), 60), (
                "emit blocked while the host was stopped"
            )
        finally:
            host.process.send_signal(signal.SIGCONT)
        assert wait_for(out.exists, 90)
        assert wait_for(
            lambda: not host.plugin("frozen").get("busy", True) and host.plugin("frozen")["pending"] == 0, 30
        )
        final = host.stop()
        records = host.records()
    runner = json.loads(out.read_text())
    stats = final["plugins"]["frozen"]
    delivered = set(numbered((r["body"] for r in records if r["plugin"] == "frozen"), "frozen"))
    assert runner["accepted"] == stats["emitted"] == 20_001  # with the warm-up record
    assert stats["uncounted"] == 0 and stats["pending"] == 0, stats
    assert len(delivered) + sum(stats["dropped"].values()) == 20_000, (len(delivered), stats)
    assert len(delivered) + 1 == stats["exported"]


def test_file_sink_after_a_crash_mid_write_keeps_new_batches_readable(tmp_path: Path) -> None:
    """A sink file ending in a partial line (host killed mid-write): the next host's batches are still one valid JSON line each."""
    path = tmp_path / "plugin-logs.otlp.jsonl"
    path.write_text('{"resourceLogs":[{"resource":{"attributes":[')  # what a kill mid-write leaves
    sink = FileSink(str(path), 1024 * 1024, 1)
    entry = Entry(1, time.time_ns(), time.time_ns(), 9, "INFO", "after the crash", "x", {}, None, None, 0)
    resource = ResourceInfo({"service.name": "p", "plugin.name": "p"})
    assert sink.export([Item.of(resource, entry)], 1.0).ok
    sink.shutdown()
    assert [r["body"] for r in read_sink_file(tmp_path)] == ["after the crash"]


def test_registry_stays_whole_when_many_threads_register_runners_at_once(
    tmp_path: Path, host_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Concurrent saves of the runner registry never interleave: every save succeeds and the file lists every runner."""

    runtime = tmp_path / "rt"
    errors: list[BaseException] = []
    with HostLogBridge(sink=MemorySink(), runtime_dir=str(runtime)) as bridge:

        def register(n: int) -> None:
            try:
                for _ in range(40):
                    bridge.register_runner(f"p{n}", pid=os.getpid())
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=register, args=(n,)) for n in range(8)]
        sys.setswitchinterval(1e-6)  # interleave the threads as much as possible
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join(60)
        finally:
            sys.setswitchinterval(0.005)
        assert errors == []
        saved = json.loads((runtime / "registry.json").read_text())
    assert not [r for r in caplog.records if "could not save the runner registry" in r.getMessage()]
    assert Counter(r["plugin"] for r in saved["runners"].values()) == {f"p{n}": 40 for n in range(8)}


def test_restarted_host_forgets_runners_that_died_and_shrugs_off_a_mangled_registry(
    tmp_path: Path, host_env: Path
) -> None:
    """Streams of runners that died while no host ran are not carried on; sections of the wrong type are ignored."""

    dead = subprocess.Popen([PYTHON, "-c", "pass"])
    dead.wait()
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    (runtime / "registry.json").write_text(
        json.dumps(
            {
                "version": 1,
                "runners": {"d" * 64: {"plugin": "gone", "version": None, "pid": dead.pid}},
                "streams": {"d" * 64 + ":1": 10, "e" * 64 + ":2": 3},
                "dropped": {"d" * 64 + ":1": {"runner_queue_full": 2}},
                "in_doubt": [],
            }
        )
    )
    with HostLogBridge(sink=MemorySink(), runtime_dir=str(runtime)) as bridge:
        bridge.register_runner("alive", pid=os.getpid())  # saves the registry
        saved = json.loads((runtime / "registry.json").read_text())
    assert [r["plugin"] for r in saved["runners"].values()] == ["alive"]
    assert saved["streams"] == {} and saved["dropped"] == {} and saved["in_doubt"] == {}


def test_restarted_host_refuses_the_token_of_a_runner_that_had_ended(tmp_path: Path, host_env: Path) -> None:
    """A registration saved as ended (released, or its exit seen) is not taken back; a live one is."""

    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)

    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    runners = {
        digest("ended-token"): {"plugin": "old", "version": None, "pid": None, "ended": True},
        digest("live-token"): {"plugin": "old", "version": None, "pid": None, "ended": False},
    }
    (runtime / "registry.json").write_text(json.dumps({"version": 1, "runners": runners}))
    with HostLogBridge(sink=MemorySink(), runtime_dir=str(runtime)) as bridge:
        assert RawRunner(bridge.socket_path).hello("ended-token")["reason"].startswith("bad_token")
        assert RawRunner(bridge.socket_path).hello("live-token")["t"] == "welcome"
