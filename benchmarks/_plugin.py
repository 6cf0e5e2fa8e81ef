"""The plugin the pipeline benchmarks spawn: ``python _plugin.py MODE COUNT RATE``.

It does not install anything itself: the host's ``spawn_plugin`` auto-installs the runner
handler, exactly as for a real plugin. Protocol with the benchmark host (stdin/stdout):

1. log one warm-up record and wait until the host acknowledged it (connection up, export
   path warm), then print ``ready``;
2. wait for a line on stdin (``go``), then log COUNT records of the standard shape, as fast
   as possible (MODE ``burst``) or paced at RATE records/s (MODE ``paced``);
3. shut the handler down (it sends what is left), print one JSON line with the timing and
   the process's CPU time since ``go`` (emitting thread and sender thread), and exit.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

MESSAGE = "request %d handled in %.1f ms"
EXTRA = {"user_id": "u-1234", "http.status_code": 200}


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per thread name of this process (Linux), without importing the benchmarks."""
    import threading

    ticks = os.sysconf("SC_CLK_TCK")
    names = {str(t.native_id): t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = names.get(tid) or stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(errors="replace")
        fields = stat[stat.rindex(b")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


class _RssPeak:
    """Samples this process's RSS every 20 ms (ru_maxrss is useless here: it starts at the host's size)."""

    def __init__(self) -> None:
        import threading

        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._rss()) - self.start


def main() -> int:
    mode, count, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    if len(sys.argv) > 4 and float(sys.argv[4]) > 0:
        sys.setswitchinterval(float(sys.argv[4]))  # an experiment knob; 0: Python's default
    from otel_plugin_logs import runner

    handler = runner.installed_handler()
    if handler is None:
        print(json.dumps({"error": "no handler installed"}), flush=True)
        return 2
    log = logging.getLogger("bench.plugin")
    log.setLevel(logging.INFO)
    log.info("warm-up")
    handler.wait_acked(30_000)
    print("ready", flush=True)
    if not sys.stdin.readline():
        return 1
    rss = _RssPeak()
    threads0 = _thread_cpu()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    if mode == "paced":
        interval = 1.0 / rate
        sleep = time.sleep
        monotonic = time.monotonic
        for i in range(count):
            delay = t0 + i * interval - monotonic()
            if delay > 0:
                sleep(delay)
            log.info(MESSAGE, i, 12.5, extra=EXTRA)
    else:
        info = log.info
        for i in range(count):
            info(MESSAGE, i, 12.5, extra=EXTRA)
    t1 = time.monotonic()
    cpu1 = time.process_time()
    # Send what is left now (as the handler's shutdown at exit would) so that the CPU the
    # sender thread spent is counted too.
    if os.environ.get("BENCH_WAIT_ACKED") == "1":  # experiment: settle everything before closing
        handler.wait_acked(30_000)
    sent = runner.uninstall(30_000)
    cpu2 = time.process_time()
    threads1 = _thread_cpu()
    print(
        json.dumps(
            {
                "emit_seconds": t1 - t0,
                "emit_cpu_seconds": cpu1 - cpu0,
                "sent_seconds": time.monotonic() - t0,
                "cpu_seconds": cpu2 - cpu0,
                "all_sent": sent,
                "peak_rss_growth_bytes": rss.stop(),
                "thread_cpu_seconds": {
                    **{name: round(value - threads0.get(name, 0.0), 3) for name, value in threads1.items()},
                    "exited threads (the sender)": round(
                        (cpu2 - cpu0)
                        - sum(value - threads0.get(name, 0.0) for name, value in threads1.items()),
                        3,
                    ),
                },
                "handler": handler.stats(),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
