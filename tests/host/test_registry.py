"""The registry file: what a restarted host takes back, in the format earlier versions wrote."""

from __future__ import annotations

import json
from pathlib import Path

from otel_plugin_logs.host.ledger import RegistrySnapshot
from otel_plugin_logs.host.registry import encode_registry, load_registry, write_registry
from otel_plugin_logs.host.streams import Registration, SavedStream, StreamKey

DIGEST = "a" * 64


def alive(pid: int) -> bool:
    return True


def saved_snapshot() -> RegistrySnapshot:
    registration = Registration("plugin-a", "1.2", DIGEST, pid=4242)
    saved = {StreamKey(3, DIGEST): SavedStream(acked=10, dropped={"runner_queue_full": 2}, in_doubt=12)}
    return RegistrySnapshot([registration], saved)


def test_a_saved_registry_is_taken_back_whole(tmp_path: Path) -> None:
    """Identities and each stream's acked, dropped and in-doubt positions survive a write and a read."""
    path = str(tmp_path / "registry.json")
    write_registry(path, encode_registry(saved_snapshot()))
    loaded = load_registry(path, alive)
    assert loaded is not None
    assert [(r.plugin, r.version, r.digest, r.pid) for r in loaded.registrations] == [
        ("plugin-a", "1.2", DIGEST, 4242)
    ]
    assert loaded.saved == saved_snapshot().saved


def test_the_file_keeps_the_digest_colon_stream_layout(tmp_path: Path) -> None:
    """Streams are keyed ``<digest>:<stream id>`` in three sections, as earlier hosts wrote them."""
    path = tmp_path / "registry.json"
    write_registry(str(path), encode_registry(saved_snapshot()))
    data = json.loads(path.read_text())
    key = f"{DIGEST}:3"
    assert (data["streams"][key], data["in_doubt"][key], data["dropped"][key]) == (
        10,
        12,
        {"runner_queue_full": 2},
    )


def test_runners_that_died_while_no_host_listened_are_not_taken_back(tmp_path: Path) -> None:
    """A registration whose process is gone is dropped on load."""
    path = str(tmp_path / "registry.json")
    write_registry(path, encode_registry(saved_snapshot()))
    loaded = load_registry(path, lambda pid: False)
    assert loaded is not None
    assert loaded.registrations == []


def test_a_mangled_registry_is_ignored(tmp_path: Path) -> None:
    """A file that is not JSON is warned about and treated as absent."""
    path = tmp_path / "registry.json"
    path.write_text("{not json")
    assert load_registry(str(path), alive) is None


def test_a_missing_registry_is_no_registry(tmp_path: Path) -> None:
    """No file: nothing to take back."""
    assert load_registry(str(tmp_path / "registry.json"), alive) is None
