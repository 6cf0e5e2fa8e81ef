"""Spawned plugin processes: how they start, how they are stopped, and how their raw output is read.

Supervision (README, "Supervision"): a spawned plugin gets its own process group, so that a
signal meant for it reaches its own children as well, and a signal sent to the host's group
is not delivered to it a second time. ``die_with_parent`` asks Linux to SIGKILL the plugin
when the thread that spawned it ends (``PR_SET_PDEATHSIG``, armed after exec: ``launch``), so
a host killed by SIGKILL leaves no plugin behind. Stopping is SIGTERM to the group, a grace
period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import enum
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

TRACEBACK_HEADER: Final = "Traceback (most recent call last):"
_GROUP_HEADER: Final = "+ Exception Group Traceback (most recent call last):"
_THREAD_HEADER: Final = "Exception in thread "
_CHAIN_LINES: Final = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
_READ_BYTES: Final = 64 * 1024


class PluginProcess:
    """A runner subprocess spawned by the bridge.

    ``exited`` is set once the process ended, its output was replayed and its exit counted.
    ``records_settled`` is set once its runner said bye and every record it sent was exported
    or counted, which usually comes before the end of the process: the interpreter still has
    to finish, and ``run`` shows what its console holds meanwhile.
    """

    def __init__(
        self,
        name: str,
        popen: subprocess.Popen[bytes],
        digest: str = "",
        *,
        own_group: bool = False,
        settle: Callable[[PluginProcess, float | None], bool] | None = None,
    ) -> None:
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.own_group = own_group
        self.exited = threading.Event()
        self.returncode: int | None = None
        self.killed = False  # the bridge or `run` had to escalate to SIGKILL
        self.digest = digest  # its runner identity (the token's hash)
        self.connect_deadline: float | None = None  # when to warn that it never connected
        self._settle = settle
        self._reaped = threading.Event()
        self.records_settled = threading.Event()
        self._news = threading.Event()  # set after either of the two above: wakes wait_news

    @property
    def running(self) -> bool:
        """True until the operating system reported the process's end."""
        return not self._reaped.is_set()

    def wait(self, timeout: float | None = None, *, settle: bool = True) -> int | None:
        """Wait until the process exited and everything it sent is settled; returns its exit code.

        Settled: its output was replayed, its connection closed, every record it sent was
        taken in and exported or dropped (counted), so ``bridge.stats()`` shows no pending
        record of it. ``timeout`` (seconds) bounds the whole wait; without it the exit is
        waited for as long as it takes, the settling at most the bridge's shutdown timeout.
        A failing exporter is not waited for (those records stay pending in its queue);
        ``settle=False`` returns at the exit (output replayed, exit counted), without waiting
        for the exporter at all. Returns None while the process still runs.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.exited.wait(timeout):
            return None
        if settle and self._settle is not None:
            self._settle(self, deadline)
        return self.returncode

    def reap(self) -> int:
        """Block until the process ended (the bridge's exit watcher calls this once)."""
        returncode = self.popen.wait()
        self._reaped.set()
        self._news.set()
        return returncode

    def mark_records_settled(self) -> None:
        """Its runner's last stream ended after its bye, everything in it settled (the bridge calls this)."""
        self.records_settled.set()
        self._news.set()

    def wait_news(self, timeout_seconds: float) -> None:
        """Wait until the process ended or its records settled (``running``, ``records_settled``).

        Returns after ``timeout_seconds`` at the latest, or at once when either happened since
        the last call; the caller looks at both afterwards.
        """
        self._news.wait(max(0.0, timeout_seconds))
        self._news.clear()

    def wait_reaped(self, timeout_seconds: float) -> bool:
        """Wait until the process ended, without waiting for its output or records."""
        return self._reaped.wait(max(0.0, timeout_seconds))

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the plugin's process group (or to the process, if it has none).

        Nothing once the process was reaped: its pid, and so its group id, may belong to
        another process by then.
        """
        if not self.running:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.own_group:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def stop_processes(
    processes: Sequence[PluginProcess], grace_deadline: float, final_deadline: float
) -> list[str]:
    """SIGTERM each, wait until ``grace_deadline``, SIGKILL what still runs; returns what was killed.

    Deadlines are ``time.monotonic()`` values. The killed ones are waited for until
    ``final_deadline``: SIGKILL cannot be ignored, so that is only the time the kernel needs.
    """
    live = [process for process in processes if process.running]
    for process in live:
        process.terminate()
    _wait_all(live, grace_deadline)
    killed = [process for process in live if process.running]
    for process in killed:
        process.killed = True
        process.kill()
    _wait_all(killed, final_deadline)
    return [f"{process.name} (pid {process.pid})" for process in killed]


def _wait_all(processes: Iterable[PluginProcess], deadline: float) -> None:
    for process in processes:
        process.wait_reaped(deadline - time.monotonic())


# --- raw output ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawText:
    """One record's worth of a plugin's raw output: one line, or a whole printed traceback."""

    text: str  # the line; for a traceback, its final line (``ValueError: boom``)
    stacktrace: str | None = None  # the whole traceback block, every line of it
    exception_type: str = ""
    exception_message: str = ""
    time_ns: int = 0  # when its first line was read; 0: now


class _Block(enum.Enum):
    NONE = "none"  # not in a traceback
    FRAMES = "frames"  # after a header: indented frame lines until the final exception line
    AFTER_FINAL = "after_final"  # the final line came; a chained traceback may follow
    CHAINED = "chained"  # "During handling of ...": a blank line and the next header follow


class TracebackGrouper:
    """Turns lines of raw output into ``RawText``; a printed traceback becomes one.

    A block starts at ``Traceback (most recent call last):`` (or ``Exception in thread ...``,
    or an exception group's header) and runs through the final exception line, chained
    tracebacks included. A block longer than ``max_block_bytes`` or ``max_block_lines`` is
    cut into several records (nothing is lost); ``idle()`` ends a block that stays
    unterminated (the pump calls it when no line came for a while).
    """

    def __init__(self, max_block_bytes: int, max_block_lines: int) -> None:
        self._max_bytes = max_block_bytes
        self._max_lines = max_block_lines
        self._state = _Block.NONE
        self._lines: list[str] = []
        self._size = 0
        self._held: list[str] = []  # blank lines after a final line: part of a chain, or not
        self._group = False  # the block is an exception group's (indented through its end)
        self._started_ns = 0

    @property
    def pending(self) -> bool:
        return self._state is not _Block.NONE

    def feed(self, line: str) -> list[RawText]:
        out: list[RawText] = []
        state = self._state
        if state is _Block.NONE:
            if _opens_block(line):
                self._start(line)
            else:
                out.append(RawText(line, time_ns=time.time_ns()))
        elif state is _Block.FRAMES:
            ends_group = self._group and line and not line[0].isspace()
            # "Exception in thread ...:" opens a block only when a traceback follows it.
            not_a_thread_traceback = self._only_thread_header() and not line.startswith(TRACEBACK_HEADER)
            if ends_group or not_a_thread_traceback:
                out.extend(self.idle())
                out.extend(self.feed(line))
                return out
            self._append(line, out)
            if line and not line[0].isspace() and not _opens_block(line):
                self._state = _Block.AFTER_FINAL
        elif state is _Block.AFTER_FINAL:
            if not line.strip():
                self._held.append(line)
            elif line in _CHAIN_LINES or line.strip() in _CHAIN_LINES:
                self._take_held(out)
                self._append(line, out)
                self._state = _Block.CHAINED
            else:
                out.extend(self.idle())
                out.extend(self.feed(line))
        elif _opens_block(line):  # CHAINED: the next traceback of the chain
            self._take_held(out)
            self._append(line, out)
            self._state = _Block.FRAMES
            self._group = line.lstrip().startswith(_GROUP_HEADER)
        elif not line.strip():
            self._held.append(line)
        else:
            out.extend(self.idle())
            out.extend(self.feed(line))
        return out

    def idle(self) -> list[RawText]:
        """End the current block: no more of it is coming (idle timeout or end of output)."""
        out: list[RawText] = []
        if self._only_thread_header():
            out.append(RawText(self._lines[0], time_ns=self._started_ns))
        elif self._lines:
            out.append(_block_text(self._lines, self._started_ns))
        out.extend(RawText(line, time_ns=time.time_ns()) for line in self._held)
        self._state = _Block.NONE
        self._lines, self._held, self._size = [], [], 0
        return out

    def _only_thread_header(self) -> bool:
        return (
            len(self._lines) == 1
            and self._lines[0].startswith(_THREAD_HEADER)
            and self._state is _Block.FRAMES
        )

    def _start(self, line: str) -> None:
        self._state = _Block.FRAMES
        self._group = line.lstrip().startswith(_GROUP_HEADER)
        self._lines, self._size = [line], len(line) + 1
        self._started_ns = time.time_ns()

    def _take_held(self, out: list[RawText]) -> None:
        for held in self._held:
            self._append(held, out)
        self._held = []

    def _append(self, line: str, out: list[RawText]) -> None:
        if self._lines and (
            len(self._lines) >= self._max_lines or self._size + len(line) + 1 > self._max_bytes
        ):
            out.append(_block_text(self._lines, self._started_ns))  # a piece: the rest follows
            self._lines, self._size, self._started_ns = [], 0, time.time_ns()
        self._lines.append(line)
        self._size += len(line) + 1


def _opens_block(line: str) -> bool:
    return (
        line.startswith(TRACEBACK_HEADER)
        or line.lstrip().startswith(_GROUP_HEADER)
        or (line.startswith(_THREAD_HEADER) and line.rstrip().endswith(":"))
    )


def _block_text(lines: list[str], started_ns: int) -> RawText:
    stacktrace = "\n".join(lines)
    if lines and lines[0].lstrip().startswith(_GROUP_HEADER):
        # An exception group names itself on its first "| Kind: message" line.
        for line in lines[1:]:
            named = _exception_line(line.strip().lstrip("|").strip(), stacktrace, started_ns)
            if named is not None:
                return named
        return RawText(lines[0], stacktrace, time_ns=started_ns)
    named = _exception_line(lines[-1], stacktrace, started_ns) if lines else None
    return named if named is not None else RawText(lines[0] if lines else "", stacktrace, time_ns=started_ns)


def _exception_line(line: str, stacktrace: str, started_ns: int) -> RawText | None:
    """The record of a traceback whose final line is ``line``, if it reads ``Kind: message``."""
    kind, separator, message = line.partition(": ")
    if (
        not line
        or line[0].isspace()
        or not kind.replace(".", "").replace("_", "").isalnum()
        or kind[0].isdigit()
        or line.startswith("File ")
    ):
        return None
    return RawText(line, stacktrace, kind, message if separator else "", started_ns)


def pump_output(
    fd: int,
    on_text: Callable[[RawText], None],
    grouper: TracebackGrouper,
    *,
    max_line_bytes: int,
    idle_seconds: float,
) -> None:
    """Read ``fd`` to its end, handing each line (or traceback) to ``on_text``.

    A line longer than ``max_line_bytes`` is handed on in pieces. A traceback still open
    after ``idle_seconds`` without output is handed on as it is.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    buffer = bytearray()

    def emit(raw: bytes) -> None:
        line = raw.rstrip(b"\r").decode("utf-8", "replace")
        for text in grouper.feed(line):
            on_text(text)

    while True:
        timeout_millis = int(idle_seconds * 1000) if grouper.pending else None
        if not poller.poll(timeout_millis):
            for text in grouper.idle():
                on_text(text)
            continue
        chunk = os.read(fd, _READ_BYTES)
        if not chunk:
            break
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0 and len(buffer) >= max_line_bytes:
                end = max_line_bytes
                emit(bytes(buffer[:end]))
                del buffer[:end]
                continue
            if end < 0:
                break
            emit(bytes(buffer[:end]))
            del buffer[: end + 1]
    if buffer:
        emit(bytes(buffer))
    for text in grouper.idle():
        on_text(text)
