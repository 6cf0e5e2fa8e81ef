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
restores this one. A fatal signal that arrives while an exit is already flushing (a
multiprocessing worker that returned is sent SIGTERM by ``Pool.terminate`` during its
``atexit`` flush) waits for that flush to end, then ends the process as it would have.

Runner side only: standard library.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, NoReturn

_FATAL_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class ExitHooks:
    """Installs and removes the flush before ``os._exit`` and before a default fatal signal."""

    def __init__(self, flush: Callable[[int | None], object], timeout_millis: int) -> None:
        self._flush = flush
        self._timeout_millis = timeout_millis
        self._real_exit: Callable[[int], NoReturn] | None = None
        self._wrapped_exit: Callable[[int], NoReturn] | None = None
        self._signals: list[int] = []
        self._exiting = False
        self._pending_signal: int | None = None

    def install(self) -> None:
        if self._real_exit is not None:
            return
        real_exit = os._exit
        self._real_exit = real_exit

        def exit_after_flush(code: int) -> NoReturn:
            self._exit_flush(self._timeout_millis)
            real_exit(code)

        functools.update_wrapper(exit_after_flush, real_exit)
        self._wrapped_exit = exit_after_flush
        os._exit = exit_after_flush  # type: ignore[assignment]
        # Registered after the handler's own: atexit runs it first, so a signal that comes
        # during the flush at exit knows a flush is under way.
        atexit.register(self._exit_flush, None)  # None: the handler's own shutdown deadline
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
        atexit.unregister(self._exit_flush)
        if threading.current_thread() is threading.main_thread():
            for signum in self._signals:
                if signal.getsignal(signum) == self._on_fatal_signal:
                    signal.signal(signum, signal.SIG_DFL)
        self._signals.clear()

    def _exit_flush(self, timeout_millis: int | None) -> None:
        """The flush before the process ends; then the end a signal that came meanwhile asked for."""
        if self._exiting:
            return
        self._exiting = True
        # The process is ending: nothing may stop that.
        with contextlib.suppress(BaseException):
            self._flush(timeout_millis)
        if self._pending_signal is not None:
            _die_by(self._pending_signal)

    def _on_fatal_signal(self, signum: int, frame: FrameType | None) -> Any:
        if self._exiting:
            # Called inside the flush of an exit already under way (same thread): let it finish.
            self._pending_signal = signum
            return
        self._exit_flush(self._timeout_millis)
        _die_by(signum)


def _die_by(signum: int) -> None:
    """End as the signal's default action would: killed by it, for the parent to see."""
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
