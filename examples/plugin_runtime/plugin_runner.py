"""A runner of the example runtime: logs through the old handler or through ours.

``--handler old`` keeps the seed-style handler (``runner.log_batch`` events); ``--handler
new`` replaces it with ``RunnerLogHandler`` over ``RpcTransport`` on the same RPC client:
those are the few lines a runtime changes in its runner.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from runtime_rpc import RpcError, RuntimeRpcClient
from seed_style_handler import SeedStyleLogHandler

from otel_plugin_logs.runner import FrameEncoding, RpcTransport, RunnerLogHandler

RUNTIME_FD_VARIABLE = "EXAMPLE_RUNTIME_FD"


async def run(plugin: str, handler_kind: str, records: int, bad_batch: bool) -> None:
    client = await RuntimeRpcClient.from_fd(int(os.environ[RUNTIME_FD_VARIABLE]))
    loop = asyncio.get_running_loop()
    if handler_kind == "old":
        old = SeedStyleLogHandler()
        old.start(client, loop)
        handler: logging.Handler = old
    else:
        # The whole change on the runner side: our handler over the runtime's own client.
        handler = RunnerLogHandler(RpcTransport(client, loop=loop, encoding=FrameEncoding.BASE64))
    logging.root.addHandler(handler)
    logging.root.setLevel(logging.DEBUG)

    # The old handler forwards only loggers under plugin.<name>; ours takes any name (the
    # host keeps it under plugin.<name> either way), so a plugin can log on its own names.
    prefix = f"plugin.{plugin}" if handler_kind == "old" else "app"
    main = logging.getLogger(prefix)
    worker = logging.getLogger(f"{prefix}.worker")
    for i in range(records):
        if i % 25 == 24:
            try:
                raise ValueError(f"bad item {i}")
            except ValueError:
                main.exception("record %d of %s failed", i, plugin)
        else:
            (worker if i % 2 else main).info("record %d of %s", i, plugin)
        # The old handler ships 20 entries per 0.1 s and overwrites the oldest beyond 200
        # without a trace: a runner on it must log slowly (or fewer than 200 records).
        await asyncio.sleep(0.005)
    if bad_batch:
        # What a broken runner might send: refused by the host with a reason, and counted.
        try:
            await client.send_event("runner.log_batch", payload={"entries": "not a list"})
        except RpcError as error:
            print(f"the host refused the bad batch: {error}", file=sys.stderr)

    logging.root.removeHandler(handler)
    if isinstance(handler, SeedStyleLogHandler):
        await handler.stop()
    else:
        assert isinstance(handler, RunnerLogHandler)
        # Off the loop: the handler's last frames go out through this very loop.
        await asyncio.to_thread(handler.shutdown, 5000)
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plugin", required=True)
    parser.add_argument("--handler", choices=("old", "new"), required=True)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--bad-batch", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.plugin, args.handler, args.records, args.bad_batch))


if __name__ == "__main__":
    main()
