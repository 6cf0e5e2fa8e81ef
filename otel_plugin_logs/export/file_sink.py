"""The embedded default sink: OTLP/JSON lines in a private, size-rotated file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.export.items import Item, resource_entry_pairs
from otel_plugin_logs.export.otlp import encode_json_line
from otel_plugin_logs.export.sinks import Outcome


class FileSink:
    """The embedded default: OTLP/JSON lines, one request per line, size-rotated.

    Private by default (directory 0700 when it creates it, file 0600: records can carry
    secrets). Each request is appended whole or not at all: a failed write (ENOSPC, EFBIG) is
    cut back to where it began, so the retry does not follow half a line.
    """

    def __init__(self, path: str, max_bytes: int, backup_count: int) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._backup_count = backup_count
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        self._fd = self._open()
        size = os.fstat(self._fd).st_size
        if size > 0:
            with open(path, "rb") as existing:  # the sink's own descriptor is write-only
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    _write_all(self._fd, b"\n")  # a host killed mid-write left half a line
        self.description = f"file {path}"

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)  # an older file may have been created 0644
        return fd

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        try:
            line = (encode_json_line(resource_entry_pairs(items)) + "\n").encode("utf-8", "surrogatepass")
        except Exception as error:
            return Outcome.rejected(f"encoding failed: {error}")
        start = -1
        try:
            size = os.fstat(self._fd).st_size
            if size + len(line) > self._max_bytes and size > 0:
                self._rotate()
                size = 0
            start = size
            _write_all(self._fd, line)
        except OSError as error:
            if start >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)  # nothing of this request stays in the file
            return Outcome.errored(f"{type(error).__name__}: {error}")
        return Outcome.delivered()

    def _rotate(self) -> None:
        os.close(self._fd)
        if self._backup_count > 0:
            for index in range(self._backup_count - 1, 0, -1):
                source = f"{self.path}.{index}"
                if os.path.exists(source):
                    os.replace(source, f"{self.path}.{index + 1}")
            os.replace(self.path, f"{self.path}.1")
        else:
            os.remove(self.path)
        self._fd = self._open()

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def check_file_dir(directory: str, variable: str) -> None:
    """Fail at start-up, naming the variable, when the file sink could not write into ``directory``."""
    probe = os.path.abspath(directory)
    while not os.path.lexists(probe):  # the nearest existing ancestor is where it would be created
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ConfigError(f"{variable}={directory!r} is unusable: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{variable}={directory!r} is unusable: {probe} is not writable by this user")
