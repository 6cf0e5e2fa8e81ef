"""The core pipeline with real subprocesses and sockets: runner handler → Unix socket → host replay."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import PYTHON, CaptureHandler, MemorySink, wait_until, write_plugin

from otel_plugin_logs import HostLogBridge, ProtocolError
from otel_plugin_logs.config.runner import ENV_AUTO_INSTALL, ENV_SOCKET, ENV_TOKEN

MIXED = """
import logging, sys
logging.addLevelName(5, "TRACE")
logging.addLevelName(25, "NOTICE")
logging.basicConfig(level=1)
log = logging.getLogger("weather.fetch")
n = int(sys.argv[1])
levels = [5, 10, 20, 25, 30, 40, 50]
for i in range(n):
    log.log(levels[i % len(levels)], "record %d: héllo wörld ☃ 🚀", i,
            extra={"i": i, "city": "Zürich", "ratio": 0.5, "ok": True, "tags": ["a", "b"],
                   "blob": b"\\x00\\x01", "nested": {"k": [1, 2]}, "obj": object})
try:
    try:
        raise KeyError("cause")
    except KeyError as cause:
        raise ValueError("bad value") from cause
except ValueError:
    log.exception("failed")
log.info("x" * (1024 * 1024))
"""


def test_runner_records_replayed_exactly_once_in_order_with_fields(
    tmp_path: Path, host_env: Path, capture: CaptureHandler
) -> None:
    """N mixed-level records with extras, an exception, unicode and a 1 MB message replay exactly, in order."""
    n = 700
    sink = MemorySink()
    script = write_plugin(tmp_path, "mixed", MIXED)
    with HostLogBridge(sink=sink) as bridge:
        process = bridge.spawn_plugin("weather", [PYTHON, str(script), str(n)])
        assert process.wait(60) == 0
        assert bridge.wait_for_plugin("weather", 10)
        assert bridge.force_flush(10_000)
        stats = bridge.stats().plugins["weather"]
    records = capture.plugin_records("weather")
    assert len(records) == n + 2
    seqs = [r.otel.seq for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == n + 2
    levels = [5, 10, 20, 25, 30, 40, 50]
    for i, record in enumerate(records[:n]):
        assert record.name == "plugin.weather.weather.fetch"
        assert record.levelno == levels[i % 7]
        assert record.getMessage() == f"record {i}: héllo wörld ☃ 🚀"
        attributes = record.otel.attributes
        assert attributes["i"] == i and attributes["city"] == "Zürich" and attributes["ratio"] == 0.5
        assert (
            attributes["ok"] is True
            and attributes["tags"] == ["a", "b"]
            and attributes["blob"] == b"\x00\x01"
        )
        assert attributes["nested"] == {"k": [1, 2]} and attributes["obj"] == "<class 'object'>"
        assert attributes["code.function.name"] == "<module>" and attributes["code.line.number"] == 10
        assert attributes["thread.name"] == "MainThread"
        assert record.funcName == "<module>" and record.lineno == 10 and record.filename == "mixed.py"
        assert record.process == process.pid
    assert records[3].levelname == "NOTICE" and records[0].levelname == "TRACE"
    assert records[0].otel.severity_number == 2 and records[2].otel.severity_number == 9
    failed = records[n]
    assert failed.otel.attributes["exception.type"] == "builtins.ValueError"
    assert failed.otel.attributes["exception.message"] == "bad value"
    stack = failed.otel.attributes["exception.stacktrace"]
    assert "KeyError: 'cause'" in stack and "direct cause of the following exception" in stack
    assert failed.exc_text and failed.exc_text.endswith("ValueError: bad value")  # no final newline
    big = records[n + 1]
    assert big.otel.attributes["otel_plugin_logs.body.original_bytes"] == 1024 * 1024
    assert big.otel.body.endswith("…[truncated]") and len(big.otel.body.encode()) <= 64 * 1024
    exported = sink.entries("weather")
    assert [e.seq for e in exported] == seqs
    assert (
        stats.emitted == n + 2
        and stats.exported == n + 2
        and stats.dropped_total == 0
        and stats.uncounted == 0
    )


def test_two_plugins_concurrently_never_mix(tmp_path: Path, host_env: Path, capture: CaptureHandler) -> None:
    """Records of two plugins logging at the same time stay with their own plugin."""
    code = """
    import logging, sys
    logging.basicConfig(level=logging.INFO)
    me = sys.argv[1]
    for i in range(3000):
        logging.getLogger(me).info("%s %d", me, i)
    """
    script = write_plugin(tmp_path, "both", code)
    with HostLogBridge(sink=MemorySink()) as bridge:
        a = bridge.spawn_plugin("alpha", [PYTHON, str(script), "alpha"])
        b = bridge.spawn_plugin("beta", [PYTHON, str(script), "beta"])
        assert a.wait(60) == 0 and b.wait(60) == 0
        assert bridge.wait_for_plugin("alpha", 10) and bridge.wait_for_plugin("beta", 10)
    for name in ("alpha", "beta"):
        records = capture.plugin_records(name)
        assert len(records) == 3000
        assert all(r.getMessage().startswith(name) and r.name == f"plugin.{name}.{name}" for r in records)
        assert [int(r.getMessage().split()[1]) for r in records] == list(range(3000))


def test_sigkill_mid_stream_keeps_host_running_and_acked_records_replayed(
    tmp_path: Path, host_env: Path, capture: CaptureHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """A runner killed with SIGKILL: host keeps serving, logs the exit, every acknowledged record was replayed."""
    acked_file = tmp_path / "acked"
    code = f"""
    import logging, time
    from otel_plugin_logs import runner
    logging.basicConfig(level=logging.INFO)
    handler = runner.installed_handler()
    def remember(seq):
        with open({str(acked_file)!r}, "w") as out:
            out.write(str(seq))
    handler.on_ack = remember
    log = logging.getLogger("loop")
    i = 0
    while True:
        log.info("tick %d", i)
        i += 1
        if i % 200 == 0:
            time.sleep(0.01)
    """
    script = write_plugin(tmp_path, "forever", code)
    survivor = write_plugin(
        tmp_path,
        "survivor",
        """
    import logging, time
    logging.basicConfig(level=logging.INFO)
    for i in range(50):
        logging.getLogger("calm").info("still here %d", i)
        time.sleep(0.02)
    """,
    )
    with HostLogBridge(sink=MemorySink()) as bridge:
        process = bridge.spawn_plugin("doomed", [PYTHON, str(script)])
        assert wait_until(lambda: acked_file.exists() and int(acked_file.read_text() or 0) > 2000, 30)
        other = bridge.spawn_plugin("calm", [PYTHON, str(survivor)])
        process.kill()
        assert process.wait(10) == -signal.SIGKILL
        acked = int(acked_file.read_text())
        assert other.wait(30) == 0
        assert bridge.wait_for_plugin("calm", 10)
        stats = bridge.stats()
    replayed = {r.otel.seq for r in capture.plugin_records("doomed")}
    assert set(range(1, acked + 1)) <= replayed
    assert len(capture.plugin_records("calm")) == 50
    assert stats.plugins["doomed"].exits == (-signal.SIGKILL,)
    exit_lines = [r for r in caplog.records if "exited with signal 9" in r.getMessage()]
    assert exit_lines and exit_lines[0].levelno == logging.WARNING


def _bootstrap_env(bridge: HostLogBridge, token: str) -> dict[str, str]:
    from otel_plugin_logs.host.launch import BOOTSTRAP_DIR

    env = dict(os.environ)
    env.update(
        {
            ENV_SOCKET: bridge.socket_path,
            ENV_TOKEN: token,
            ENV_AUTO_INSTALL: "1",
            "PYTHONPATH": BOOTSTRAP_DIR,
        }
    )
    return env


def test_runner_with_bad_token_is_rejected(
    tmp_path: Path, host_env: Path, capture: CaptureHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """A runner presenting an unknown token is refused with a reason; its records go to its stderr."""
    script = write_plugin(
        tmp_path,
        "intruder",
        """
    import logging, time
    logging.getLogger("x").warning("let me in")
    """,
    )
    with HostLogBridge(sink=MemorySink()) as bridge:
        result = subprocess.run(
            [PYTHON, str(script)],
            env=_bootstrap_env(bridge, "not-a-token"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        stats = bridge.stats()
    assert "rejected by the host: bad_token" in result.stderr
    assert "[otel-plugin-logs gave up] WARNING x: let me in" in result.stderr
    assert stats.rejected_connections == {"bad_token": 1}
    assert capture.plugin_records() == []
    assert any("bad_token" in r.getMessage() for r in caplog.records if r.name == "otel_plugin_logs.bridge")


def test_token_of_one_runner_used_by_another_process_is_rejected(tmp_path: Path, host_env: Path) -> None:
    """A valid token presented by a process that is not the runner it was issued to is refused."""
    script = write_plugin(tmp_path, "thief", "import logging\nlogging.getLogger('x').warning('stolen')\n")
    sleeper = write_plugin(tmp_path, "sleeper", "import time\ntime.sleep(30)\n")
    with HostLogBridge(sink=MemorySink()) as bridge:
        victim = bridge.spawn_plugin("victim", [PYTHON, str(sleeper)], auto_install=False)
        # The thief learns the victim's token (say, from /proc/<pid>/environ as the same user).
        stolen = _read_env_token(victim.pid)
        result = subprocess.run(
            [PYTHON, str(script)],
            env=_bootstrap_env(bridge, stolen),
            capture_output=True,
            text=True,
            timeout=60,
        )
        victim.kill()
        stats = bridge.stats()
    assert stolen
    assert "token_pid_mismatch" in result.stderr
    assert stats.rejected_connections.get("token_pid_mismatch") == 1


def _read_env_token(pid: int) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        for item in raw.split(b"\0"):
            if item.startswith(ENV_TOKEN.encode() + b"="):
                return item.split(b"=", 1)[1].decode()
        time.sleep(0.01)
    raise AssertionError("token not found")


def test_logger_names_claiming_root_or_another_plugin_stay_in_own_namespace(
    tmp_path: Path, host_env: Path, capture: CaptureHandler
) -> None:
    """Records on `root`, `plugin.other` and odd names are replayed under plugin.<own name>."""
    script = write_plugin(
        tmp_path,
        "claims",
        """
    import logging
    logging.basicConfig(level=logging.INFO)
    logging.getLogger().warning("as root")
    logging.getLogger("plugin.other").warning("as another plugin")
    logging.getLogger("..evil..name\\n\\x1b[31m").warning("odd name")
    """,
    )
    with HostLogBridge(sink=MemorySink()) as bridge:
        process = bridge.spawn_plugin("honest", [PYTHON, str(script)])
        assert process.wait(60) == 0
        assert bridge.wait_for_plugin("honest", 10)
    names = [r.name for r in capture.plugin_records("honest")]
    assert names == [
        "plugin.honest",
        "plugin.honest.plugin.other",
        "plugin.honest.evil.name\\n\\x1b_31m",
    ] or (
        names[:2] == ["plugin.honest", "plugin.honest.plugin.other"]
        and names[2].startswith("plugin.honest.evil")
    )
    assert all(name.startswith("plugin.honest") for name in names)
    assert not any(r.name.startswith("plugin.other") for r in capture.records)


def test_run_command_propagates_exit_code_after_flushing(tmp_path: Path, host_env: Path) -> None:
    """`otel-plugin-logs run` exits with the child's code, and its records are in the sink by then."""
    script = write_plugin(
        tmp_path,
        "exits",
        """
    import logging, sys
    logging.basicConfig(level=logging.INFO)
    for i in range(500):
        logging.getLogger("job").info("step %d", i)
    logging.getLogger("job").error("giving up")
    sys.exit(7)
    """,
    )
    result = subprocess.run(
        [PYTHON, "-m", "otel_plugin_logs", "run", "-p", "job", "--", PYTHON, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 7, result.stderr[-2000:]
    assert "giving up" in result.stderr
    sink_file = host_env / "plugin-logs.otlp.jsonl"
    text = sink_file.read_text()
    assert text.count('"step ') == 500 and "giving up" in text


def test_run_command_reports_a_signal_as_128_plus_signum(tmp_path: Path, host_env: Path) -> None:
    """A child killed by SIGTERM makes `run` exit with 143."""
    script = write_plugin(tmp_path, "killed", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    result = subprocess.run(
        [PYTHON, "-m", "otel_plugin_logs", "run", "-p", "k", "--", PYTHON, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 128 + signal.SIGTERM


def test_runner_that_never_connects_is_reported(
    tmp_path: Path, host_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spawned runner that never connects (here: python -I ignores PYTHONPATH) gets one clear warning."""
    script = write_plugin(tmp_path, "isolated", "import time\ntime.sleep(2)\n")
    with HostLogBridge(sink=MemorySink(), connect_timeout_millis=300) as bridge:
        process = bridge.spawn_plugin("isolated", [PYTHON, "-I", str(script)])
        assert wait_until(lambda: any("has not connected" in r.getMessage() for r in caplog.records), 10)
        process.kill()
    (warning,) = [r for r in caplog.records if "has not connected" in r.getMessage()]
    assert "plugin isolated" in warning.getMessage() and "install()" in warning.getMessage()


def test_handle_batch_takes_batches_from_the_hosts_own_rpc(host_env: Path, capture: CaptureHandler) -> None:
    """A runtime with its own IPC hands batches to handle_batch; identity is the argument, not the payload."""
    import logging as stdlib_logging

    from otel_plugin_logs import InMemoryTransport, RunnerLogHandler

    sink = MemorySink()
    with HostLogBridge(sink=sink) as bridge:
        handler = RunnerLogHandler(InMemoryTransport(lambda body: bridge.handle_batch("rpcplugin", body)))
        logger = stdlib_logging.getLogger("rpc.side")
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(stdlib_logging.INFO)
        for i in range(10):
            logger.info("over rpc %d", i, extra={"plugin": "someone-else"})
        assert handler.shutdown(5000)
        assert bridge.force_flush(5000)
        stats = bridge.stats().plugins["rpcplugin"]
    records = capture.plugin_records("rpcplugin")
    assert [r.getMessage() for r in records] == [f"over rpc {i}" for i in range(10)]
    assert all(r.name == "plugin.rpcplugin.rpc.side" for r in records)
    assert stats.exported == 10 and stats.uncounted == 0
    with HostLogBridge(sink=MemorySink()) as bridge, pytest.raises(ProtocolError, match="malformed"):
        bridge.handle_batch("x", b"\xc1")


def test_handle_batch_counts_a_malformed_payload_in_bad_input(host_env: Path) -> None:
    """A payload handle_batch refuses is counted in the plugin's bad_input, not only raised."""
    with HostLogBridge(sink=MemorySink()) as bridge:
        with pytest.raises(ProtocolError):
            bridge.handle_batch("rpcplugin", b"\xc1")
        with pytest.raises(ProtocolError):
            bridge.handle_batch("rpcplugin", {"t": "batch", "stream": "not a number"})
        bad_input = bridge.stats().plugins["rpcplugin"].bad_input
    assert sum(bad_input.values()) == 2 and set(bad_input) == {"malformed", "malformed_batch"}
