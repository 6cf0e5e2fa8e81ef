"""The messages of a runner connection: the one definition of each message's fields.

Conversation::

    runner -> host   hello    {t, v, token, pid, stream, plugin_version?}
    host  -> runner  welcome  {t, v, acked, max_frame_bytes}
                  or reject   {t, v, reason}            (then the host closes)
    runner -> host   batch    {t, records, dropped, accepted}
    host  -> runner  ack      {t, seq}                  (every record <= seq is settled)
    host  -> runner  flush    {t, id}                   (send everything now; echo id as "flushed")
    runner -> host   bye      {t}                       (clean close; absence means a crash)

Each builder below is the only place a message of its kind is put together; the validation
models in ``wire.validate`` are the only place one is checked.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, Final


PROTOCOL_VERSION: Final = 1

HELLO: Final = "hello"
WELCOME: Final = "welcome"
REJECT: Final = "reject"
BATCH: Final = "batch"
ACK: Final = "ack"
BYE: Final = "bye"
FLUSH: Final = "flush"


def hello(token: str, pid: int, stream: int, plugin_version: str | None, python: str) -> dict[str, Any]:
    """A runner's first frame: who it is (the token) and which stream of records it carries."""
    return {
        "t": HELLO,
        "v": PROTOCOL_VERSION,
        "token": token,
        "pid": pid,
        "stream": stream,
        "plugin_version": plugin_version,
        "python": python,
    }


def welcome(acked: int, max_frame_bytes: int) -> dict[str, Any]:
    """The host took the hello: where the stream stands, and the frame size it takes."""
    return {
        "t": WELCOME,
        "v": PROTOCOL_VERSION,
        "acked": acked,
        "max_frame_bytes": max_frame_bytes,
    }


def reject(reason: str) -> dict[str, Any]:
    """The host refuses the connection, and closes it after this frame."""
    return {"t": REJECT, "v": PROTOCOL_VERSION, "reason": reason}


def batch_header(stream: int, dropped: dict[str, int], accepted: int, flushed: int = 0) -> dict[str, Any]:
    """The fields of a batch frame before its ``records`` (see ``framing.encode_message_with_records``)."""
    header: dict[str, Any] = {"t": BATCH, "stream": stream, "dropped": dropped, "accepted": accepted}
    if flushed:
        header["flushed"] = flushed
    return header


def bye_header(stream: int, dropped: dict[str, int], accepted: int, flushed: int = 0) -> dict[str, Any]:
    """A clean close: a batch header whose type says that nothing follows."""
    header = batch_header(stream, dropped, accepted, flushed)
    header["t"] = BYE
    return header


def ack(seq: int) -> dict[str, Any]:
    """Every record of the stream up to ``seq`` is settled (exported or counted)."""
    return {"t": ACK, "seq": seq}


def flush(flush_id: int) -> dict[str, Any]:
    """Send everything now, and echo ``flush_id`` as ``flushed`` in a batch header."""
    return {"t": FLUSH, "id": flush_id}
