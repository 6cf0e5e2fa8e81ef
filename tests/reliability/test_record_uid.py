"""log.record.uid: a record exported again by a restarted host carries the uid it had."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from restart_support import restart_between_export_and_ack


def test_record_exported_again_after_a_host_restart_has_the_same_uid(tmp_path: Path, host_env: Path) -> None:
    """Host killed between export and acknowledgement: both copies of a resent record share one uid."""
    exported, _ = restart_between_export_and_ack(tmp_path)
    records = [r for r in exported if r["plugin"] == "gamma" and r["scope"]]
    uids: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record["scope"] not in ("otel_plugin_logs.bridge", "stderr"):
            uids[str(record["body"])].add(record["attributes"]["log.record.uid"])
    assert len(records) > len(uids)  # the setup really exported some records twice
    assert all(len(ids) == 1 for ids in uids.values())
    assert len({next(iter(ids)) for ids in uids.values()}) == len(uids) == 100
