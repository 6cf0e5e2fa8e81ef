"""What auto-install costs a plugin's start: the modules it loads, and its CPU time against none.

Each plugin here is a real interpreter with the bootstrap first on ``PYTHONPATH`` and the
environment a host gives a runner (socket, token, auto-install); no host listens unless the
test starts one, and start-up must not wait for one.
"""

from __future__ import annotations

import ast
import os
import statistics
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from helpers import PYTHON, MemorySink, write_plugin

import otel_plugin_logs
from otel_plugin_logs import HostLogBridge

BOOTSTRAP_DIR = Path(otel_plugin_logs.__file__).parent / "runner" / "bootstrap"
PACKAGE_PARENT = Path(otel_plugin_logs.__file__).parent.parent
SHOW_MODULES = "import sys; print(sorted(sys.modules))"

# What importing the runner may load of ours once logging is imported: the capture, the exit
# hooks and the runner settings. The handler, its transport and msgpack wait for a record.
RUNNER_START_MODULES = frozenset(
    {
        "otel_plugin_logs",
        "otel_plugin_logs.config",
        "otel_plugin_logs.config.errors",
        "otel_plugin_logs.config.fields",
        "otel_plugin_logs.config.runner",
        "otel_plugin_logs.runner",
        "otel_plugin_logs.runner.capture",
        "otel_plugin_logs.runner.exit_hooks",
        "otel_plugin_logs.wire",
        "otel_plugin_logs.wire.limits",
    }
)
# Costly modules a plugin that does not use them itself must not pay for at start.
HEAVY_MODULES = frozenset(
    {
        "asyncio",
        "dataclasses",
        "inspect",
        "msgpack",
        "secrets",
        "socket",
        "tempfile",
        "typing",
        "urllib.parse",
    }
)
# Modules the runner's whole path (bootstrap, first record, sender, acknowledgement, exit) must not
# load: each costs every plugin its import and again its interpreter teardown, after the last
# acknowledgement (typing; dataclasses with inspect, ast and dis; secrets with hmac and random;
# hashlib, which loads OpenSSL).
RUNNER_PATH_EXCLUDED_MODULES = frozenset(
    {"ast", "base64", "dataclasses", "dis", "hashlib", "hmac", "inspect", "random", "secrets", "typing"}
)
# Registered before logging is imported, so that atexit runs it last: after the runner's flush.
MODULES_AT_EXIT = """
import atexit, os, sys

def _show_modules():
    with open(os.environ["MODULES_FILE"], "w") as out:
        out.write(repr(sorted(sys.modules)))

atexit.register(_show_modules)
"""


def _plain_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("OTEL_") and name not in ("PYTHONPATH", "PYTHONSTARTUP")
    }


def _runner_env(tmp_path: Path) -> dict[str, str]:
    return {
        **_plain_env(),
        "PYTHONPATH": str(BOOTSTRAP_DIR),
        "OTEL_PLUGIN_LOGS_FALLBACK_PATH": str(PACKAGE_PARENT),
        "OTEL_PLUGIN_LOGS_SOCKET": str(tmp_path / "nobody-listens.sock"),
        "OTEL_PLUGIN_LOGS_TOKEN": "t" * 43,
        "OTEL_PLUGIN_LOGS_PLUGIN_NAME": "startup",
        "OTEL_PLUGIN_LOGS_AUTO_INSTALL": "1",
        "OTEL_PLUGIN_LOGS_RUNNER_SHUTDOWN_TIMEOUT_MILLIS": "200",
    }


def _modules(code: str, env: Mapping[str, str]) -> set[str]:
    """The modules loaded once ``code`` ran, printed by its last statement."""
    result = subprocess.run(
        [PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return set(ast.literal_eval(result.stdout.strip().splitlines()[-1]))


def _cpu_seconds(code: str, env: Mapping[str, str]) -> float:
    """User plus system CPU time of one interpreter running ``code``."""
    process = subprocess.Popen([PYTHON, "-c", code], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0
    return usage.ru_utime + usage.ru_stime


def test_a_plugin_that_never_logs_loads_neither_logging_nor_the_runner(tmp_path: Path) -> None:
    """Before logging is imported, the bootstrap has loaded only the package itself."""
    plain = _modules(SHOW_MODULES, _plain_env())
    booted = _modules(SHOW_MODULES, _runner_env(tmp_path))
    ours = {name for name in booted - plain if name.startswith("otel_plugin_logs")}
    assert ours == {"otel_plugin_logs", "otel_plugin_logs.config", "otel_plugin_logs.config.errors"}
    assert "logging" not in booted
    assert not (booted - plain) & HEAVY_MODULES


def test_importing_logging_installs_the_capture_and_loads_only_what_it_needs(tmp_path: Path) -> None:
    """Once logging is imported the capture is in place; the handler and msgpack are not loaded yet."""
    code = (
        f"import logging; assert logging.Logger.callHandlers.__module__.endswith('capture'); {SHOW_MODULES}"
    )
    plain = _modules(f"import logging; {SHOW_MODULES}", _plain_env())
    booted = _modules(code, _runner_env(tmp_path))
    added = booted - plain
    assert {name for name in added if name.startswith("otel_plugin_logs")} == RUNNER_START_MODULES
    assert not added & HEAVY_MODULES


def test_the_first_record_makes_the_handler(tmp_path: Path) -> None:
    """The handler, with msgpack, is made when the first record is offered to the capture."""
    code = (
        "import logging, sys; from otel_plugin_logs import runner; "
        "assert 'otel_plugin_logs.runner.handler' not in sys.modules; "
        "logging.getLogger('app').warning('first'); "
        "assert runner.installed_handler() is not None; "
        f"{SHOW_MODULES}"
    )
    booted = _modules(code, _runner_env(tmp_path))
    assert {"otel_plugin_logs.runner.handler", "msgpack"} <= booted


def test_a_record_logged_at_start_reaches_the_host(tmp_path: Path, host_env: Path) -> None:
    """The deferred handler loses nothing: the first statement's record arrives, and a later one."""
    script = write_plugin(
        tmp_path,
        "early",
        "import logging\nlogging.getLogger('app').warning('at start')\nlogging.getLogger('app').error('later')\n",
    )
    sink = MemorySink()
    with HostLogBridge(sink=sink) as bridge:
        assert bridge.spawn_plugin("early", [PYTHON, str(script)]).wait(30) == 0
        assert bridge.force_flush(10_000)
    assert [entry.body for entry in sink.entries("early")] == ["at start", "later"]


def test_auto_install_costs_little_cpu_against_the_same_interpreter(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    """Interleaved runs of `import logging`: the bootstrap adds little CPU (generous for a loaded machine).

    Before the start-up work it added 150 ms to a ~45 ms interpreter (source not compiled).
    """
    code = "import logging"
    plain_env, runner_env = _plain_env(), _runner_env(tmp_path)
    plain, booted = [], []
    for _ in range(9):
        plain.append(_cpu_seconds(code, plain_env))
        booted.append(_cpu_seconds(code, runner_env))
    plain_ms, booted_ms = statistics.median(plain) * 1000, statistics.median(booted) * 1000
    record_property("startup_added_cpu_millis", round(booted_ms - plain_ms, 1))
    sys.stderr.write(f"\nauto-install start-up: {plain_ms:.1f} ms → {booted_ms:.1f} ms CPU (median of 9)\n")
    assert booted_ms <= 2.0 * plain_ms + 10.0


def test_uninstall_before_any_record_makes_no_handler(tmp_path: Path) -> None:
    """A plugin that uninstalls before logging never loads the handler, and its records stay its own."""
    code = (
        "import logging, sys; from otel_plugin_logs import runner; "
        "assert runner.uninstall(1000) is True; "
        "assert logging.Logger.callHandlers.__module__ == 'logging'; "
        "logging.getLogger('app').warning('mine'); "
        f"{SHOW_MODULES}"
    )
    result = subprocess.run(
        [PYTHON, "-c", code],
        env=_runner_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "otel_plugin_logs.runner.handler" not in ast.literal_eval(result.stdout.strip())
    assert result.stderr == "mine\n"


def test_the_runner_path_to_exit_loads_no_costly_module(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin whose record reaches the host has loaded neither typing, dataclasses nor secrets at its exit."""
    code = "import logging\nlogging.getLogger('app').warning('one')\n"
    plain_file, booted_file = tmp_path / "plain-modules", tmp_path / "booted-modules"
    subprocess.run(
        [PYTHON, "-c", MODULES_AT_EXIT + code],
        env={**_plain_env(), "MODULES_FILE": str(plain_file)},
        capture_output=True,
        timeout=60,
        check=True,
    )
    script = write_plugin(tmp_path, "footprint", MODULES_AT_EXIT + code)
    monkeypatch.setenv("MODULES_FILE", str(booted_file))
    sink = MemorySink()
    with HostLogBridge(sink=sink) as bridge:
        assert bridge.spawn_plugin("footprint", [PYTHON, str(script)]).wait(30) == 0
        assert bridge.force_flush(10_000)
    assert [entry.body for entry in sink.entries("footprint")] == ["one"]
    plain = set(ast.literal_eval(plain_file.read_text()))
    booted = set(ast.literal_eval(booted_file.read_text()))
    assert {"otel_plugin_logs.runner.sender", "otel_plugin_logs.runner.transport"} <= booted
    assert not (booted - plain) & RUNNER_PATH_EXCLUDED_MODULES


FREEZE_PROBE = """
import gc
mine = [object()]
print(gc.get_freeze_count() > 0, any(o is mine for o in gc.get_objects()))
"""


def test_the_bootstrap_freezes_the_start_up_objects_and_nothing_of_the_plugin(tmp_path: Path) -> None:
    """Under auto-install the interpreter's start-up objects are frozen; what the plugin makes is collected as usual."""
    result = subprocess.run(
        [PYTHON, "-c", FREEZE_PROBE], env=_runner_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["True", "True"], result.stderr


def test_freezing_the_start_up_objects_can_be_turned_off(tmp_path: Path) -> None:
    """OTEL_PLUGIN_LOGS_FREEZE_STARTUP_OBJECTS=false leaves the collector as the interpreter set it."""
    env = {**_runner_env(tmp_path), "OTEL_PLUGIN_LOGS_FREEZE_STARTUP_OBJECTS": "false"}
    result = subprocess.run([PYTHON, "-c", FREEZE_PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "True"], result.stderr


CYCLE_WITH_FINALIZER = """
import logging, os, sys
logging.getLogger("cycle").warning("a record, so the runner is in place")

class Holder:
    def __init__(self, path):
        self.me = self  # a reference cycle: only the collector frees it
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT)

    def __del__(self):
        os.write(self.fd, b"finalized")

holder = Holder(sys.argv[1])
del holder
"""


def test_a_reference_cycle_the_plugin_made_is_still_finalized_at_exit(tmp_path: Path) -> None:
    """With the start-up objects frozen, a cycle the plugin made is still collected at exit: its finalizer runs."""
    target = tmp_path / "out.txt"
    result = subprocess.run(
        [PYTHON, "-c", CYCLE_WITH_FINALIZER, str(target)],
        env=_runner_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == b"finalized"
