"""The setting machinery: where a value comes from, what an invalid one says, what a config allows."""

from __future__ import annotations

import subprocess

import pytest
from helpers import PYTHON

from otel_plugin_logs.config.describe import describe
from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.fields import resolve
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.config.runner import RunnerConfig


def test_an_argument_wins_over_the_environment_which_wins_over_the_default() -> None:
    """Each setting's source is recorded with the variable it was read from."""
    env = {"OTEL_PLUGIN_LOGS_RUNNER_MAX_BATCH_RECORDS": "7", "OTEL_PLUGIN_LOGS_LEVEL": "info"}
    config, resolved = resolve(RunnerConfig, {"level": 40}, env)
    assert (config.level, config.max_batch_records, config.max_queue_records) == (40, 7, 400_000)
    assert resolved.sources["level"] == ("argument", "")
    assert resolved.sources["max_batch_records"] == ("env", "OTEL_PLUGIN_LOGS_RUNNER_MAX_BATCH_RECORDS")
    assert resolved.sources["max_queue_records"] == ("default", "")


def test_the_first_set_variable_of_a_setting_is_read() -> None:
    """A setting with an OTel alias reads ours first, the alias when ours is unset or empty."""
    env = {"OTEL_PLUGIN_LOGS_EXPORT_MAX_BATCH_RECORDS": " ", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "9"}
    config, resolved = resolve(HostConfig, {}, env)
    assert config.export_max_batch_records == 9
    assert resolved.sources["export_max_batch_records"] == ("env", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE")


def test_an_invalid_value_names_the_variable_and_what_it_accepts() -> None:
    """The error text is the one the README and the bad-settings tests document."""
    with pytest.raises(ConfigError) as raised:
        resolve(RunnerConfig, {}, {"OTEL_PLUGIN_LOGS_RUNNER_SCHEDULE_DELAY_MILLIS": "0"})
    assert str(raised.value) == (
        "OTEL_PLUGIN_LOGS_RUNNER_SCHEDULE_DELAY_MILLIS='0' is invalid: expected an integer from 1 to "
        "86400000 (a day)"
    )


def test_an_unknown_argument_is_refused() -> None:
    """A misspelt keyword argument is an error, not ignored."""
    with pytest.raises(ConfigError, match=r"^unknown setting\(s\) for HostConfig: nope$"):
        resolve(HostConfig, {"nope": 1}, {})


def test_a_config_is_frozen_and_compares_by_value() -> None:
    """Two configs of the same values are equal and hash alike; neither can be changed."""
    first, _ = resolve(RunnerConfig, {}, {})
    second, _ = resolve(RunnerConfig, {}, {})
    assert first == second and hash(first) == hash(second)
    assert first != resolve(RunnerConfig, {"max_batch_records": 3}, {})[0]
    with pytest.raises(AttributeError):
        first.level = 10  # type: ignore[misc]


def test_describe_gives_one_row_per_setting_in_declaration_order() -> None:
    """Rows unpack as (field, variables, default, doc); a level default is shown by its name."""
    rows = describe(HostConfig)
    name, envs, default, doc = rows[0]
    assert (name, envs, default) == ("runtime_dir", "OTEL_PLUGIN_LOGS_RUNTIME_DIR", "(empty)")
    assert doc.startswith("Private directory (0700)")
    stderr_level = next(row for row in rows if row.name == "stderr_level")
    assert stderr_level.default == "WARNING"
    assert [row.name for row in describe(RunnerConfig)][:3] == ["socket_path", "token", "level"]


def test_both_sides_read_the_shared_settings_from_the_same_variables() -> None:
    """The frame, body and attribute bounds are declared once for the runner and the host."""
    runner = {row.name: row for row in describe(RunnerConfig)}
    host = {row.name: row for row in describe(HostConfig)}
    for name in ("max_frame_bytes", "max_body_bytes", "max_attribute_length"):
        assert runner[name] == host[name]


def test_the_runner_settings_load_neither_typing_nor_dataclasses() -> None:
    """What every plugin start imports stays light: the runner settings pull in no costly module."""
    code = (
        "import sys; import otel_plugin_logs.config.runner; "
        "print(sorted({'typing', 'dataclasses', 'inspect', 'msgpack', 'tempfile', 'urllib.parse'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [PYTHON, "-I", "-B", "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
