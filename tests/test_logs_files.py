"""`otel-plugin-logs logs` on sinks the real FileSink wrote: rotation, damage, and following."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import PYTHON, wait_until

from otel_plugin_logs.cli.logs_read import LineReader
from otel_plugin_logs.conventions import BRIDGE_SCOPE_NAME
from otel_plugin_logs.export.file_sink import FileSink
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.otlp import Entry, ResourceInfo

SINK_FILE = "plugin-logs.otlp.jsonl"
MIN_ROTATE_BYTES = 4096  # the smallest OTEL_PLUGIN_LOGS_FILE_MAX_BYTES


def resource(plugin: str) -> ResourceInfo:
    return ResourceInfo({"service.name": plugin, "plugin.name": plugin, "process.pid": 4242})


def entry(number: int, *, body: str | None = None) -> Entry:
    at = time.time_ns() - 60_000_000_000 + number * 1_000_000
    return Entry(
        number, at, at, 9, "INFO", body or f"record {number:05d}", "app.work", {"n": number}, None, None, 0
    )


def write(sink: FileSink, plugin: str, first: int, count: int) -> None:
    """One export request (one sink line) of ``count`` records."""
    info = resource(plugin)
    items = [Item(info, entry(n), None, 100) for n in range(first, first + count)]
    assert sink.export(items, 5.0).ok


def numbers(output: str) -> list[int]:
    return [int(line.split("record ")[1].split()[0]) for line in output.splitlines() if "record " in line]


def run_logs(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "otel_plugin_logs", "logs", *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_backups_are_read_oldest_first_and_a_corrupt_line_is_skipped(tmp_path: Path) -> None:
    """A sink rotated twice, with a corrupt line in a backup and a partial last line: every good record, counted skips."""
    sink = FileSink(str(tmp_path / SINK_FILE), MIN_ROTATE_BYTES, 50)
    for batch in range(12):
        write(sink, "alpha" if batch % 2 else "beta", batch * 10, 10)
    sink.shutdown()
    backups = sorted(tmp_path.glob(SINK_FILE + ".*"))
    assert len(backups) >= 2  # the test needs rotations in the middle
    with open(backups[0], "a", encoding="utf-8") as damaged:  # .1: between older and newer records
        damaged.write('{"resourceLogs": [{"scopeLogs": oops\n')
    with open(tmp_path / SINK_FILE, "a", encoding="utf-8") as current:
        current.write('{"resourceLogs": [{"resource"')  # a line being written
    result = run_logs(str(tmp_path))
    assert result.returncode == 0
    assert numbers(result.stdout) == list(range(120))
    assert "skipped 1 corrupt line(s); the first: " in result.stderr and f"{SINK_FILE}.1:" in result.stderr
    assert "skipped 1 partial last line(s)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_path_and_its_backups_are_read(tmp_path: Path) -> None:
    """PATH may name the sink file itself; its rotated backups come first."""
    sink = FileSink(str(tmp_path / "other.jsonl"), MIN_ROTATE_BYTES, 10)
    for batch in range(4):
        write(sink, "alpha", batch * 10, 10)
    sink.shutdown()
    assert (tmp_path / "other.jsonl.1").exists()
    assert numbers(run_logs(str(tmp_path / "other.jsonl")).stdout) == list(range(40))


def test_a_line_that_is_json_but_not_otlp_is_counted_not_raised(tmp_path: Path) -> None:
    """`[1, 2]` and `{"resourceLogs": 3}` are corrupt lines like any other."""
    sink = FileSink(str(tmp_path / SINK_FILE), 1 << 20, 1)
    write(sink, "alpha", 0, 3)
    sink.shutdown()
    with open(tmp_path / SINK_FILE, "a", encoding="utf-8") as out:
        out.write('[1, 2]\n{"resourceLogs": 3}\n{"resourceLogs": [{"scopeLogs": [{"logRecords": [7]}]}]}\n')
    result = run_logs(str(tmp_path))
    assert numbers(result.stdout) == [0, 1, 2]
    assert "skipped 3 corrupt line(s)" in result.stderr and "Traceback" not in result.stderr


def test_multi_line_messages_stay_one_record_under_the_gutter(tmp_path: Path) -> None:
    """A body with newlines prints its first line as the record and the rest indented below it."""
    sink = FileSink(str(tmp_path / SINK_FILE), 1 << 20, 1)
    info = resource("web")
    sink.export([Item(info, entry(1, body="Exception in ASGI application\n"), None, 1)], 5.0)
    sink.export([Item(info, entry(2, body="first\nsecond\nthird"), None, 1)], 5.0)
    sink.shutdown()
    lines = run_logs(str(tmp_path)).stdout.splitlines()
    assert lines[0].endswith("Exception in ASGI application n=1")
    assert lines[1].endswith("first n=2") and lines[2:] == ["    │ second", "    │ third"]


Follower = tuple[subprocess.Popen[bytes], Path]


@pytest.fixture
def start_follower(tmp_path: Path) -> Iterator[Callable[..., Follower]]:
    """Starts `logs -f` on tmp_path, writing to a file; each one is killed by pid at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> Follower:
        output = tmp_path / f"followed-{len(started)}.txt"
        with open(output, "wb") as out:
            process = subprocess.Popen(
                [PYTHON, "-m", "otel_plugin_logs", "logs", "-f", *options, str(tmp_path)],
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
        started.append(process)
        return process, output

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


def test_follow_goes_on_across_rotations(tmp_path: Path, start_follower: Callable[..., Follower]) -> None:
    """-f -n 1 prints the newest record, then each record written later, through two rotations, and ends on SIGINT."""
    sink = FileSink(str(tmp_path / SINK_FILE), MIN_ROTATE_BYTES, 50)
    write(sink, "alpha", 0, 10)
    process, output = start_follower("-n", "1")

    def seen() -> list[int]:
        return numbers(output.read_text(encoding="utf-8"))

    assert wait_until(lambda: seen() == [9], 30)  # it is following now
    for batch in range(1, 10):
        write(sink, "alpha", batch * 10, 10)
    sink.shutdown()
    assert len(list(tmp_path.glob(SINK_FILE + ".*"))) >= 2
    assert wait_until(lambda: seen()[-1:] == [99], 30), output.read_text()
    assert seen() == list(range(9, 100))
    process.send_signal(signal.SIGINT)
    assert process.wait(20) == 0


def test_follow_waits_for_a_sink_that_does_not_exist_yet(
    tmp_path: Path, start_follower: Callable[..., Follower]
) -> None:
    """-f before the host ever wrote: the records show once the file appears."""
    _, output = start_follower()
    sink = FileSink(str(tmp_path / SINK_FILE), 1 << 20, 1)
    write(sink, "alpha", 0, 3)
    sink.shutdown()
    assert wait_until(lambda: numbers(output.read_text(encoding="utf-8")) == [0, 1, 2], 30)


def test_a_partial_line_is_held_until_its_newline_arrives(tmp_path: Path) -> None:
    """The reader yields nothing for half a line and the whole line once the writer finished it."""
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b'{"first": 1}\n{"sec')
    reader = LineReader.open(str(path))
    try:
        assert list(reader.lines()) == [b'{"first": 1}'] and reader.has_partial()
        with open(path, "ab") as out:
            out.write(b'ond": 2}\n')
        assert list(reader.lines()) == [b'{"second": 2}'] and not reader.has_partial()
    finally:
        reader.close()


def test_stats_sum_the_bridges_drop_notices_by_reason(tmp_path: Path) -> None:
    """--stats adds up bridge.count of the bridge's dropped/suppressed/gap notices per plugin and reason."""
    sink = FileSink(str(tmp_path / SINK_FILE), 1 << 20, 1)
    write(sink, "alpha", 0, 4)
    notices = [
        ("alpha", "dropped", "export_queue_full", 5),
        ("alpha", "dropped", "export_queue_full", 7),
        ("beta", "suppressed", "rate_limited", 300),
        ("beta", "gap", "gap", 2),
        ("beta", "runner_exit", "code 1", 1),  # an exit is a notice, not a drop
    ]
    for number, (plugin, event, reason, count) in enumerate(notices):
        attributes = {"bridge.event": event, "bridge.reason": reason, "bridge.count": count}
        notice = Entry(
            0,
            time.time_ns() + number,
            0,
            13,
            "WARNING",
            "notice",
            BRIDGE_SCOPE_NAME,
            attributes,
            None,
            None,
            0,
        )
        assert sink.export([Item(resource(plugin), notice, None, 1)], 5.0).ok
    sink.shutdown()
    result = run_logs(str(tmp_path), "--stats")
    table, drops = result.stdout.split("\n\n", 1)
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    assert rows["plugin"] == ["plugin", "INFO", "total", "notices"]
    assert rows["alpha"] == ["alpha", "4", "4", "2"] and rows["beta"] == ["beta", "0", "0", "3"]
    assert [line.split() for line in drops.splitlines()[1:4]] == [
        ["alpha", "export_queue_full", "12"],
        ["beta", "gap", "2"],
        ["beta", "rate_limited", "300"],
    ]
    assert "export_queue_full 12, gap 2, rate_limited 300" in drops


def test_a_reader_that_closes_the_pipe_ends_quietly(tmp_path: Path) -> None:
    """`logs | head -n 1`: exit 0 and nothing on stderr once the pipe is closed."""
    sink = FileSink(str(tmp_path / SINK_FILE), 1 << 24, 1)
    for batch in range(100):
        write(sink, "alpha", batch * 50, 50)
    sink.shutdown()
    process = subprocess.Popen(
        [PYTHON, "-m", "otel_plugin_logs", "logs", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        assert b"record 00000" in process.stdout.readline()
        process.stdout.close()
        assert process.wait(60) == 0
        assert process.stderr.read() == b""
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


def test_a_line_longer_than_the_bound_is_skipped_not_kept(tmp_path: Path) -> None:
    """Beyond max_line_bytes a line comes out as None (counted as corrupt by `logs`); the next one is intact."""
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b"first\n" + b"x" * 200_000 + b"\nlast\n")
    with open(path, "rb") as stream:
        reader = LineReader(str(path), stream, max_line_bytes=1000)
        assert list(reader.lines()) == [b"first", None, b"last"] and reader.line_number == 3
        assert not reader.has_partial()
