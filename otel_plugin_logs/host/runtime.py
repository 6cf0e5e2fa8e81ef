"""The host's runtime dir: its socket, its registry of runners, the runners' exit counters.

A configured dir outlives the host (a restarted host takes its runners back from the
registry); otherwise a temporary one is made at start and removed at shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading

from otel_plugin_logs.host import auth, registry
from otel_plugin_logs.host.ledger import Ledger
from otel_plugin_logs.host.streams import Stream

_log = logging.getLogger("otel_plugin_logs.bridge")

_MAX_SOCKET_PATH_BYTES = 100


class RuntimeDir:
    def __init__(self, configured: str, lock: threading.RLock, ledger: Ledger) -> None:
        self._configured = configured
        self._lock = lock
        self._ledger = ledger
        self._save_lock = threading.Lock()  # taken before the ledger's lock, never while holding it
        self.path = configured
        self.exit_counters: registry.ExitCounters | None = None

    @property
    def owned(self) -> bool:
        """A temporary dir of this host: nothing in it survives the host."""
        return not self._configured

    @property
    def socket_path(self) -> str:
        return os.path.join(self.path, "bridge.sock")

    def prepare(self) -> None:
        """Make (or check) the dir, take back an earlier host's runners, prune stale counters."""
        if self._configured:
            os.makedirs(self._configured, mode=0o700, exist_ok=True)
            info = os.stat(self._configured)
            if info.st_uid != os.getuid():
                raise PermissionError(
                    f"runtime dir {self._configured} is owned by uid {info.st_uid}, not by this user"
                )
            os.chmod(self._configured, 0o700)
            self._load()
        else:
            self.path = tempfile.mkdtemp(prefix="otel-plugin-logs-")
        self.exit_counters = registry.ExitCounters(self.socket_path)
        self.exit_counters.prepare(set(self._ledger.registrations))
        if len(self.socket_path.encode()) > _MAX_SOCKET_PATH_BYTES:
            raise ValueError(
                f"socket path {self.socket_path} is too long for a Unix socket: "
                "set OTEL_PLUGIN_LOGS_RUNTIME_DIR to a shorter directory"
            )

    def _load(self) -> None:
        path = registry.registry_path(self.path)
        snapshot = registry.load_registry(path, auth.process_alive)
        if snapshot is None:
            return
        self._ledger.restore(snapshot)
        if self._ledger.registrations:
            _log.info("took back %d runner registration(s) from %s", len(self._ledger.registrations), path)

    def save(self) -> None:
        """Write the registry if the ledger changed (only a configured dir keeps one).

        One writer at a time, from the snapshot to the rename: the export worker, the loop
        thread and callers all save. A caller that finds nothing dirty returns only after the
        write that took its change is on disk (the write-ahead before an export).
        """
        if self.owned or not self.path:
            return
        with self._save_lock:
            with self._lock:
                if not self._ledger.dirty:
                    return
                data = registry.encode_registry(self._ledger.snapshot())
            registry.write_registry(registry.registry_path(self.path), data)

    def mark_retired(self, stream: Stream) -> None:
        if self.exit_counters is not None:
            self.exit_counters.mark_retired(stream)

    def take_unsent(self, digest: str) -> int:
        return self.exit_counters.take_unsent(digest) if self.exit_counters is not None else 0

    def clean_up(self) -> None:
        """At shutdown: a temporary dir goes entirely; a configured one keeps all but the socket."""
        if self.owned:
            if self.path:
                shutil.rmtree(self.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
