"""The embedded file sink under a failing disk, and its privacy (issue 13, item 4)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from helpers import PYTHON, write_plugin
from reliability_support import drained, wait_for

from otel_plugin_logs import HostLogBridge

FILLER = """
import logging, sys
logging.basicConfig(level=logging.INFO)
for i in range(int(sys.argv[1])):
    logging.getLogger("fill").info("fill %d %s", i, "x" * 1000)
"""

SMALL_DISK_HOST = """
import json, os, resource, signal, sys
# A disk that fills up: writes past the limit fail with EFBIG (SIGXFSZ ignored), part-way through a line.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from otel_plugin_logs import HostLogBridge
bridge = HostLogBridge(export_retry_max_elapsed_millis=500, export_max_batch_records=50)
bridge.start()
process = bridge.spawn_plugin("filler", [sys.executable, sys.argv[1], sys.argv[2]])
process.wait(120)
bridge.wait_for_plugin("filler", 30)
bridge.force_flush(30_000)
bridge.shutdown(30_000)
print(json.dumps(bridge.stats().as_dict()["plugins"]["filler"]))
"""


def test_a_failed_write_leaves_no_partial_line_and_every_record_is_readable_or_counted(
    tmp_path: Path, host_env: Path
) -> None:
    """The sink's file hits its size limit mid-request (EFBIG): each request is in the file whole or not at all; exported + dropped = emitted."""
    filler = write_plugin(tmp_path, "filler", FILLER)
    host = write_plugin(tmp_path, "small_disk_host", SMALL_DISK_HOST)
    done = subprocess.run(
        [PYTHON, str(host), str(filler), "600", str(100 * 1024)],
        capture_output=True,
        text=True,
        timeout=240,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    lines = (host_env / "plugin-logs.otlp.jsonl").read_text().splitlines()
    bodies = []
    for line in lines:
        request = json.loads(line)  # a partial line would fail here
        for resource_logs in request["resourceLogs"]:
            for scope_logs in resource_logs["scopeLogs"]:
                bodies.extend(r["body"]["stringValue"] for r in scope_logs["logRecords"])
    readable = [b for b in bodies if b.startswith("fill ")]
    assert stats["emitted"] == 600, stats
    assert stats["dropped"].get("export_failed", 0) > 0, stats
    assert len(readable) == stats["exported"], (len(readable), stats)
    assert stats["exported"] + sum(stats["dropped"].values()) == 600 and stats["pending"] == 0, stats


def test_the_sink_directory_and_file_are_private(tmp_path: Path, host_env: Path) -> None:
    """A sink directory the bridge creates is 0700 and its file 0600, whatever the umask."""
    previous = os.umask(0o022)
    try:
        with HostLogBridge() as bridge:
            process = bridge.spawn_plugin("secret", [PYTHON, str(write_plugin(tmp_path, "f", FILLER)), "3"])
            assert process.wait(60) == 0
            assert wait_for(lambda: drained(bridge, "secret"), 30)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(host_env.stat().st_mode) == 0o700
    assert stat.S_IMODE((host_env / "plugin-logs.otlp.jsonl").stat().st_mode) == 0o600
