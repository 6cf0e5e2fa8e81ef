"""`otel-plugin-logs run` as a supervisor would use it: signals passed on once, a deadline, SIGKILL, no orphan."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PYTHON, kill_pid, process_gone, wait_until, write_plugin

# A plugin that writes a line to a file for each signal it gets, so the test counts them.
SIGNAL_COUNTER = """
import logging, os, signal, sys, time
log = logging.getLogger("counter")
log.setLevel(logging.INFO)
seen = sys.argv[1]
def note(signum, frame):
    with open(seen, "a") as out:
        out.write(signal.Signals(signum).name + "\\n")
    log.warning("got %s", signal.Signals(signum).name)
    if os.environ.get("EXIT_ON_SIGNAL"):
        sys.exit(3)
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, note)
with open(sys.argv[2], "w") as out:
    out.write(str(os.getpid()))
while True:
    time.sleep(0.05)
"""


class RunProcess:
    """`otel-plugin-logs run` in its own session (no terminal), as a service manager starts it."""

    def __init__(self, tmp_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.seen = tmp_path / "signals"
        self.pid_file = tmp_path / "child.pid"
        script = write_plugin(tmp_path, "counter", SIGNAL_COUNTER)
        env = dict(os.environ, **(extra_env or {}))
        command = [PYTHON, "-m", "otel_plugin_logs", "run", "-p", "counter", "--"]
        self.popen = subprocess.Popen(
            [*command, PYTHON, str(script), str(self.seen), str(self.pid_file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def child_pid(self) -> int:
        assert wait_until(lambda: self.pid_file.exists() and self.pid_file.read_text() != "", 60)
        return int(self.pid_file.read_text())

    def signals_seen(self) -> list[str]:
        return self.seen.read_text().split() if self.seen.exists() else []

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        _, err = self.popen.communicate(timeout=timeout)
        return self.popen.returncode, err


@pytest.fixture
def run_process(tmp_path: Path, host_env: Path) -> Iterator[RunProcess]:
    """A started `run`; it and its child are killed by pid whatever the test did."""
    started = RunProcess(tmp_path, {"OTEL_PLUGIN_LOGS_KILL_TIMEOUT_MILLIS": "500"})
    try:
        yield started
    finally:
        for pid in (started.popen.pid, _read_pid(started.pid_file)):
            if pid:
                kill_pid(pid)
        started.popen.kill()
        started.popen.wait(10)


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0


def test_child_ignoring_sigterm_is_killed_after_the_deadline(run_process: RunProcess) -> None:
    """SIGTERM reaches the child once; it ignores it; `run` kills it after the deadline and says so."""
    child = run_process.child_pid()
    run_process.popen.send_signal(signal.SIGTERM)
    code, err = run_process.finish()
    assert code == 128 + signal.SIGKILL
    assert run_process.signals_seen() == ["SIGTERM"]
    assert "killing plugin counter" in err and "SIGKILL" in err and "did not exit 0.5 s after SIGTERM" in err
    assert process_gone(child)


def test_sigint_to_the_process_group_reaches_the_child_once(run_process: RunProcess) -> None:
    """`kill -INT -PGID` of a `run` without a terminal: the child gets SIGINT once, not twice."""
    child = run_process.child_pid()
    os.killpg(run_process.popen.pid, signal.SIGINT)
    assert wait_until(lambda: run_process.signals_seen() != [], 30)
    code, _ = run_process.finish()
    assert run_process.signals_seen() == ["SIGINT"]
    assert code == 128 + signal.SIGKILL and process_gone(child)


def test_a_second_signal_kills_at_once(run_process: RunProcess) -> None:
    """A second signal while the child is stopping escalates to SIGKILL without waiting."""
    run_process.child_pid()
    run_process.popen.send_signal(signal.SIGHUP)
    assert wait_until(lambda: run_process.signals_seen() == ["SIGHUP"], 30)
    run_process.popen.send_signal(signal.SIGTERM)
    code, err = run_process.finish()
    assert code == 128 + signal.SIGKILL and "a second signal (SIGTERM)" in err
    assert run_process.signals_seen() == ["SIGHUP"]


def test_child_that_exits_on_the_signal_gives_its_code(tmp_path: Path, host_env: Path) -> None:
    """A forwarded SIGTERM that the child handles by exiting: `run` exits with the child's code, no kill."""
    started = RunProcess(tmp_path, {"EXIT_ON_SIGNAL": "1", "OTEL_PLUGIN_LOGS_KILL_TIMEOUT_MILLIS": "30000"})
    try:
        started.child_pid()
        started.popen.send_signal(signal.SIGTERM)
        code, err = started.finish()
    finally:
        started.popen.kill()
        started.popen.wait(10)
    assert code == 3 and "SIGKILL" not in err
    assert started.signals_seen() == ["SIGTERM"]


def test_run_killed_by_sigkill_leaves_no_child(run_process: RunProcess) -> None:
    """`kill -9` of `run`: the child dies with it (PR_SET_PDEATHSIG) instead of logging on as an orphan."""
    child = run_process.child_pid()
    run_process.popen.kill()
    run_process.popen.wait(30)
    assert wait_until(lambda: process_gone(child), 30)


def test_signal_reaches_the_childs_own_children(tmp_path: Path, host_env: Path) -> None:
    """The child has its own process group: a forwarded SIGTERM reaches the processes it started too."""
    pid_file = tmp_path / "grandchild.pid"
    script = write_plugin(
        tmp_path,
        "parent",
        f"""
    import subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open({str(pid_file)!r}, "w") as out:
        out.write(str(grandchild.pid))
    grandchild.wait()
    """,
    )
    popen = subprocess.Popen(
        [PYTHON, "-m", "otel_plugin_logs", "run", "-p", "parent", "--", PYTHON, str(script)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: _read_pid(pid_file) != 0, 60)
        grandchild = _read_pid(pid_file)
        popen.send_signal(signal.SIGTERM)
        popen.communicate(timeout=60)
        assert popen.returncode == 128 + signal.SIGTERM
        assert wait_until(lambda: process_gone(grandchild), 30)
    finally:
        kill_pid(_read_pid(pid_file))
        popen.kill()
        popen.wait(10)


# Makes the pty the controlling terminal of a new session, then runs `run` in its foreground.
IN_A_TERMINAL = """
import os, sys
os.setsid()
fd = os.open(sys.argv[1], os.O_RDWR)
for target in (0, 1, 2):
    os.dup2(fd, target)
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_ctrl_c_in_a_terminal_reaches_the_child_once(tmp_path: Path, host_env: Path) -> None:
    """In a terminal the child is in the foreground group, and Ctrl-C reaches it once, not twice."""
    seen, pid_file = tmp_path / "signals", tmp_path / "child.pid"
    script = write_plugin(tmp_path, "counter", SIGNAL_COUNTER)
    master, slave = os.openpty()
    command = [PYTHON, "-m", "otel_plugin_logs", "run", "-p", "counter", "--", PYTHON, str(script)]
    popen = subprocess.Popen(
        [PYTHON, "-c", IN_A_TERMINAL, os.ttyname(slave), *command, str(seen), str(pid_file)],
        env=dict(os.environ, EXIT_ON_SIGNAL="1"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(slave)
    try:
        assert wait_until(lambda: _read_pid(pid_file) != 0, 60)
        assert os.getpgid(_read_pid(pid_file)) == os.tcgetpgrp(master)  # it can read the terminal
        os.write(master, b"\x03")  # the terminal's interrupt character
        assert popen.wait(60) == 3
        assert seen.read_text().split() == ["SIGINT"]
    finally:
        kill_pid(_read_pid(pid_file))
        popen.kill()
        popen.wait(10)
        os.close(master)
