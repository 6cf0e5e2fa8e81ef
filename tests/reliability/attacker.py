"""A hostile local process for the connection-bound tests: bounded in count and time, Unix sockets only.

Usage: ``python attacker.py SPEC.json``. The spec names the socket, the attack, the number of
connections, a ``ready`` file (written once every connection is set up), a ``stop`` file (the
attacker closes everything when it appears) and ``hold_seconds`` (it stops by itself then).
Attacks:

- ``silent``: connect and send nothing;
- ``big_prefix``: no hello, a length prefix of ``frame_bytes`` and as much body as the socket takes;
- ``big_authed``: a valid hello on its own stream id, then the same big unfinished frame.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import struct
import sys
import time
from typing import Any

import msgpack

_CHUNK = b"\x00" * (256 * 1024)


def _frame(message: dict[str, Any]) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def _push(sock: socket.socket, total: int) -> int:
    """Send up to ``total`` bytes without blocking; returns what the socket took."""
    sent = 0
    sock.setblocking(False)
    try:
        while sent < total:
            sent += sock.send(_CHUNK[: min(len(_CHUNK), total - sent)])
    except (BlockingIOError, OSError):
        pass
    return sent


def _hello(sock: socket.socket, token: str, stream: int) -> str:
    sock.settimeout(10)
    sock.sendall(_frame({"t": "hello", "v": 1, "token": token, "pid": os.getpid(), "stream": stream}))
    header = sock.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        return "closed"
    body = sock.recv(struct.unpack(">I", header)[0], socket.MSG_WAITALL)
    return str(msgpack.unpackb(body, raw=False).get("t"))


def main(spec_path: str) -> int:
    with open(spec_path) as handle:
        spec = json.load(handle)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    deadline = time.monotonic() + float(spec["hold_seconds"])
    frame_bytes = int(spec.get("frame_bytes", 8 * 1024 * 1024))
    socks: list[socket.socket] = []
    summary: dict[str, Any] = {"connected": 0, "refused": 0, "welcomed": 0, "rejected": 0, "sent": 0}
    for index in range(int(spec["connections"])):
        if time.monotonic() >= deadline or os.path.exists(spec["stop"]):
            break
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(spec["socket"])
        except OSError:
            summary["refused"] += 1
            sock.close()
            continue
        summary["connected"] += 1
        socks.append(sock)
        try:
            if spec["attack"] == "big_authed":
                answer = _hello(sock, spec["token"], index + 1)
                summary["welcomed" if answer == "welcome" else "rejected"] += 1
                if answer != "welcome":
                    continue
            if spec["attack"] in ("big_prefix", "big_authed"):
                sock.setblocking(False)
                sock.send(struct.pack(">I", frame_bytes))
                summary["sent"] += _push(sock, frame_bytes - 1)
        except OSError:
            summary["rejected"] += 1
    with open(spec["ready"] + ".tmp", "w") as out:
        json.dump(summary, out)
    os.replace(spec["ready"] + ".tmp", spec["ready"])
    while time.monotonic() < deadline and not os.path.exists(spec["stop"]):
        time.sleep(0.02)
    for sock in socks:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
