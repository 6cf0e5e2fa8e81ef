"""``HostConfig``: the settings of the host bridge (the OTLP exporter's own OTEL_* are in ``export``)."""

from __future__ import annotations

import logging
import os
from typing import Literal

from otel_plugin_logs.config.fields import (
    DAY_MILLIS,
    MIB,
    MILLIS,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_MILLIS,
    PREFIX,
    Settings,
    float_range,
    int_range,
    parse_bool,
    parse_level,
    parse_path,
    setting,
)
from otel_plugin_logs.config.runner import attribute_length_setting, body_bytes_setting, frame_bytes_setting

ExporterName = Literal["otlp", "file", "otlp_json_file", "console", "none"]


def _parse_exporter(text: str) -> str:
    value = text.strip().lower()
    if value not in ("otlp", "file", "otlp_json_file", "console", "none", ""):
        raise ValueError
    return value


class HostConfig(Settings):
    """Settings of the host bridge (the OTLP exporter's own OTEL_* variables are in ``_export``)."""

    runtime_dir: str = setting(
        "",
        PREFIX + "RUNTIME_DIR",
        parse_path,
        "Private directory (0700) for the socket and the runner registry; empty: a new temporary one. "
        "Set it to a fixed path so a restarted host takes its runners back.",
        "a path",
    )
    exporter: str = setting(
        "",
        ("OTEL_LOGS_EXPORTER",),
        _parse_exporter,
        "otlp, file, otlp_json_file (OTLP/JSON lines on stdout), console or none; empty: otlp when an "
        "OTLP endpoint is set, else file.",
        "otlp, file, otlp_json_file, console or none",
    )
    file_dir: str = setting(
        os.path.join(
            os.path.expanduser(os.environ.get("XDG_STATE_HOME", "~/.local/state")), "otel-plugin-logs"
        ),
        PREFIX + "FILE_DIR",
        parse_path,
        "Directory of the embedded OTLP/JSON file sink.",
        "a path",
    )
    file_max_bytes: int = setting(
        100 * MIB,
        PREFIX + "FILE_MAX_BYTES",
        int_range(4096),
        "The sink file is rotated when it reaches this size.",
        "an integer >= 4096",
    )
    file_backup_count: int = setting(
        5, PREFIX + "FILE_BACKUP_COUNT", NON_NEGATIVE, "Rotated sink files kept.", "an integer >= 0"
    )
    export_max_queue_records: int = setting(
        100_000,
        (PREFIX + "EXPORT_MAX_QUEUE_RECORDS", "OTEL_BLRP_MAX_QUEUE_SIZE"),
        POSITIVE,
        "Records waiting for the exporter, all plugins together; beyond it new records are dropped "
        "and counted.",
        "an integer >= 1",
    )
    export_max_queue_bytes: int = setting(
        128 * MIB,
        PREFIX + "EXPORT_MAX_QUEUE_BYTES",
        int_range(MIB),
        "Bytes waiting for the exporter (the host's memory bound for export).",
        "an integer >= 1048576",
    )
    export_max_batch_records: int = setting(
        1024,
        (PREFIX + "EXPORT_MAX_BATCH_RECORDS", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"),
        POSITIVE,
        "Records per export request.",
        "an integer >= 1",
    )
    export_max_batch_bytes: int = setting(
        3 * MIB,
        PREFIX + "EXPORT_MAX_BATCH_BYTES",
        int_range(64 * 1024),
        "Bytes per export request (collectors refuse gRPC messages above 4 MiB by default).",
        "an integer >= 65536",
    )
    export_schedule_delay_millis: int = setting(
        200,
        (PREFIX + "EXPORT_SCHEDULE_DELAY_MILLIS", "OTEL_BLRP_SCHEDULE_DELAY"),
        POSITIVE_MILLIS,
        "Longest time a record waits before its export request is sent.",
        "an integer from 1 to 86400000 (a day)",
    )
    export_timeout_millis: int = setting(
        10_000,
        (PREFIX + "EXPORT_TIMEOUT_MILLIS", "OTEL_BLRP_EXPORT_TIMEOUT"),
        POSITIVE_MILLIS,
        "Deadline of one export attempt (the SDK exporter retries inside it).",
        "an integer from 1 to 86400000 (a day)",
    )
    export_retry_max_backoff_millis: int = setting(
        5_000,
        PREFIX + "EXPORT_RETRY_MAX_BACKOFF_MILLIS",
        int_range(10, DAY_MILLIS),
        "Longest wait between two attempts at a failed export; records wait in the bounded queue.",
        "an integer from 10 to 86400000 (a day)",
    )
    export_retry_max_elapsed_millis: int = setting(
        0,
        PREFIX + "EXPORT_RETRY_MAX_ELAPSED_MILLIS",
        MILLIS,
        "Give up a request that keeps failing after this long (counted as dropped); 0: keep trying while "
        "the queue has room.",
        "an integer from 0 to 86400000 (a day)",
    )
    shutdown_timeout_millis: int = setting(
        10_000,
        PREFIX + "SHUTDOWN_TIMEOUT_MILLIS",
        MILLIS,
        "One deadline for flushing runners, then the exporter, at shutdown.",
        "an integer from 0 to 86400000 (a day)",
    )
    rate_limit_records_per_second: float = setting(
        20_000.0,
        PREFIX + "RATE_LIMIT_RECORDS_PER_SECOND",
        float_range(0.0),
        "Sustained records/s each plugin may send; beyond it records are suppressed and counted "
        "(0: no limit).",
        "a number >= 0",
    )
    rate_limit_burst_records: int = setting(
        100_000,
        PREFIX + "RATE_LIMIT_BURST_RECORDS",
        POSITIVE,
        "Records a plugin may send at once above the sustained rate.",
        "an integer >= 1",
    )
    report_interval_millis: int = setting(
        10_000,
        PREFIX + "REPORT_INTERVAL_MILLIS",
        int_range(100, DAY_MILLIS),
        "At most one drop or suppression WARNING per plugin per interval.",
        "an integer from 100 to 86400000 (a day)",
    )
    replay: bool = setting(
        True,
        PREFIX + "REPLAY",
        parse_bool,
        "Replay plugin records into the host's stdlib logging.",
        "true or false",
    )
    replay_logger_prefix: str = setting(
        "plugin",
        PREFIX + "REPLAY_LOGGER_PREFIX",
        str,
        "Plugin records are replayed on <prefix>.<plugin>.<original logger>.",
        "a logger name",
    )
    stderr_level: int = setting(
        logging.WARNING,
        PREFIX + "STDERR_LEVEL",
        parse_level,
        "Level of the lines a runner writes to stderr, replayed on <prefix>.<plugin>.stderr.",
        "a level name or number",
    )
    connect_timeout_millis: int = setting(
        10_000,
        PREFIX + "CONNECT_TIMEOUT_MILLIS",
        POSITIVE_MILLIS,
        "Warn when a spawned runner has not connected after this long.",
        "an integer from 1 to 86400000 (a day)",
    )
    stdout_level: int = setting(
        logging.INFO,
        PREFIX + "STDOUT_LEVEL",
        parse_level,
        "Level of the lines a runner writes to stdout when it is captured (run, or "
        "spawn_plugin(capture_stdout=True)), replayed on <prefix>.<plugin>.stdout.",
        "a level name or number",
    )
    kill_timeout_millis: int = setting(
        5_000,
        PREFIX + "KILL_TIMEOUT_MILLIS",
        NON_NEGATIVE,
        "How long a plugin may take to exit after SIGTERM (or a signal run forwards) before it gets SIGKILL.",
        "an integer >= 0",
    )
    max_frame_bytes: int = frame_bytes_setting()
    max_body_bytes: int = body_bytes_setting()
    max_attribute_length: int = attribute_length_setting()
    plugin_log_export: bool = setting(
        False,
        PREFIX + "PLUGIN_LOG_EXPORT",
        parse_bool,
        "Let a spawned plugin's own OpenTelemetry SDK export its logs as well (off: its environment "
        "turns that off, so each record is exported once, by the bridge; its spans are untouched).",
        "true or false",
    )
    # Bounds on what runner connections can make the host hold (see _limits.py).
    max_connections: int = setting(
        512,
        PREFIX + "MAX_CONNECTIONS",
        int_range(1, 1_000_000),
        "Runner connections open at once, all users together (at most half the open-file limit); "
        "beyond it a new connection is closed at once and counted.",
        "an integer from 1 to 1000000",
    )
    max_connections_per_uid: int = setting(
        256,
        PREFIX + "MAX_CONNECTIONS_PER_UID",
        int_range(1, 1_000_000),
        "Runner connections open at once from one user id.",
        "an integer from 1 to 1000000",
    )
    max_pending_connections: int = setting(
        64,
        PREFIX + "MAX_PENDING_CONNECTIONS",
        int_range(1, 1_000_000),
        "Connections that have not completed their handshake; beyond it the oldest is closed.",
        "an integer from 1 to 1000000",
    )
    handshake_timeout_millis: int = setting(
        5_000,
        PREFIX + "HANDSHAKE_TIMEOUT_MILLIS",
        int_range(1, DAY_MILLIS),
        "A connection that has not sent a valid hello after this long is closed.",
        f"an integer from 1 to {DAY_MILLIS}",
    )
    frame_timeout_millis: int = setting(
        10_000,
        PREFIX + "FRAME_TIMEOUT_MILLIS",
        int_range(1, DAY_MILLIS),
        "A frame begun must arrive whole within this long, else its connection is closed (stalled).",
        f"an integer from 1 to {DAY_MILLIS}",
    )
    idle_timeout_millis: int = setting(
        600_000,
        PREFIX + "IDLE_TIMEOUT_MILLIS",
        int_range(1, DAY_MILLIS),
        "A runner connection that sent nothing for this long is closed (a runner reconnects when it "
        "has something to send).",
        f"an integer from 1 to {DAY_MILLIS}",
    )
    ingest_max_buffered_bytes: int = setting(
        64 * MIB,
        PREFIX + "INGEST_MAX_BUFFERED_BYTES",
        int_range(MIB, 2**40),
        "Bytes of partly received frames, all connections together (a quarter for one plugin); a "
        "connection whose frame does not fit is not read until it does.",
        "an integer >= 1048576",
    )
    ingest_shed_after_millis: int = setting(
        10_000,
        PREFIX + "INGEST_SHED_AFTER_MILLIS",
        int_range(1, DAY_MILLIS),
        "A batch that waited this long to be taken in (the host is overloaded) has its records dropped "
        "and counted as host_overload instead of replayed and exported.",
        f"an integer from 1 to {DAY_MILLIS}",
    )
    max_streams_per_runner: int = setting(
        64,
        PREFIX + "MAX_STREAMS_PER_RUNNER",
        int_range(1, 1_000_000),
        "Streams (a process and its forked children) one runner token may open; beyond it the oldest "
        "disconnected stream is retired, or the hello refused.",
        "an integer from 1 to 1000000",
    )
    rate_limit_bytes_per_second: float = setting(
        16.0 * MIB,
        PREFIX + "RATE_LIMIT_BYTES_PER_SECOND",
        float_range(0.0, 2.0**50),
        "Sustained bytes/s (frames as received) each plugin may send; beyond it records are "
        "suppressed and counted as rate_limited (0: no limit).",
        "a number >= 0",
    )
    rate_limit_burst_bytes: int = setting(
        64 * MIB,
        PREFIX + "RATE_LIMIT_BURST_BYTES",
        int_range(MIB, 2**50),
        "Bytes a plugin may send at once above the sustained byte rate.",
        "an integer >= 1048576",
    )
    export_plugin_share_percent: int = setting(
        25,
        PREFIX + "EXPORT_PLUGIN_SHARE_PERCENT",
        int_range(1, 100),
        "Share of the export queue (records and bytes) kept for plugins below their share: a plugin past "
        "it fills the queue only up to one share short of full (100: no reserve).",
        "an integer from 1 to 100",
    )
