"""Runners start without a fork of the host, and still die with it (PR_SET_PDEATHSIG after exec)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from helpers import PYTHON, kill_pid, process_gone, wait_until, write_plugin

from otel_plugin_logs.host.launch import BOOTSTRAP_DIR, ENV_DIE_WITH_PARENT, loads_bootstrap, plan_launch

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


# A host that spawns a plugin with die_with_parent in the directory it is given.
CWD_HOST = """
import sys
from otel_plugin_logs import HostLogBridge
bridge = HostLogBridge(exporter="none").start()
try:
    process = bridge.spawn_plugin("p", sys.argv[2:], die_with_parent=True, cwd=sys.argv[1])
    assert process.wait(60) == 0
finally:
    bridge.shutdown()
"""


# The same, with an environment of PATH alone (no locale variable: the C locale).
BARE_ENV_HOST = CWD_HOST.replace(
    "cwd=sys.argv[1]", "cwd=sys.argv[1], env={'PATH': os.environ['PATH']}"
).replace("import sys", "import os, sys")


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


def _run_cli(cwd: Path, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "otel_plugin_logs", "run", "-p", "x", "--", *command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


@pytest.mark.parametrize(
    ("script", "returncode", "reason"),
    [
        ("#!/no/such/interpreter\n", 127, "No such file or directory"),
        ("echo no shebang line\n", 126, "Exec format error"),
    ],
)
def test_a_script_that_exec_refuses_fails_in_the_host_as_popen_did(
    tmp_path: Path, host_env: Path, script: str, returncode: int, reason: str
) -> None:
    """An exec failure in the launcher is raised by the host: `run` gives the code and its own message."""
    path = tmp_path / "plugin.sh"
    path.write_text(script)
    path.chmod(0o755)
    result = _run_cli(tmp_path, "./plugin.sh")
    assert result.returncode == returncode
    assert f"otel-plugin-logs: cannot run './plugin.sh': {reason}" in result.stderr


@pytest.mark.parametrize("make", [lambda path: path.mkdir(), lambda path: path.write_text("exit 0\n")])
def test_a_name_on_path_that_cannot_be_executed_exits_126(
    tmp_path: Path, host_env: Path, make: Callable[[Path], None]
) -> None:
    """A directory or a file without the execute bit found on PATH: 126 (permission), not 127."""
    make(tmp_path / "plugin-here")
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    result = _run_cli(tmp_path, "plugin-here", env=env)
    assert result.returncode == 126 and "cannot run 'plugin-here': Permission denied" in result.stderr


def test_a_relative_command_runs_from_cwd(tmp_path: Path, host_env: Path) -> None:
    """A relative path is found from the plugin's ``cwd``, through the launcher as through Popen."""
    (tmp_path / "sub").mkdir()
    script = tmp_path / "sub" / "plugin.sh"
    script.write_text("#!/bin/sh\npwd > where\n")
    script.chmod(0o755)
    host = write_plugin(tmp_path, "host", CWD_HOST)
    subprocess.run([PYTHON, str(host), str(tmp_path / "sub"), "./plugin.sh"], timeout=120, check=True)
    assert (tmp_path / "sub" / "where").read_text().strip() == str(tmp_path / "sub")


def test_the_launched_command_gets_default_signal_dispositions(tmp_path: Path, host_env: Path) -> None:
    """SIGPIPE and SIGXFSZ are not left ignored by the launcher's interpreter (a pipeline ends as usual)."""
    result = _run_cli(tmp_path, "/bin/sh", "-c", "grep SigIgn /proc/self/status >&2")
    assert result.returncode == 0
    assert "SigIgn:\t0000000000000000" in result.stderr.replace("\\t", "\t")


def test_a_sigint_ignored_by_the_host_stays_ignored_in_the_launched_command(tmp_path: Path) -> None:
    """The launcher restores SIGINT's default only over its own interpreter's handler."""
    launch = plan_launch(["/bin/sh", "-c", "grep SigIgn /proc/self/status"], os.environ, die_with_parent=True)
    popen = launch.popen(stdout=subprocess.PIPE, preexec_fn=_ignore_sigint)
    output, _ = popen.communicate(timeout=60)
    assert int(output.split()[-1], 16) == 1 << (signal.SIGINT - 1)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_the_launched_command_gets_the_environment_as_given(tmp_path: Path, host_env: Path) -> None:
    """The launcher's interpreter coerces a C locale in its own environment; the command does not see it."""
    host = write_plugin(tmp_path, "host", BARE_ENV_HOST)
    command = ["/bin/sh", "-c", "echo ${LC_CTYPE-unset} > where"]
    subprocess.run([PYTHON, str(host), str(tmp_path), *command], timeout=120, check=True)
    assert (tmp_path / "where").read_text().strip() == "unset"


def test_an_inherited_request_is_not_passed_on() -> None:
    """A stale request in the host's environment names another process: the plugin never gets it."""
    launch = plan_launch(["/bin/sh", "-c", "true"], {ENV_DIE_WITH_PARENT: "1"}, die_with_parent=False)
    assert ENV_DIE_WITH_PARENT not in launch.env


def test_a_python_wrapper_script_is_started_through_the_launcher(tmp_path: Path) -> None:
    """A ``python3`` that is a script may fork the interpreter, whose parent is then not the host."""
    wrapper = tmp_path / "python3"
    wrapper.write_text(f'#!/bin/sh\n{PYTHON} "$@"\n')
    wrapper.chmod(0o755)
    env = {"OTEL_PLUGIN_LOGS_AUTO_INSTALL": "1", "PATH": str(tmp_path)}
    launch = plan_launch(["python3", "plugin.py"], env, die_with_parent=True)
    assert ENV_DIE_WITH_PARENT not in launch.env and launch.argv[-2:] == ["python3", "plugin.py"]
    assert launch.argv[0] == sys.executable


def test_a_request_for_another_live_parent_is_withdrawn(tmp_path: Path) -> None:
    """A Python process asked to die with a live process that is not its parent runs, unarmed."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        env = {**os.environ, "PYTHONPATH": BOOTSTRAP_DIR, ENV_DIE_WITH_PARENT: str(other.pid)}
        plugin = write_plugin(tmp_path, "plugin", REPORTS_ITS_ARMING)
        report = tmp_path / "report"
        subprocess.run([PYTHON, str(plugin), str(report)], env=env, timeout=60, check=True)
        assert report.read_text() == "0 ''"
    finally:
        other.kill()
        other.wait()


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
        assert wait_until(lambda: not psutil.pid_exists(child) or process_gone(child), 30)
    finally:
        if child:
            kill_pid(child)
        popen.kill()
        popen.wait(10)


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
