"""`otel-plugin-logs run` on the command line: a short help, clear errors, the shells' exit codes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import PYTHON

from otel_plugin_logs.cli.main import main

RUN = [PYTHON, "-m", "otel_plugin_logs", "run"]


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUN, *argv], capture_output=True, text=True, timeout=120)


def test_run_help_is_short_and_points_to_the_full_list(capsys: pytest.CaptureFixture[str]) -> None:
    """`run --help` shows the options, a few key variables and where the rest is, in under 50 lines."""
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert len(out.splitlines()) < 50
    for text in ("--plugin", "--pass-stdout", "--help-variables", "doctor", "README", "KILL_TIMEOUT_MILLIS"):
        assert text in out
    assert "OTEL_PLUGIN_LOGS_RUNNER_MAX_QUEUE_RECORDS" not in out


def test_help_variables_keeps_runner_variables_out_of_the_bridge_section(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`run --help-variables` lists the bridge's and the runner's variables under their own headings."""
    with pytest.raises(SystemExit):
        main(["run", "--help-variables"])
    out = capsys.readouterr().out
    bridge, _, rest = out.partition("runner variables")
    assert "bridge variables" in bridge and "OTEL_PLUGIN_LOGS_KILL_TIMEOUT_MILLIS" in bridge
    assert "OTEL_PLUGIN_LOGS_RUNNER_MAX_QUEUE_RECORDS" not in bridge
    assert "OTEL_PLUGIN_LOGS_RUNNER_MAX_QUEUE_RECORDS" in rest and "OTEL_SDK_DISABLED" in rest


def test_unknown_option_prints_runs_usage(host_env: Path) -> None:
    """An option `run` does not know is an error with run's usage, exit 2."""
    result = run_cli("--bogus", "-p", "x", "--", "true")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: otel-plugin-logs run ")
    assert "unrecognized arguments: --bogus" in result.stderr


def test_command_that_cannot_be_executed_exits_126(tmp_path: Path, host_env: Path) -> None:
    """A file without the execute bit: exit 126, as a shell gives, with the reason."""
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = run_cli("-p", "x", "--", str(script))
    assert result.returncode == 126
    assert "cannot run" in result.stderr and "Permission denied" in result.stderr


def test_command_not_found_exits_127(tmp_path: Path, host_env: Path) -> None:
    """A command that does not exist: exit 127."""
    result = run_cli("-p", "x", "--", str(tmp_path / "no-such-command"))
    assert result.returncode == 127 and "No such file" in result.stderr


def test_invalid_plugin_name_is_a_usage_error_stating_the_rule(host_env: Path) -> None:
    """A plugin name that breaks the rule: exit 2, run's usage, the rule, no traceback."""
    result = run_cli("-p", "no spaces/here", "--", "true")
    assert result.returncode == 2
    assert "usage: otel-plugin-logs run" in result.stderr
    assert "invalid plugin name" in result.stderr and "letters, digits" in result.stderr
    assert "Traceback" not in result.stderr


def test_everything_after_the_double_dash_is_the_command(host_env: Path) -> None:
    """After --, even a word that looks like an option is the command (here: not found, 127)."""
    result = run_cli("-p", "x", "--", "--no-such-command")
    assert result.returncode == 127 and "cannot run '--no-such-command'" in result.stderr


def test_run_with_the_file_sink_says_how_to_read_it(host_env: Path) -> None:
    """With the embedded file sink, run's first line names the file and the `logs` command."""
    result = run_cli("--plugin", "quiet", "--", PYTHON, "-c", "pass")
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert str(host_env) in first and "otel-plugin-logs logs" in first
