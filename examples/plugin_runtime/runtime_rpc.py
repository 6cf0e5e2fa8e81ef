"""The example runtime's own RPC: length-prefixed JSON envelopes over a socketpair.

This stands for whatever channel a plugin runtime already has between its host and its
runners. Runner -> host: ``{"id", "kind": "event", "name", "payload"}``; host -> runner:
``{"id", "kind": "reply", "result"}`` or ``{"id", "kind": "reply", "error"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import struct
from typing import Any, Final

MAX_ENVELOPE_BYTES: Final = 16 * 1024 * 1024
_LENGTH: Final = struct.Struct(">I")


class RpcError(Exception):
    """The host answered an event with an error."""


async def read_envelope(reader: asyncio.StreamReader) -> dict[str, Any]:
    """The next envelope; raises ``asyncio.IncompleteReadError`` at the end of the stream."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > MAX_ENVELOPE_BYTES:
        raise RpcError(f"envelope of {length} bytes > {MAX_ENVELOPE_BYTES}")
    envelope = json.loads(await reader.readexactly(length))
    if not isinstance(envelope, dict):
        raise RpcError("an envelope is a JSON object")
    return envelope


def write_envelope(writer: asyncio.StreamWriter, envelope: dict[str, Any]) -> None:
    body = json.dumps(envelope, ensure_ascii=False).encode()
    writer.write(_LENGTH.pack(len(body)) + body)


class RuntimeRpcClient:
    """The runner's end: ``await send_event(name, payload)`` returns the host's result."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._connected = True
        self._reading = asyncio.get_running_loop().create_task(self._read_replies())

    @classmethod
    async def from_fd(cls, fd: int) -> RuntimeRpcClient:
        sock = socket.socket(fileno=fd)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def send_event(self, name: str, payload: Any) -> Any:
        if not self._connected:
            raise ConnectionError("the runtime channel is closed")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            write_envelope(self._writer, {"id": call_id, "kind": "event", "name": name, "payload": payload})
            await self._writer.drain()
            return await future
        finally:
            self._pending.pop(call_id, None)

    async def _read_replies(self) -> None:
        try:
            while True:
                envelope = await read_envelope(self._reader)
                future = self._pending.get(envelope.get("id", -1))
                if future is None or future.done():
                    continue
                if "error" in envelope:
                    future.set_exception(RpcError(str(envelope["error"])))
                else:
                    future.set_result(envelope.get("result"))
        except (asyncio.IncompleteReadError, ConnectionError, RpcError, ValueError):
            pass
        finally:
            self._connected = False
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the runtime channel closed"))

    async def close(self) -> None:
        self._connected = False
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
