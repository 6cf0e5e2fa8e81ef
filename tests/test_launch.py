"""Runners start without a fork of the host, and still die with it (PR_SET_PDEATHSIG after exec)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from helpers import PYTHON, wait_until, write_plugin

from otel_plugin_logs.host.launch import ENV_DIE_WITH_PARENT, loads_bootstrap, plan_launch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# A host that spawns one plugin with die_with_parent and says whether anything forked it.
FORK_WATCHING_HOST = """
import os, sys
from otel_plugin_logs import HostLogBridge
forks = []
os.register_at_fork(before=lambda: forks.append(1))
bridge = HostLogBridge(exporter="none").start()
try:
    process = bridge.spawn_plugin("p", sys.argv[1:], die_with_parent=True)
    process.wait(60)
finally:
    bridge.shutdown()
print("forks", len(forks), "exit", process.returncode)
"""

# A Python plugin that reports the death signal it was armed with and what its children inherit.
REPORTS_ITS_ARMING = """
import ctypes, os, sys
signal_number = ctypes.c_int(0)
ctypes.CDLL(None).prctl(2, ctypes.byref(signal_number), 0, 0, 0)  # PR_GET_PDEATHSIG
with open(sys.argv[1], "w") as out:
    out.write(f"{signal_number.value} {os.environ.get('OTEL_PLUGIN_LOGS_DIE_WITH_PARENT', '')!r}")
"""


def _run_host(tmp_path: Path, *argv: str) -> str:
    host = write_plugin(tmp_path, "host", FORK_WATCHING_HOST)
    done = subprocess.run([PYTHON, str(host), *argv], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip().splitlines()[-1]


def test_a_python_plugin_is_spawned_without_a_fork(tmp_path: Path, host_env: Path) -> None:
    """No at-fork handler of the host runs for a Python plugin started with die_with_parent."""
    assert _run_host(tmp_path, PYTHON, "-c", "pass") == "forks 0 exit 0"


def test_any_other_program_is_spawned_without_a_fork(tmp_path: Path, host_env: Path) -> None:
    """No at-fork handler of the host runs for a program started through the launcher."""
    assert _run_host(tmp_path, "/bin/sh", "-c", "exit 0") == "forks 0 exit 0"


def test_a_python_plugin_arms_itself_and_its_children_do_not(tmp_path: Path, host_env: Path) -> None:
    """The bootstrap arms SIGKILL (9) and removes the request from the environment it passes on."""
    report = tmp_path / "report"
    plugin = write_plugin(tmp_path, "plugin", REPORTS_ITS_ARMING)
    assert _run_host(tmp_path, PYTHON, str(plugin), str(report)) == "forks 0 exit 0"
    assert report.read_text() == "9 ''"


def test_the_launcher_arms_the_program_it_execs(tmp_path: Path, host_env: Path) -> None:
    """A program the bootstrap cannot reach (python -I) is armed by the launcher, in its own pid."""
    report = tmp_path / "report"
    plugin = write_plugin(tmp_path, "plugin", REPORTS_ITS_ARMING)
    assert _run_host(tmp_path, PYTHON, "-I", str(plugin), str(report)) == "forks 0 exit 0"
    assert report.read_text().startswith("9 ")


def test_a_missing_command_is_refused_as_popen_would() -> None:
    """A command that is not on PATH raises FileNotFoundError before anything starts."""
    with pytest.raises(FileNotFoundError):
        plan_launch(["no-such-command-here"], {"PATH": "/nonexistent"}, die_with_parent=True)


def test_a_file_without_the_execute_bit_is_refused_as_popen_would(tmp_path: Path) -> None:
    """A path that cannot be executed raises PermissionError before anything starts."""
    script = tmp_path / "script.sh"
    script.write_text("exit 0\n")
    with pytest.raises(PermissionError):
        plan_launch([str(script)], {}, die_with_parent=True)


def test_run_killed_by_sigkill_leaves_no_shell_child(tmp_path: Path, host_env: Path) -> None:
    """`kill -9` of `run` also ends a plugin that is not Python (it was armed by the launcher)."""
    pid_file = tmp_path / "child.pid"
    command = [PYTHON, "-m", "otel_plugin_logs", "run", "-p", "shell", "--"]
    popen = subprocess.Popen(
        [*command, "/bin/sh", "-c", f"echo $$ > {pid_file}; exec sleep 120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    child = 0
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 60)
        child = int(pid_file.read_text())
        popen.kill()
        popen.wait(30)
        assert wait_until(lambda: not psutil.pid_exists(child) or _zombie(child), 30)
    finally:
        if child:
            _kill(child)
        popen.kill()
        popen.wait(10)


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill(pid: int) -> None:
    try:
        psutil.Process(pid).kill()
    except psutil.Error:
        pass


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["python3", "plugin.py"], True),
        (["/usr/bin/python3.11", "-u", "-X", "dev", "plugin.py"], True),
        (["python", "-c", "import sys; print(sys.argv)", "-I"], True),
        (["python3", "-m", "plugin"], True),
        (["python3", "-I", "plugin.py"], False),
        (["python3", "-sE", "plugin.py"], False),
        (["python3", "-S", "-c", "pass"], False),
        (["/bin/sh", "-c", "python3 plugin.py"], False),
        (["uv", "run", "plugin.py"], False),
    ],
)
def test_which_commands_load_the_bootstrap(argv: list[str], expected: bool) -> None:
    """Only a Python interpreter whose flags keep sitecustomize and PYTHONPATH arms itself."""
    assert loads_bootstrap(argv) is expected


def test_the_request_is_the_variable_the_bootstrap_reads() -> None:
    """The host and the bootstrap name the same variable (one from each side of the exec)."""
    assert ENV_DIE_WITH_PARENT in REPORTS_ITS_ARMING


def test_the_request_names_this_process() -> None:
    """The parent pid the plugin checks against is the host's own."""
    launch = plan_launch(
        ["python3", "plugin.py"], {"OTEL_PLUGIN_LOGS_AUTO_INSTALL": "1"}, die_with_parent=True
    )
    assert launch.env[ENV_DIE_WITH_PARENT] == str(os.getpid())
