"""``RunnerConfig``: what a plugin process needs, and the variables the host sets for it.

Imported at every plugin start (auto-install): the setting machinery and the wire's frame
bounds, nothing else.
"""

from __future__ import annotations

import logging

from otel_plugin_logs.config.fields import (
    DAY_MILLIS,
    MIB,
    MILLIS,
    POSITIVE,
    POSITIVE_MILLIS,
    PREFIX,
    Settings,
    int_range,
    parse_bool,
    parse_level,
    parse_list,
    parse_path,
    setting,
)
from otel_plugin_logs.wire.limits import DEFAULT_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# Set by the host in a runner's environment; not user settings.
ENV_SOCKET: Final = PREFIX + "SOCKET"
ENV_TOKEN: Final = PREFIX + "TOKEN"
ENV_PLUGIN_NAME: Final = PREFIX + "PLUGIN_NAME"
ENV_AUTO_INSTALL: Final = PREFIX + "AUTO_INSTALL"
# Under auto-install, whether a plugin's logging.basicConfig() still adds its stderr handler.
ENV_KEEP_CONSOLE: Final = PREFIX + "KEEP_CONSOLE"
# Under auto-install, whether the bootstrap freezes the interpreter's start-up objects (read by
# the bootstrap itself, before any plugin code runs; declared here so it is listed and checked).
ENV_FREEZE_STARTUP_OBJECTS: Final = PREFIX + "FREEZE_STARTUP_OBJECTS"


# Settings both sides read, declared once (each class gets its own declaration object).


def frame_bytes_setting() -> int:
    return setting(
        DEFAULT_MAX_FRAME_BYTES,
        PREFIX + "MAX_FRAME_BYTES",
        int_range(MIN_MAX_FRAME_BYTES),
        "Largest frame on the socket, both ways.",
        f"an integer >= {MIN_MAX_FRAME_BYTES}",
    )


def body_bytes_setting() -> int:
    return setting(
        64 * 1024,
        PREFIX + "MAX_BODY_BYTES",
        int_range(256),
        "A longer message is truncated with a marker and its original size.",
        "an integer >= 256",
    )


def attribute_length_setting() -> int:
    return setting(
        4096,
        PREFIX + "MAX_ATTRIBUTE_LENGTH",
        int_range(16),
        "Longest string/bytes attribute value (characters); longer ones are cut.",
        "an integer >= 16",
    )


class RunnerConfig(Settings):
    """Settings of the handler inside a plugin process."""

    socket_path: str = setting(
        "", ENV_SOCKET, parse_path, "Unix socket of the host bridge (set by the host).", "a path"
    )
    token: str = setting("", ENV_TOKEN, str, "Session token of this runner (set by the host).", "a string")
    level: int = setting(
        logging.NOTSET,
        PREFIX + "LEVEL",
        parse_level,
        "Lowest level forwarded to the host. When set, the root logger is lowered to it on auto-install.",
        "a level name or number",
    )
    include_loggers: tuple[str, ...] = setting(
        (),
        PREFIX + "INCLUDE_LOGGERS",
        parse_list,
        "Only forward loggers with these name prefixes (comma separated; empty: all).",
        "a comma-separated list",
    )
    exclude_loggers: tuple[str, ...] = setting(
        (),
        PREFIX + "EXCLUDE_LOGGERS",
        parse_list,
        "Never forward loggers with these name prefixes (the bridge's own are always excluded).",
        "a comma-separated list",
    )
    max_queue_records: int = setting(
        400_000,
        PREFIX + "RUNNER_MAX_QUEUE_RECORDS",
        POSITIVE,
        "Records a runner holds that are not sent yet; beyond it the lowest-severity oldest are dropped.",
        "an integer >= 1",
    )
    max_queue_bytes: int = setting(
        128 * MIB,
        PREFIX + "RUNNER_MAX_QUEUE_BYTES",
        int_range(64 * 1024),
        "Bytes a runner holds: the memory of the records not sent plus the batches sent but not "
        "acknowledged.",
        "an integer >= 65536",
    )
    max_batch_records: int = setting(
        512,
        PREFIX + "RUNNER_MAX_BATCH_RECORDS",
        POSITIVE,
        "Records per batch sent to the host.",
        "an integer >= 1",
    )
    schedule_delay_millis: int = setting(
        200,
        PREFIX + "RUNNER_SCHEDULE_DELAY_MILLIS",
        POSITIVE_MILLIS,
        "Longest time a record waits in the runner before its batch is sent.",
        "an integer from 1 to 86400000 (a day)",
    )
    shutdown_timeout_millis: int = setting(
        5_000,
        PREFIX + "RUNNER_SHUTDOWN_TIMEOUT_MILLIS",
        MILLIS,
        "Deadline for sending and getting acknowledged what is left when the runner exits.",
        "an integer from 0 to 86400000 (a day)",
    )
    exit_flush_timeout_millis: int = setting(
        2_000,
        PREFIX + "RUNNER_EXIT_FLUSH_TIMEOUT_MILLIS",
        MILLIS,
        "Deadline for sending what is left before `os._exit` or a fatal signal (SIGTERM, SIGHUP) ends "
        "the runner; what is not sent by then is counted by the host.",
        "an integer from 0 to 86400000 (a day)",
    )
    max_body_bytes: int = body_bytes_setting()
    max_attribute_length: int = attribute_length_setting()
    max_attributes: int = setting(
        64, PREFIX + "MAX_ATTRIBUTES", POSITIVE, "Most extra attributes kept per record.", "an integer >= 1"
    )
    max_stacktrace_bytes: int = setting(
        32 * 1024,
        PREFIX + "MAX_STACKTRACE_BYTES",
        int_range(256),
        "Longest exception stack trace, in bytes (the innermost frames are kept).",
        "an integer >= 256",
    )
    reconnect_max_backoff_millis: int = setting(
        5_000,
        PREFIX + "RECONNECT_MAX_BACKOFF_MILLIS",
        int_range(10, DAY_MILLIS),
        "Longest wait between two attempts to reach the host.",
        "an integer from 10 to 86400000 (a day)",
    )
    max_frame_bytes: int = frame_bytes_setting()
    keep_console: bool = setting(
        False,
        ENV_KEEP_CONSOLE,
        parse_bool,
        "Under auto-install, let the plugin's own console output of the records the bridge carries "
        "reach the host's stderr capture too (off: the host shows each record once).",
        "true or false",
    )
    freeze_startup_objects: bool = setting(
        True,
        ENV_FREEZE_STARTUP_OBJECTS,
        parse_bool,
        "Under auto-install, move the objects that exist before the plugin's code runs (the "
        "interpreter's start-up) out of the garbage collector's reach (gc.freeze): every full "
        "collection, and the ones at exit, then skips them (a plugin exits ~8 ms sooner). "
        "Nothing the plugin creates is frozen.",
        "true or false",
    )
