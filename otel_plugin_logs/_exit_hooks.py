"""Send what a runner holds before the process ends in ways that skip ``atexit``.

``os._exit`` (how multiprocessing's fork and forkserver children, gunicorn workers and many
supervisors end a process) and a fatal signal with its default action (SIGTERM, SIGHUP:
what ``Pool.terminate`` sends, and what uvicorn re-raises after its graceful shutdown) run no
``atexit`` handler, so the records still in the runner's buffer would die with it. Both get a
short, bounded flush first; the process then ends exactly as it would have (same exit code,
same signal). The flush is the handler's shutdown: its bye and half-close let the host read to
the end (a socket closed with the host's acknowledgements unread resets the connection, and
the host loses what it had not read yet). What could not be sent in time is counted by the
host from the exit counter.

A signal gets the flush only where its handler is still the default: a plugin's own handler
is never replaced, and one that restores the previous handler before re-raising (uvicorn)
restores this one.

Runner side only: standard library.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

_FATAL_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class ExitHooks:
    """Installs and removes the flush before ``os._exit`` and before a default fatal signal."""

    def __init__(self, flush: Callable[[int], object], timeout_millis: int) -> None:
        self._flush = flush
        self._timeout_millis = timeout_millis
        self._real_exit: Callable[[int], NoReturn] | None = None
        self._wrapped_exit: Callable[[int], NoReturn] | None = None
        self._signals: list[int] = []

    def install(self) -> None:
        if self._real_exit is not None:
            return
        real_exit = os._exit
        self._real_exit = real_exit

        def exit_after_flush(code: int) -> NoReturn:
            self._flush_quietly()
            real_exit(code)

        functools.update_wrapper(exit_after_flush, real_exit)
        self._wrapped_exit = exit_after_flush
        os._exit = exit_after_flush  # type: ignore[assignment]
        if threading.current_thread() is threading.main_thread():
            for signum in _FATAL_SIGNALS:
                if signal.getsignal(signum) is signal.SIG_DFL:
                    signal.signal(signum, self._on_fatal_signal)
                    self._signals.append(signum)

    def uninstall(self) -> None:
        real_exit, self._real_exit = self._real_exit, None
        if real_exit is None:
            return
        if os._exit is self._wrapped_exit:
            os._exit = real_exit  # type: ignore[assignment]
        if threading.current_thread() is threading.main_thread():
            for signum in self._signals:
                if signal.getsignal(signum) == self._on_fatal_signal:
                    signal.signal(signum, signal.SIG_DFL)
        self._signals.clear()

    def _flush_quietly(self) -> None:
        # The process is ending: nothing may stop that.
        with contextlib.suppress(BaseException):
            self._flush(self._timeout_millis)

    def _on_fatal_signal(self, signum: int, frame: FrameType | None) -> Any:
        self._flush_quietly()
        # Then end as the default action would: killed by this signal, for the parent to see.
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
