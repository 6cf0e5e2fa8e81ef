"""The example runtime's host: asyncio, its own RPC to each runner, and the bridge.

It starts two runners over socketpairs, one still on the old seed-style handler and one on
``RunnerLogHandler`` over ``RpcTransport``, and answers their events:

- ``runner.log_batch`` (old runners): ``bridge.handle_legacy_batch(plugin, payload, pid=...)``
- ``otel_plugin_logs.frame`` (new runners): ``bridge.handle_batch(plugin, frame_from_event(payload))``,
  whose result (the settled sequence number) is the reply, so the runner gets acknowledgements.

The plugin a payload belongs to is the runner whose socket it came on, never what it says.
Both reach this host's console (``plugin.<name>...`` loggers) and the OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``). At the end it prints one JSON line of per-plugin counters
and exits 1 if any record is unaccounted for.

    python examples/plugin_runtime/runtime_host.py --records 200 [--bad-batch]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from plugin_runner import RUNTIME_FD_VARIABLE
from runtime_rpc import RpcError, read_envelope, write_envelope

from otel_plugin_logs import HostLogBridge, ProtocolError, frame_from_event

_log = logging.getLogger("example.runtime")
RUNNER_SCRIPT = Path(__file__).with_name("plugin_runner.py")


@dataclasses.dataclass(slots=True)
class Runner:
    plugin: str
    handler: str
    pid: int = 0


def answer(bridge: HostLogBridge, runner: Runner, name: str, payload: Any) -> Any:
    """The host's side of one event; ProtocolError becomes an error reply."""
    if name == "runner.log_batch":
        bridge.handle_legacy_batch(runner.plugin, payload, pid=runner.pid)
        return None  # the seed's event has no reply
    if name == "otel_plugin_logs.frame":
        return bridge.handle_batch(runner.plugin, frame_from_event(payload), pid=runner.pid)
    raise RpcError(f"unknown event {name[:64]!r}")


async def serve(bridge: HostLogBridge, runner: Runner, sock: socket.socket) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    try:
        while True:
            try:
                envelope = await read_envelope(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            reply: dict[str, Any] = {"id": envelope.get("id"), "kind": "reply"}
            try:
                reply["result"] = answer(bridge, runner, str(envelope.get("name")), envelope.get("payload"))
            except (ProtocolError, RpcError) as error:
                reply["error"] = str(error)
            write_envelope(writer, reply)
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def run_runner(bridge: HostLogBridge, runner: Runner, records: int, bad_batch: bool) -> int:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    argv = [sys.executable, str(RUNNER_SCRIPT), "--plugin", runner.plugin, "--handler", runner.handler]
    argv += ["--records", str(records)] + (["--bad-batch"] if bad_batch and runner.handler == "old" else [])
    env = {**os.environ, RUNTIME_FD_VARIABLE: str(theirs.fileno())}
    process = await asyncio.create_subprocess_exec(*argv, env=env, pass_fds=(theirs.fileno(),))
    theirs.close()
    runner.pid = process.pid
    _log.info("started runner %s (pid %d, %s handler)", runner.plugin, process.pid, runner.handler)
    await serve(bridge, runner, ours)
    code = await process.wait()
    if runner.handler == "old":
        # The old handler never says goodbye: tell the bridge this runner is gone.
        bridge.handle_legacy_batch(runner.plugin, {"entries": []}, pid=runner.pid, final=True)
    _log.info("runner %s exited with %d", runner.plugin, code)
    return code


async def main_async(records: int, bad_batch: bool) -> int:
    runners = [Runner("oldplugin", "old"), Runner("newplugin", "new")]
    with HostLogBridge(service_name="example-runtime") as bridge:
        codes = await asyncio.gather(*(run_runner(bridge, r, records, bad_batch) for r in runners))
        flushed = await asyncio.to_thread(bridge.force_flush, 60_000)
        stats = bridge.stats()
    plugins: dict[str, dict[str, Any]] = {}
    for r in runners:
        plugin = stats.plugins.get(r.plugin)  # absent: the runner never sent anything
        plugins[r.plugin] = {"pid": r.pid, "handler": r.handler, "sent_anything": plugin is not None}
        if plugin is not None:
            plugins[r.plugin].update(
                emitted=plugin.emitted,
                exported=plugin.exported,
                dropped=plugin.dropped,
                pending=plugin.pending,
                uncounted=plugin.uncounted,
                bad_input=plugin.bad_input,
            )
    print(json.dumps({"flushed": flushed, "exit_codes": list(codes), "plugins": plugins}), flush=True)
    counted = all(p.get("uncounted", 0) == 0 for p in plugins.values())
    return 0 if counted and flushed and not any(codes) else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100, help="records each runner logs")
    parser.add_argument(
        "--bad-batch", action="store_true", help="the old runner also sends a malformed batch"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    sys.exit(asyncio.run(main_async(args.records, args.bad_batch)))


if __name__ == "__main__":
    main()
