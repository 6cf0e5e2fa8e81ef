"""Bad settings and names (issue 13, item 6): a clear error naming the variable, exit 2, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from otel_plugin_logs import ConfigError, HostLogBridge

CLI = [sys.executable, "-m", "otel_plugin_logs"]  # the real CLI, whatever PATH holds
LONG = "/tmp/" + "d" * 120

BAD_SETTINGS = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:99999"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://localhost:4317"),
    ("OTEL_PLUGIN_LOGS_RUNTIME_DIR", "/dev/null"),
    ("OTEL_PLUGIN_LOGS_RUNTIME_DIR", LONG),
    ("OTEL_PLUGIN_LOGS_RUNTIME_DIR", "/proc/self"),
    ("OTEL_PLUGIN_LOGS_FILE_DIR", "/dev/null/x"),
    ("OTEL_PLUGIN_LOGS_SHUTDOWN_TIMEOUT_MILLIS", "1e20"),
    ("OTEL_PLUGIN_LOGS_SHUTDOWN_TIMEOUT_MILLIS", "100000000000000000000"),
    ("OTEL_PLUGIN_LOGS_RUNNER_SHUTDOWN_TIMEOUT_MILLIS", "100000000000000000000"),
    ("OTEL_PLUGIN_LOGS_RATE_LIMIT_BYTES_PER_SECOND", "inf"),
]


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["TMPDIR"] = str(tmp_path / "tmp")
    env["OTEL_PLUGIN_LOGS_FILE_DIR"] = str(tmp_path / "sink")
    (tmp_path / "tmp").mkdir()
    return env


@pytest.mark.parametrize(("variable", "value"), BAD_SETTINGS)
def test_bad_setting_is_a_named_error_with_exit_2_and_nothing_left(
    tmp_path: Path, variable: str, value: str
) -> None:
    """`run` with one bad value: exit 2, one line naming the variable, no traceback, no runtime dir, socket or sink left."""
    env = _clean_env(tmp_path)
    env[variable] = value
    done = subprocess.run(
        [*CLI, "run", "-p", "ok", "--", "true"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert variable in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "sink").exists()
    assert not Path(LONG).exists()


@pytest.mark.parametrize("name", ["evil\n", "has space", "dot.ted", "", "x" * 65, "-leading"])
def test_bad_plugin_name_is_refused_before_anything_starts(tmp_path: Path, name: str) -> None:
    """`run -p NAME` with a name outside the rule: exit 2 stating the rule, nothing left behind."""
    env = _clean_env(tmp_path)
    done = subprocess.run(
        [*CLI, "run", f"--plugin={name}", "--", "true"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "invalid plugin name" in done.stderr and "ASCII letters, digits" in done.stderr, done.stderr
    assert list((tmp_path / "tmp").iterdir()) == []


def test_register_runner_matches_the_whole_name(host_env: Path) -> None:
    """The bridge's API applies the same rule with a full match: a trailing newline is refused."""
    with HostLogBridge() as bridge, pytest.raises(ConfigError, match="invalid plugin name"):
        bridge.register_runner("evil\n")
