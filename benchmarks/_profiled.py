"""Run a script or module under cProfile, every thread included: ``python _profiled.py OUT (-m MODULE | SCRIPT) ARGS``.

cProfile sees only the thread that enabled it; ``threading.setprofile`` gives each thread
started afterwards (the runner's sender, the host's reader and export threads) a profiler of
its own, enabled from inside that thread on its first event. At the end all of them are merged
into one pstats file at OUT. Standard library only: it runs as a plugin's command too.
"""

from __future__ import annotations

import atexit
import cProfile
import pstats
import runpy
import sys
import threading
from typing import Any

_profilers: list[tuple[str, cProfile.Profile]] = []
_lock = threading.Lock()


def _start_in_thread(frame: Any, event: str, arg: Any) -> None:
    sys.setprofile(None)
    profiler = cProfile.Profile()
    with _lock:
        _profilers.append((threading.current_thread().name, profiler))
    profiler.enable()


def _dump(out: str, main_profiler: cProfile.Profile, done: list[bool]) -> None:
    """Merge every thread's profile into ``out``; once, whichever way the process ends."""
    if done:
        return
    done.append(True)
    main_profiler.disable()
    threading.setprofile(None)
    stats = pstats.Stats(main_profiler)
    with _lock:
        profiled = list(_profilers)
    for _name, profiler in profiled:
        try:
            stats.add(profiler)
        except TypeError:  # a thread that never recorded an event
            pass
    stats.dump_stats(out)
    with open(out + ".threads", "w", encoding="utf-8") as handle:
        handle.write("\n".join(["MainThread", *(name for name, _ in profiled)]) + "\n")


def main(argv: list[str]) -> int:
    out, rest = argv[1], argv[2:]
    main_profiler = cProfile.Profile()
    done: list[bool] = []
    # `otel-plugin-logs run` ends with os._exit after the exit functions (no interpreter
    # teardown), so the profile is written by an exit function as well as in ``finally``.
    atexit.register(_dump, out, main_profiler, done)
    threading.setprofile(_start_in_thread)
    sys.argv = rest[1:] if rest[0] == "-m" else rest
    code = 0
    main_profiler.enable()
    try:
        if rest[0] == "-m":
            runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(rest[0], run_name="__main__")
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        _dump(out, main_profiler, done)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
