"""Configuration, declared once: argument → environment variable → default.

Every setting is a dataclass field whose metadata names its environment variable(s), its
parser and its documentation. ``resolve`` walks the fields, so adding a setting is one line,
and the README table, ``doctor`` and the error messages all read the same declaration.

This module is imported by the runner: it must stay light (stdlib only).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from otel_plugin_logs.wire.framing import DEFAULT_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES

PREFIX: Final = "OTEL_PLUGIN_LOGS_"
# Set by the host in a runner's environment; not user settings.
ENV_SOCKET: Final = PREFIX + "SOCKET"
ENV_TOKEN: Final = PREFIX + "TOKEN"
ENV_PLUGIN_NAME: Final = PREFIX + "PLUGIN_NAME"
ENV_AUTO_INSTALL: Final = PREFIX + "AUTO_INSTALL"
# Under auto-install, whether a plugin's logging.basicConfig() still adds its stderr handler.
ENV_KEEP_CONSOLE: Final = PREFIX + "KEEP_CONSOLE"

Source = Literal["argument", "env", "default"]
T = TypeVar("T")


class ConfigError(ValueError):
    """A setting has an invalid value. The message names the variable and what it accepts."""


@dataclass(frozen=True)
class _Meta:
    envs: tuple[str, ...]
    parse: Callable[[str], Any]
    doc: str
    accepts: str


def _setting(
    default: T, envs: str | tuple[str, ...], parse: Callable[[str], Any], doc: str, accepts: str
) -> T:
    names = (envs,) if isinstance(envs, str) else envs
    return field(default=default, metadata={"setting": _Meta(names, parse, doc, accepts)})


# Parsers. Each raises ValueError with what it accepts; ``resolve`` adds the variable name.


def _int_range(low: int, high: int = 2**40) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.strip().replace("_", ""))
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError


def parse_level(text: str) -> int:
    stripped = text.strip()
    if stripped.lstrip("-").isdigit():
        value = int(stripped)
        if value < 0:
            raise ValueError
        return value
    level = logging.getLevelName(stripped.upper())
    if not isinstance(level, int):
        raise ValueError
    return level


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _parse_path(text: str) -> str:
    if not text.strip():
        raise ValueError
    return os.path.expanduser(text.strip())


def _parse_float_range(low: float, high: float = 2.0**63) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:  # also rejects NaN and infinity
            raise ValueError
        return value

    return parse


_MIB = 1024 * 1024
# Upper bounds keep a typo (or 1e20) from overflowing a deadline later: a day, and 1 TiB.
_DAY_MILLIS: Final = 86_400_000
_POSITIVE = _int_range(1, 2**40)
_NON_NEGATIVE = _int_range(0, 2**40)
_MILLIS = _int_range(0, _DAY_MILLIS)
_POSITIVE_MILLIS = _int_range(1, _DAY_MILLIS)


# Settings both sides read, declared once.


def _frame_bytes_setting() -> int:
    return _setting(
        DEFAULT_MAX_FRAME_BYTES,
        PREFIX + "MAX_FRAME_BYTES",
        _int_range(MIN_MAX_FRAME_BYTES),
        "Largest frame on the socket, both ways.",
        f"an integer >= {MIN_MAX_FRAME_BYTES}",
    )


def _body_bytes_setting() -> int:
    return _setting(
        64 * 1024,
        PREFIX + "MAX_BODY_BYTES",
        _int_range(256),
        "A longer message is truncated with a marker and its original size.",
        "an integer >= 256",
    )


def _attribute_length_setting() -> int:
    return _setting(
        4096,
        PREFIX + "MAX_ATTRIBUTE_LENGTH",
        _int_range(16),
        "Longest string/bytes attribute value (characters); longer ones are cut.",
        "an integer >= 16",
    )


@dataclass(frozen=True)
class RunnerConfig:
    """Settings of the handler inside a plugin process."""

    socket_path: str = _setting(
        "", ENV_SOCKET, _parse_path, "Unix socket of the host bridge (set by the host).", "a path"
    )
    token: str = _setting("", ENV_TOKEN, str, "Session token of this runner (set by the host).", "a string")
    level: int = _setting(
        logging.NOTSET,
        PREFIX + "LEVEL",
        parse_level,
        "Lowest level forwarded to the host. When set, the root logger is lowered to it on auto-install.",
        "a level name or number",
    )
    include_loggers: tuple[str, ...] = _setting(
        (),
        PREFIX + "INCLUDE_LOGGERS",
        _parse_list,
        "Only forward loggers with these name prefixes (comma separated; empty: all).",
        "a comma-separated list",
    )
    exclude_loggers: tuple[str, ...] = _setting(
        (),
        PREFIX + "EXCLUDE_LOGGERS",
        _parse_list,
        "Never forward loggers with these name prefixes (the bridge's own are always excluded).",
        "a comma-separated list",
    )
    max_queue_records: int = _setting(
        100_000,
        PREFIX + "RUNNER_MAX_QUEUE_RECORDS",
        _POSITIVE,
        "Records a runner holds that are not sent yet; beyond it the lowest-severity oldest are dropped.",
        "an integer >= 1",
    )
    max_queue_bytes: int = _setting(
        64 * _MIB,
        PREFIX + "RUNNER_MAX_QUEUE_BYTES",
        _int_range(64 * 1024),
        "Bytes a runner holds: records not sent plus batches sent but not acknowledged.",
        "an integer >= 65536",
    )
    max_batch_records: int = _setting(
        512,
        PREFIX + "RUNNER_MAX_BATCH_RECORDS",
        _POSITIVE,
        "Records per batch sent to the host.",
        "an integer >= 1",
    )
    schedule_delay_millis: int = _setting(
        200,
        PREFIX + "RUNNER_SCHEDULE_DELAY_MILLIS",
        _POSITIVE_MILLIS,
        "Longest time a record waits in the runner before its batch is sent.",
        "an integer from 1 to 86400000 (a day)",
    )
    shutdown_timeout_millis: int = _setting(
        5_000,
        PREFIX + "RUNNER_SHUTDOWN_TIMEOUT_MILLIS",
        _MILLIS,
        "Deadline for sending and getting acknowledged what is left when the runner exits.",
        "an integer from 0 to 86400000 (a day)",
    )
    exit_flush_timeout_millis: int = _setting(
        2_000,
        PREFIX + "RUNNER_EXIT_FLUSH_TIMEOUT_MILLIS",
        _MILLIS,
        "Deadline for sending what is left before `os._exit` or a fatal signal (SIGTERM, SIGHUP) ends "
        "the runner; what is not sent by then is counted by the host.",
        "an integer from 0 to 86400000 (a day)",
    )
    max_body_bytes: int = _body_bytes_setting()
    max_attribute_length: int = _attribute_length_setting()
    max_attributes: int = _setting(
        64, PREFIX + "MAX_ATTRIBUTES", _POSITIVE, "Most extra attributes kept per record.", "an integer >= 1"
    )
    max_stacktrace_bytes: int = _setting(
        32 * 1024,
        PREFIX + "MAX_STACKTRACE_BYTES",
        _int_range(256),
        "Longest exception stack trace, in bytes (the innermost frames are kept).",
        "an integer >= 256",
    )
    reconnect_max_backoff_millis: int = _setting(
        5_000,
        PREFIX + "RECONNECT_MAX_BACKOFF_MILLIS",
        _int_range(10, _DAY_MILLIS),
        "Longest wait between two attempts to reach the host.",
        "an integer from 10 to 86400000 (a day)",
    )
    max_frame_bytes: int = _frame_bytes_setting()
    keep_console: bool = _setting(
        False,
        ENV_KEEP_CONSOLE,
        parse_bool,
        "Under auto-install, let the plugin's own console output of the records the bridge carries "
        "reach the host's stderr capture too (off: the host shows each record once).",
        "true or false",
    )


ExporterName = Literal["otlp", "file", "otlp_json_file", "console", "none"]


def _parse_exporter(text: str) -> str:
    value = text.strip().lower()
    if value not in ("otlp", "file", "otlp_json_file", "console", "none", ""):
        raise ValueError
    return value


@dataclass(frozen=True)
class HostConfig:
    """Settings of the host bridge (the OTLP exporter's own OTEL_* variables are in ``_export``)."""

    runtime_dir: str = _setting(
        "",
        PREFIX + "RUNTIME_DIR",
        _parse_path,
        "Private directory (0700) for the socket and the runner registry; empty: a new temporary one. "
        "Set it to a fixed path so a restarted host takes its runners back.",
        "a path",
    )
    exporter: str = _setting(
        "",
        ("OTEL_LOGS_EXPORTER",),
        _parse_exporter,
        "otlp, file, otlp_json_file (OTLP/JSON lines on stdout), console or none; empty: otlp when an "
        "OTLP endpoint is set, else file.",
        "otlp, file, otlp_json_file, console or none",
    )
    file_dir: str = _setting(
        os.path.join(
            os.path.expanduser(os.environ.get("XDG_STATE_HOME", "~/.local/state")), "otel-plugin-logs"
        ),
        PREFIX + "FILE_DIR",
        _parse_path,
        "Directory of the embedded OTLP/JSON file sink.",
        "a path",
    )
    file_max_bytes: int = _setting(
        100 * _MIB,
        PREFIX + "FILE_MAX_BYTES",
        _int_range(4096),
        "The sink file is rotated when it reaches this size.",
        "an integer >= 4096",
    )
    file_backup_count: int = _setting(
        5, PREFIX + "FILE_BACKUP_COUNT", _NON_NEGATIVE, "Rotated sink files kept.", "an integer >= 0"
    )
    export_max_queue_records: int = _setting(
        100_000,
        (PREFIX + "EXPORT_MAX_QUEUE_RECORDS", "OTEL_BLRP_MAX_QUEUE_SIZE"),
        _POSITIVE,
        "Records waiting for the exporter, all plugins together; beyond it new records are dropped "
        "and counted.",
        "an integer >= 1",
    )
    export_max_queue_bytes: int = _setting(
        128 * _MIB,
        PREFIX + "EXPORT_MAX_QUEUE_BYTES",
        _int_range(_MIB),
        "Bytes waiting for the exporter (the host's memory bound for export).",
        "an integer >= 1048576",
    )
    export_max_batch_records: int = _setting(
        1024,
        (PREFIX + "EXPORT_MAX_BATCH_RECORDS", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"),
        _POSITIVE,
        "Records per export request.",
        "an integer >= 1",
    )
    export_max_batch_bytes: int = _setting(
        3 * _MIB,
        PREFIX + "EXPORT_MAX_BATCH_BYTES",
        _int_range(64 * 1024),
        "Bytes per export request (collectors refuse gRPC messages above 4 MiB by default).",
        "an integer >= 65536",
    )
    export_schedule_delay_millis: int = _setting(
        200,
        (PREFIX + "EXPORT_SCHEDULE_DELAY_MILLIS", "OTEL_BLRP_SCHEDULE_DELAY"),
        _POSITIVE_MILLIS,
        "Longest time a record waits before its export request is sent.",
        "an integer from 1 to 86400000 (a day)",
    )
    export_timeout_millis: int = _setting(
        10_000,
        (PREFIX + "EXPORT_TIMEOUT_MILLIS", "OTEL_BLRP_EXPORT_TIMEOUT"),
        _POSITIVE_MILLIS,
        "Deadline of one export attempt (the SDK exporter retries inside it).",
        "an integer from 1 to 86400000 (a day)",
    )
    export_retry_max_backoff_millis: int = _setting(
        5_000,
        PREFIX + "EXPORT_RETRY_MAX_BACKOFF_MILLIS",
        _int_range(10, _DAY_MILLIS),
        "Longest wait between two attempts at a failed export; records wait in the bounded queue.",
        "an integer from 10 to 86400000 (a day)",
    )
    export_retry_max_elapsed_millis: int = _setting(
        0,
        PREFIX + "EXPORT_RETRY_MAX_ELAPSED_MILLIS",
        _MILLIS,
        "Give up a request that keeps failing after this long (counted as dropped); 0: keep trying while "
        "the queue has room.",
        "an integer from 0 to 86400000 (a day)",
    )
    shutdown_timeout_millis: int = _setting(
        10_000,
        PREFIX + "SHUTDOWN_TIMEOUT_MILLIS",
        _MILLIS,
        "One deadline for flushing runners, then the exporter, at shutdown.",
        "an integer from 0 to 86400000 (a day)",
    )
    rate_limit_records_per_second: float = _setting(
        20_000.0,
        PREFIX + "RATE_LIMIT_RECORDS_PER_SECOND",
        _parse_float_range(0.0),
        "Sustained records/s each plugin may send; beyond it records are suppressed and counted "
        "(0: no limit).",
        "a number >= 0",
    )
    rate_limit_burst_records: int = _setting(
        100_000,
        PREFIX + "RATE_LIMIT_BURST_RECORDS",
        _POSITIVE,
        "Records a plugin may send at once above the sustained rate.",
        "an integer >= 1",
    )
    report_interval_millis: int = _setting(
        10_000,
        PREFIX + "REPORT_INTERVAL_MILLIS",
        _int_range(100, _DAY_MILLIS),
        "At most one drop or suppression WARNING per plugin per interval.",
        "an integer from 100 to 86400000 (a day)",
    )
    replay: bool = _setting(
        True,
        PREFIX + "REPLAY",
        parse_bool,
        "Replay plugin records into the host's stdlib logging.",
        "true or false",
    )
    replay_logger_prefix: str = _setting(
        "plugin",
        PREFIX + "REPLAY_LOGGER_PREFIX",
        str,
        "Plugin records are replayed on <prefix>.<plugin>.<original logger>.",
        "a logger name",
    )
    stderr_level: int = _setting(
        logging.WARNING,
        PREFIX + "STDERR_LEVEL",
        parse_level,
        "Level of the lines a runner writes to stderr, replayed on <prefix>.<plugin>.stderr.",
        "a level name or number",
    )
    connect_timeout_millis: int = _setting(
        10_000,
        PREFIX + "CONNECT_TIMEOUT_MILLIS",
        _POSITIVE_MILLIS,
        "Warn when a spawned runner has not connected after this long.",
        "an integer from 1 to 86400000 (a day)",
    )
    stdout_level: int = _setting(
        logging.INFO,
        PREFIX + "STDOUT_LEVEL",
        parse_level,
        "Level of the lines a runner writes to stdout when it is captured (run, or "
        "spawn_plugin(capture_stdout=True)), replayed on <prefix>.<plugin>.stdout.",
        "a level name or number",
    )
    kill_timeout_millis: int = _setting(
        5_000,
        PREFIX + "KILL_TIMEOUT_MILLIS",
        _NON_NEGATIVE,
        "How long a plugin may take to exit after SIGTERM (or a signal run forwards) before it gets SIGKILL.",
        "an integer >= 0",
    )
    max_frame_bytes: int = _frame_bytes_setting()
    max_body_bytes: int = _body_bytes_setting()
    max_attribute_length: int = _attribute_length_setting()
    plugin_log_export: bool = _setting(
        False,
        PREFIX + "PLUGIN_LOG_EXPORT",
        parse_bool,
        "Let a spawned plugin's own OpenTelemetry SDK export its logs as well (off: its environment "
        "turns that off, so each record is exported once, by the bridge; its spans are untouched).",
        "true or false",
    )
    # Bounds on what runner connections can make the host hold (see _limits.py).
    max_connections: int = _setting(
        512,
        PREFIX + "MAX_CONNECTIONS",
        _int_range(1, 1_000_000),
        "Runner connections open at once, all users together (at most half the open-file limit); "
        "beyond it a new connection is closed at once and counted.",
        "an integer from 1 to 1000000",
    )
    max_connections_per_uid: int = _setting(
        256,
        PREFIX + "MAX_CONNECTIONS_PER_UID",
        _int_range(1, 1_000_000),
        "Runner connections open at once from one user id.",
        "an integer from 1 to 1000000",
    )
    max_pending_connections: int = _setting(
        64,
        PREFIX + "MAX_PENDING_CONNECTIONS",
        _int_range(1, 1_000_000),
        "Connections that have not completed their handshake; beyond it the oldest is closed.",
        "an integer from 1 to 1000000",
    )
    handshake_timeout_millis: int = _setting(
        5_000,
        PREFIX + "HANDSHAKE_TIMEOUT_MILLIS",
        _int_range(1, _DAY_MILLIS),
        "A connection that has not sent a valid hello after this long is closed.",
        f"an integer from 1 to {_DAY_MILLIS}",
    )
    frame_timeout_millis: int = _setting(
        10_000,
        PREFIX + "FRAME_TIMEOUT_MILLIS",
        _int_range(1, _DAY_MILLIS),
        "A frame begun must arrive whole within this long, else its connection is closed (stalled).",
        f"an integer from 1 to {_DAY_MILLIS}",
    )
    idle_timeout_millis: int = _setting(
        600_000,
        PREFIX + "IDLE_TIMEOUT_MILLIS",
        _int_range(1, _DAY_MILLIS),
        "A runner connection that sent nothing for this long is closed (a runner reconnects when it "
        "has something to send).",
        f"an integer from 1 to {_DAY_MILLIS}",
    )
    ingest_max_buffered_bytes: int = _setting(
        64 * _MIB,
        PREFIX + "INGEST_MAX_BUFFERED_BYTES",
        _int_range(_MIB, 2**40),
        "Bytes of partly received frames, all connections together (a quarter for one plugin); a "
        "connection whose frame does not fit is not read until it does.",
        "an integer >= 1048576",
    )
    ingest_shed_after_millis: int = _setting(
        10_000,
        PREFIX + "INGEST_SHED_AFTER_MILLIS",
        _int_range(1, _DAY_MILLIS),
        "A batch that waited this long to be taken in (the host is overloaded) has its records dropped "
        "and counted as host_overload instead of replayed and exported.",
        f"an integer from 1 to {_DAY_MILLIS}",
    )
    max_streams_per_runner: int = _setting(
        64,
        PREFIX + "MAX_STREAMS_PER_RUNNER",
        _int_range(1, 1_000_000),
        "Streams (a process and its forked children) one runner token may open; beyond it the oldest "
        "disconnected stream is retired, or the hello refused.",
        "an integer from 1 to 1000000",
    )
    rate_limit_bytes_per_second: float = _setting(
        16.0 * _MIB,
        PREFIX + "RATE_LIMIT_BYTES_PER_SECOND",
        _parse_float_range(0.0, 2.0**50),
        "Sustained bytes/s (frames as received) each plugin may send; beyond it records are "
        "suppressed and counted as rate_limited (0: no limit).",
        "a number >= 0",
    )
    rate_limit_burst_bytes: int = _setting(
        64 * _MIB,
        PREFIX + "RATE_LIMIT_BURST_BYTES",
        _int_range(_MIB, 2**50),
        "Bytes a plugin may send at once above the sustained byte rate.",
        "an integer >= 1048576",
    )
    export_plugin_share_percent: int = _setting(
        25,
        PREFIX + "EXPORT_PLUGIN_SHARE_PERCENT",
        _int_range(1, 100),
        "Share of the export queue (records and bytes) kept for plugins below their share: a plugin past "
        "it fills the queue only up to one share short of full (100: no reserve).",
        "an integer from 1 to 100",
    )


ConfigT = TypeVar("ConfigT", RunnerConfig, HostConfig)


@dataclass(frozen=True)
class Resolved:
    """Where each setting's value came from, for ``doctor`` and error messages."""

    sources: Mapping[str, tuple[Source, str]]  # field -> (source, env var or "")


def resolve(
    cls: type[ConfigT], overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[ConfigT, Resolved]:
    """Build a config: an explicit argument wins, then the first set env var, then the default.

    An invalid environment value raises ``ConfigError`` naming the variable, so a typo fails
    at start-up instead of silently falling back.
    """
    env = os.environ if environ is None else environ
    given = dict(overrides or {})
    unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"unknown setting(s) for {cls.__name__}: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    sources: dict[str, tuple[Source, str]] = {}
    for spec in dataclasses.fields(cls):
        meta: _Meta = spec.metadata["setting"]
        if given.get(spec.name) is not None:
            values[spec.name] = given[spec.name]
            sources[spec.name] = ("argument", "")
            continue
        for name in meta.envs:
            raw = env.get(name)
            if raw is None or not raw.strip():  # the OTel spec reads an empty variable as unset
                continue
            try:
                values[spec.name] = meta.parse(raw)
            except (ValueError, TypeError):
                raise ConfigError(f"{name}={raw!r} is invalid: expected {meta.accepts}") from None
            sources[spec.name] = ("env", name)
            break
        else:
            sources[spec.name] = ("default", "")
    return cls(**values), Resolved(sources)


# Checks of values that parse but cannot work, run before anything starts.

# sockaddr_un holds 108 bytes; a little room is kept for the file name and the terminator.
MAX_SOCKET_PATH_BYTES: Final = 100
SOCKET_NAME: Final = "bridge.sock"


def check_endpoint(name: str, url: str) -> None:
    """An OTLP endpoint must be an http(s) URL with a host and, if given, a port from 1 to 65535."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ConfigError(f"{name}={url!r} is invalid: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{name}={url!r} is invalid: expected an http:// or https:// URL")
    if not parts.hostname:
        raise ConfigError(f"{name}={url!r} is invalid: the URL has no host")
    if port == 0:
        raise ConfigError(f"{name}={url!r} is invalid: port 0")


def check_runtime_dir(path: str, name: str = PREFIX + "RUNTIME_DIR") -> None:
    """The runtime dir must hold a Unix socket path and be a directory this user can create files in."""
    absolute = os.path.abspath(path)
    socket_path = os.path.join(absolute, SOCKET_NAME)
    if len(socket_path.encode()) > MAX_SOCKET_PATH_BYTES:
        raise ConfigError(
            f"{name}={path!r} is unusable: the socket path would be {len(socket_path.encode())} bytes, "
            f"more than a Unix socket takes ({MAX_SOCKET_PATH_BYTES}); choose a shorter directory"
        )
    probe = absolute
    while not os.path.lexists(probe):  # the nearest existing ancestor is where it would be created
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ConfigError(f"{name}={path!r} is unusable: {probe} is not a directory")
    try:
        # A real file, not os.access: root passes access() where procfs or a read-only mount refuse.
        handle, probe_file = tempfile.mkstemp(prefix=".otel-plugin-logs-probe-", dir=probe)
    except OSError as error:
        raise ConfigError(f"{name}={path!r} is unusable: cannot create files in {probe}: {error}") from None
    os.close(handle)
    os.unlink(probe_file)


def describe(cls: type[RunnerConfig | HostConfig]) -> list[tuple[str, str, str, str]]:
    """(field, environment variables, default, doc) for each setting, in declaration order."""
    rows = []
    for spec in dataclasses.fields(cls):
        meta: _Meta = spec.metadata["setting"]
        rows.append((spec.name, " / ".join(meta.envs), _show_default(spec.name, spec.default), meta.doc))
    return rows


def _show_default(name: str, default: object) -> str:
    if name in ("level", "stderr_level", "stdout_level") and isinstance(default, int):
        return logging.getLevelName(default)
    if name == "file_dir":
        return "$XDG_STATE_HOME/otel-plugin-logs (~/.local/state/otel-plugin-logs)"
    if default in ("", ()):
        return "(empty)"
    return str(default)
