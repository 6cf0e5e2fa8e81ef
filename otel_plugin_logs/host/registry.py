"""The ledger's persistence in the runtime dir: ``registry.json``, read at start, written atomically.

The file format is unchanged from earlier versions: ``runners`` by token hash, and three
sections keyed ``<digest>:<stream id>`` (``streams`` = acked, ``dropped``, ``in_doubt``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any, Final

from otel_plugin_logs.conventions import is_valid_plugin_name
from otel_plugin_logs.host.ledger import RegistrySnapshot
from otel_plugin_logs.host.streams import Registration, SavedStream, Stream, StreamKey
from otel_plugin_logs.wire import exit_counter

_log = logging.getLogger("otel_plugin_logs.bridge")

REGISTRY_FILE: Final = "registry.json"


def registry_path(runtime_dir: str) -> str:
    return os.path.join(runtime_dir, REGISTRY_FILE)


def load_registry(path: str, process_alive: Callable[[int], bool]) -> RegistrySnapshot | None:
    """What an earlier host instance saved, or None; an unreadable file is warned about and ignored."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        _log.warning("ignoring the unreadable runner registry %s: %s", path, error)
        return None
    if not isinstance(data, dict):
        _log.warning("ignoring the runner registry %s: not a JSON object", path)
        return None
    snapshot = RegistrySnapshot(_registrations(_section(data, "runners"), process_alive))
    for name, value in _section(data, "streams").items():
        key = StreamKey.from_registry_key(name)
        if key is not None and isinstance(value, int):
            _saved(snapshot, key).acked = value
    for name, value in _section(data, "in_doubt").items():
        key = StreamKey.from_registry_key(name)
        if key is not None and isinstance(value, int):
            _saved(snapshot, key).in_doubt = value
    for name, value in _section(data, "dropped").items():
        key = StreamKey.from_registry_key(name)
        if key is not None and isinstance(value, dict):
            _saved(snapshot, key).dropped = {r: c for r, c in value.items() if isinstance(c, int)}
    return snapshot


def encode_registry(snapshot: RegistrySnapshot) -> dict[str, Any]:
    """The file's content (taken while the ledger is locked: it reads live registrations)."""
    return {
        "version": 1,
        "runners": {
            r.digest: {"plugin": r.plugin, "version": r.version, "pid": r.pid, "ended": r.ended}
            for r in snapshot.registrations
        },
        "streams": {k.registry_key(): v.acked for k, v in snapshot.saved.items()},
        "dropped": {k.registry_key(): v.dropped for k, v in snapshot.saved.items()},
        "in_doubt": {k.registry_key(): v.in_doubt for k, v in snapshot.saved.items() if v.in_doubt},
    }


def write_registry(path: str, data: dict[str, Any]) -> None:
    """Write through a temporary file and a rename; a failure is warned about."""
    temporary = path + ".tmp"
    try:
        with open(
            os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8"
        ) as out:
            json.dump(data, out)
        os.replace(temporary, path)
    except OSError as error:
        _log.warning("could not save the runner registry %s: %s", path, error)


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def _saved(snapshot: RegistrySnapshot, key: StreamKey) -> SavedStream:
    return snapshot.saved.setdefault(key, SavedStream())


def _registrations(runners: dict[str, Any], process_alive: Callable[[int], bool]) -> list[Registration]:
    taken: list[Registration] = []
    for digest, info in runners.items():
        if not (
            isinstance(info, dict)
            and isinstance(info.get("plugin"), str)
            and is_valid_plugin_name(info["plugin"])
        ):
            continue
        pid = info.get("pid")
        if isinstance(pid, int) and not process_alive(pid):
            continue  # its runner died while no host was listening: nothing will come
        if info.get("ended") is True:
            continue  # released, or seen exiting, before the last host stopped
        version = info.get("version")
        taken.append(
            Registration(
                info["plugin"],
                version if isinstance(version, str) else None,
                digest,
                pid if isinstance(pid, int) else None,
            )
        )
    return taken


class ExitCounters:
    """The files in which runners count what they accepted, read when their identity ends."""

    def __init__(self, socket_path: str) -> None:
        self.directory = exit_counter.counter_dir(socket_path)

    def prepare(self, known_digests: set[str]) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        # Counters of runners an earlier host instance forgot would otherwise stay forever.
        exit_counter.prune(self.directory, known_digests)

    def mark_retired(self, stream: Stream) -> None:
        """What the host counted of a retired runner stream survives a host restart."""
        if stream.key.digest is not None:
            name = exit_counter.file_name(stream.key.digest, stream.key.stream_id)
            exit_counter.mark_accounted(os.path.join(self.directory, name), stream.accepted)

    def take_unsent(self, digest: str) -> int:
        """A runner identity ended: what its processes accepted but never sent; its files go.

        Its exit counters cover every stream it had, also a forked child that died before it
        ever connected; what the host counted already is written in each file.
        """
        lost = 0
        for reading in exit_counter.read_counters(self.directory, digest):
            lost += reading.unaccounted
            exit_counter.remove(reading.path)
        return lost
