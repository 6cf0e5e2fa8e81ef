"""A host bridge in its own process, so that tests can SIGKILL it and start another on the same runtime dir.

Usage: ``python host_process.py SPEC.json``. The spec names the runtime dir, the file-sink dir,
the runners to spawn (first host only), where to write its live stats (every 50 ms) and a
``hold`` file: while it exists, the sink stops right after writing a batch, before the bridge
settles it (so a kill lands between "exported" and "acknowledged"). SIGTERM shuts down cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.export.file_sink import FileSink
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.sinks import Outcome


class HoldingFileSink(FileSink):
    """The embedded file sink, which can be told to stall after a successful write."""

    def __init__(self, path: str, hold: str, held: str) -> None:
        super().__init__(path, 100 * 1024 * 1024, 1)
        self._hold = hold
        self._held = held

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        outcome = super().export(items, timeout_seconds)
        if outcome.ok and self._hold and os.path.exists(self._hold):
            with open(self._held, "w") as out:
                out.write(str(len(items)))
            while True:  # until SIGKILL
                time.sleep(1)
        return outcome


def _write(path: str, data: Any) -> None:
    with open(path + ".tmp", "w") as out:
        json.dump(data, out)
    os.replace(path + ".tmp", path)


def _snapshot(bridge: HostLogBridge) -> dict[str, Any]:
    data = bridge.stats().as_dict()
    for name, plugin in data["plugins"].items():
        plugin["busy"] = not bridge.wait_for_plugin(name, 0.01)
    return data


def main(argv: Sequence[str]) -> int:
    with open(argv[1]) as handle:
        spec = json.load(handle)
    sink = HoldingFileSink(
        os.path.join(spec["sink_dir"], "plugin-logs.otlp.jsonl"), spec.get("hold", ""), spec.get("held", "")
    )
    bridge = HostLogBridge(sink=sink, runtime_dir=spec["runtime_dir"], **spec.get("settings", {}))
    bridge.start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    pids = {}
    for runner in spec.get("spawn", []):
        env = dict(os.environ)
        env.update(runner.get("env", {}))
        pids[runner["name"]] = bridge.spawn_plugin(runner["name"], runner["argv"], env=env).pid
    _write(spec["ready"], {"pids": pids, "pid": os.getpid()})
    while not stopping.wait(0.05):
        _write(spec["stats"], _snapshot(bridge))
    bridge.shutdown(5000)
    _write(spec["stats"], {**bridge.stats().as_dict(), "final": True})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
