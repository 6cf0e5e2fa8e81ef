"""Why a runner gave records up: the keys of a batch's ``dropped`` map."""

from __future__ import annotations

import enum


class DropReason(enum.StrEnum):
    """A reason in a batch header's ``dropped`` map; the values are the wire's."""

    QUEUE_FULL = "queue_full"
    SHUTDOWN = "shutdown_unsent"
    REJECTED = "rejected_by_host"
    ENCODE = "encode_error"
