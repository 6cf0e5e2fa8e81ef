"""log.record.uid: a record exported again by a restarted host carries the uid it had."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from helpers import write_plugin
from reliability_support import wait_for
from test_host_restart import RESTART_RUNNER, HostProcess, _cleanup, _runner_spec


def test_record_exported_again_after_a_host_restart_has_the_same_uid(tmp_path: Path, host_env: Path) -> None:
    """Host killed between export and acknowledgement: both copies of a resent record share one uid."""
    runtime = tmp_path / "rt"
    script = write_plugin(tmp_path, "restart", RESTART_RUNNER)
    out = tmp_path / "gamma.json"
    hosts: list[HostProcess] = []
    with _cleanup(hosts):
        first = HostProcess(
            tmp_path, "host-1", runtime, [_runner_spec(script, out, "gamma", 0, 100, {})], hold=True
        )
        hosts.append(first)
        assert wait_for(first.held.exists, 60)
        first.kill()
        second = HostProcess(tmp_path, "host-2", runtime)
        hosts.append(second)
        assert wait_for(out.exists, 60)
        assert wait_for(lambda: not second.plugin("gamma").get("busy", True), 30)
        second.stop()
        records = [r for r in first.records() + second.records() if r["plugin"] == "gamma" and r["scope"]]
    uids: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record["scope"] not in ("otel_plugin_logs.bridge", "stderr"):
            uids[str(record["body"])].add(record["attributes"]["log.record.uid"])
    assert len(records) > len(uids)  # the setup really exported some records twice
    assert all(len(ids) == 1 for ids in uids.values())
    assert len({next(iter(ids)) for ids in uids.values()}) == len(uids) == 100
