"""The raw output of a plugin: stdout captured by `run`, a printed traceback as one record."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import PYTHON, CaptureHandler, write_plugin

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.host.process import TracebackGrouper
from otel_plugin_logs.testing import MemorySink

NOISY = """
import sys
print("first line on stdout")
print("second line on stdout", flush=True)
print("a plain stderr line", file=sys.stderr, flush=True)
def inner():
    raise KeyError("missing")
try:
    inner()
except KeyError as error:
    raise ValueError("bad value") from error
"""


@dataclass(frozen=True, slots=True)
class SinkRecord:
    scope: str
    body: str
    severity: str
    attributes: dict[str, Any]


def sink_records(sink_dir: Path) -> list[SinkRecord]:
    """Every record in the OTLP/JSON file sink, in file order."""
    out = []
    for line in (sink_dir / "plugin-logs.otlp.jsonl").read_text().splitlines():
        for resource_logs in json.loads(line)["resourceLogs"]:
            for scope_logs in resource_logs["scopeLogs"]:
                for record in scope_logs["logRecords"]:
                    out.append(
                        SinkRecord(
                            scope_logs["scope"].get("name", ""),
                            record.get("body", {}).get("stringValue", ""),
                            record.get("severityText", ""),
                            {
                                a["key"]: next(iter(a["value"].values()), None)
                                for a in record.get("attributes", [])
                            },
                        )
                    )
    return out


def run_noisy(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    script = write_plugin(tmp_path, "noisy", NOISY)
    return subprocess.run(
        [PYTHON, "-m", "otel_plugin_logs", "run", "-p", "noisy", *options, "--", PYTHON, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_turns_stdout_lines_into_records(tmp_path: Path, host_env: Path) -> None:
    """Under `run`, each line the command prints on stdout is a record on its `stdout` scope."""
    result = run_noisy(tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    stdout = [r for r in sink_records(host_env) if r.scope == "stdout"]
    assert [r.body for r in stdout] == ["first line on stdout", "second line on stdout"]
    assert all(r.attributes["log.iostream"] == "stdout" and r.severity == "INFO" for r in stdout)
    assert result.stdout == ""


def test_pass_stdout_leaves_the_commands_stdout_alone(tmp_path: Path, host_env: Path) -> None:
    """`run --pass-stdout`: the command's stdout is run's stdout, untouched, and not a record."""
    result = run_noisy(tmp_path, "--pass-stdout")
    assert result.stdout == "first line on stdout\nsecond line on stdout\n"
    assert not [r for r in sink_records(host_env) if r.scope == "stdout"]


def test_a_printed_traceback_is_one_record(tmp_path: Path, host_env: Path) -> None:
    """The chained traceback of an uncaught exception arrives as one ERROR record with exception.*."""
    result = run_noisy(tmp_path)
    stderr = [r for r in sink_records(host_env) if r.scope == "stderr"]
    assert [r.body for r in stderr] == ["a plain stderr line", "ValueError: bad value"], result.stderr[-2000:]
    traceback = stderr[1]
    assert traceback.severity == "ERROR"
    assert traceback.attributes["exception.type"] == "ValueError"
    assert traceback.attributes["exception.message"] == "bad value"
    stack = traceback.attributes["exception.stacktrace"]
    assert stack.startswith("Traceback (most recent call last):")
    assert (
        "KeyError: 'missing'" in stack and "direct cause" in stack and stack.endswith("ValueError: bad value")
    )


def test_spawn_plugin_leaves_stdout_to_the_host_unless_asked(
    tmp_path: Path, host_env: Path, capture: CaptureHandler
) -> None:
    """spawn_plugin does not read the child's stdout by default; capture_stdout=True replays it."""
    script = write_plugin(tmp_path, "printer", "print('for the host RPC', flush=True)\n")
    with HostLogBridge(sink=MemorySink()) as bridge:
        piped = bridge.spawn_plugin("piped", [PYTHON, str(script)], stdout=subprocess.PIPE)
        assert piped.popen.stdout is not None and piped.popen.stdout.read() == b"for the host RPC\n"
        piped.wait(30)
        captured = bridge.spawn_plugin("captured", [PYTHON, str(script)], capture_stdout=True)
        captured.wait(30)
    names = [(r.name, r.getMessage()) for r in capture.records]
    assert ("plugin.captured.stdout", "for the host RPC") in names
    assert not [name for name, _ in names if name.startswith("plugin.piped.stdout")]


def feed_all(grouper: TracebackGrouper, text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        out.extend(raw.text for raw in grouper.feed(line))
    return out + [raw.text for raw in grouper.idle()]


def test_an_unterminated_traceback_ends_when_the_output_goes_idle() -> None:
    """A traceback header with frames but no final line is handed on as one record by idle()."""
    grouper = TracebackGrouper(65536, 100)
    for line in ("Traceback (most recent call last):", '  File "x.py", line 1, in <module>'):
        assert grouper.feed(line) == []
    assert grouper.pending
    (block,) = grouper.idle()
    assert block.text == "Traceback (most recent call last):" and block.stacktrace is not None
    assert not grouper.pending


def test_a_traceback_longer_than_the_bound_is_cut_into_pieces() -> None:
    """A block beyond max_block_lines becomes several records; every line is kept."""
    frames = "\n".join(f'  File "x.py", line {i}, in f' for i in range(25))
    text = f"Traceback (most recent call last):\n{frames}\nRecursionError: too deep\n"
    grouper = TracebackGrouper(65536, 10)
    pieces = [raw for line in text.splitlines() for raw in grouper.feed(line)] + grouper.idle()
    assert len(pieces) == 3
    assert "\n".join(p.stacktrace or "" for p in pieces) == text.rstrip("\n")
    assert pieces[-1].exception_type == "RecursionError"


def test_lines_around_a_traceback_stay_records_of_their_own() -> None:
    """Plain lines before and after a traceback are not swallowed by it."""
    text = 'before\nTraceback (most recent call last):\n  File "x", line 1\nOSError: gone\nafter\n'
    assert feed_all(TracebackGrouper(65536, 100), text) == ["before", "OSError: gone", "after"]


def test_a_thread_header_without_a_traceback_is_a_plain_line() -> None:
    """'Exception in thread ...:' followed by something else is two plain records, not a block."""
    text = "Exception in thread pool:\nnot a traceback\n"
    assert feed_all(TracebackGrouper(65536, 100), text) == ["Exception in thread pool:", "not a traceback"]


def test_an_uncaught_exception_in_a_thread_is_one_record() -> None:
    """threading's 'Exception in thread NAME:' header and the traceback under it are one record."""
    text = (
        'Exception in thread worker:\nTraceback (most recent call last):\n  File "x", line 1\nOSError: gone\n'
    )
    grouper = TracebackGrouper(65536, 100)
    pieces = [raw for line in text.splitlines() for raw in grouper.feed(line)] + grouper.idle()
    assert [(p.text, p.exception_type) for p in pieces] == [("OSError: gone", "OSError")]
    assert pieces[0].stacktrace is not None and pieces[0].stacktrace.startswith("Exception in thread worker:")
