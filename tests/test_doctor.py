"""`otel-plugin-logs doctor`: the resolved configuration with its origins, and a live endpoint check."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Collector, parse_rotel_logs, wait_until

from benchmarks._common import free_port
from otel_plugin_logs.cli.main import main
from otel_plugin_logs.config.describe import describe
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.config.runner import RunnerConfig


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["doctor", *argv])
    return code, capsys.readouterr().out


@pytest.mark.usefixtures("host_env")
def test_unreachable_endpoint_fails_with_a_fix(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening at the endpoint: a clear failure naming it, what to do, and exit status 1."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    code, out = doctor(capsys, "--endpoint", endpoint, "--timeout", "2")
    assert code == 1
    assert f"✗ OTLP/gRPC {endpoint} is unreachable" in out
    assert "start a collector" in out and "docker compose up -d otel-collector" in out
    assert out.rstrip().endswith("✗ some checks failed")


@pytest.mark.collector
def test_reachable_grpc_collector_is_fine(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real collector (rotel) over gRPC accepts the test record: exit status 0 and the record arrives."""
    with Collector(tmp_path / "rotel") as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc_endpoint)
        code, out = doctor(capsys)
        assert code == 0, out
        assert f"✓ OTLP/gRPC {collector.grpc_endpoint} accepted a test record" in out
        assert "endpoint   " + collector.grpc_endpoint in out and "env OTEL_EXPORTER_OTLP_ENDPOINT" in out
        assert wait_until(
            lambda: any(
                r.get("body") == "otel-plugin-logs doctor: test record"
                for r in parse_rotel_logs(collector.output())
            ),
            10,
        )


@pytest.mark.collector
def test_reachable_http_collector_is_fine(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OTLP/HTTP (http/protobuf) to a real collector passes too, with the /v1/logs path derived."""
    with Collector(tmp_path / "rotel") as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.http_port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        code, out = doctor(capsys)
        assert code == 0, out
        assert f"✓ OTLP/HTTP {collector.http_endpoint} accepted a test record" in out


def test_invalid_configuration_names_the_variable(
    host_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid value is reported with its variable and what it accepts; exit status 2."""
    monkeypatch.setenv("OTEL_PLUGIN_LOGS_EXPORT_MAX_BATCH_RECORDS", "lots")
    code, out = doctor(capsys)
    assert code == 2
    assert "OTEL_PLUGIN_LOGS_EXPORT_MAX_BATCH_RECORDS='lots' is invalid: expected an integer >= 1" in out


def test_each_setting_shows_where_its_value_came_from(
    host_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Settings from variables name the variable (standard twins too); the others say default."""
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "5000")
    monkeypatch.setenv("OTEL_PLUGIN_LOGS_LEVEL", "debug")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer secret-token")
    code, out = doctor(capsys, "--no-send")
    assert code == 0
    lines = out.splitlines()

    def row(name: str) -> str:
        return next(line for line in lines if line.split()[:1] == [name])

    assert row("export_max_queue_records").split()[1:] == ["5000", "env", "OTEL_BLRP_MAX_QUEUE_SIZE"]
    assert row("level").split()[1:] == ["DEBUG", "env", "OTEL_PLUGIN_LOGS_LEVEL"]
    assert "default" in row("export_max_batch_records") and "OTEL_PLUGIN_LOGS_EXPORT_MAX_BATCH_RECORDS" in out
    assert "file       " + str(host_env / "plugin-logs.otlp.jsonl") in out
    assert "authorization=<hidden>" in out and "secret-token" not in out


def test_file_exporter_checks_the_directory_without_sending(
    host_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no endpoint the file sink is checked (writable) and no network probe is made."""
    code, out = doctor(capsys)
    assert code == 0
    assert f"✓ the file sink {host_env / 'plugin-logs.otlp.jsonl'} is writable" in out
    assert "OTLP/gRPC" not in out


def test_unwritable_file_sink_directory_fails(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file sink directory that cannot be written is a failed check with the variable to change."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setenv("OTEL_PLUGIN_LOGS_FILE_DIR", str(locked / "sink"))
    try:
        code, out = doctor(capsys)
    finally:
        locked.chmod(0o700)
    if code == 0:
        pytest.skip("running as a user who can write anywhere (root)")
    assert code == 1 and "set OTEL_PLUGIN_LOGS_FILE_DIR to a writable directory" in out


@pytest.mark.parametrize("command", ["run", "demo", "doctor"])
def test_help_lists_the_options_and_environment_variables(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help of each command documents its options and the variables that configure it."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    if command == "run":  # run --help is short: the variables are behind --help-variables
        with pytest.raises(SystemExit):
            main([command, "--help-variables"])
        out += capsys.readouterr().out
    for variable in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_PLUGIN_LOGS_EXPORT_MAX_QUEUE_RECORDS",
        "OTEL_PLUGIN_LOGS_RUNNER_MAX_QUEUE_RECORDS",
        "OTEL_PLUGIN_LOGS_KEEP_CONSOLE",
        "OTEL_SDK_DISABLED",
    ):
        assert variable in out
    expected = {
        "run": ["--plugin", "--endpoint"],
        "demo": ["--plugins", "--duration", "--rate", "--seed", "--endpoint", "exit status", "crawler"],
        "doctor": ["--endpoint", "--timeout", "--no-send", "exit status"],
    }[command]
    for text in expected:
        assert text in out


def test_readme_tables_state_every_setting_with_its_declared_default_and_meaning() -> None:
    """Each OTEL_PLUGIN_LOGS_* setting has a README row with the default and the words of its declaration."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    rows: dict[str, list[tuple[str, str]]] = {}
    for line in readme.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if line.startswith("| `OTEL_PLUGIN_LOGS_") and len(cells) == 3:
            first = cells[0].split("`")[1]
            rows.setdefault(first, []).append((cells[1].strip("`"), cells[2]))
    for cls in (HostConfig, RunnerConfig):
        for name, envs, default, doc in describe(cls):
            variable = envs.split(" / ")[0]
            if not variable.startswith("OTEL_PLUGIN_LOGS_"):
                continue  # a standard variable: in the README's table of those
            assert variable in rows, f"{variable} ({cls.__name__}.{name}) is not in the README"
            assert (default, doc) in rows[variable], f"README row of {variable} differs: {rows[variable]}"
