"""``otel-plugin-logs logs`` on a big sink: records/s, MB/s and peak RSS, next to a baseline.

    .venv/bin/python -m benchmarks.logs                 # a 100 MB sink (about a minute to write)
    .venv/bin/python -m benchmarks.logs --megabytes 10  # quicker

The sink is written by the real ``FileSink`` (rotating at its default 100 MiB, so a 100 MB sink
is one file and 100+ MB is a file and its backup), with records shaped like the demo's: four
plugins, attributes, a trace id on a quarter of them, a stack trace on one in fifty, 256 records
per export request (one line). Each mode of ``logs`` then reads it in a fresh process, output
to /dev/null; its wall time and peak RSS (``wait4``) are measured, best of ``--repeat``. The
baseline, in the same run, is the least any reader of the sink does: ``json.loads`` of every
line in a plain loop. The children run without PYTHONUNBUFFERED and PYTHONDONTWRITEBYTECODE,
as in a user's shell (with them, start-up compiles every module and each write is a system call).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from otel_plugin_logs.export.file_sink import FileSink
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.otlp import Entry, ResourceInfo

PLUGINS = ("weather", "inventory", "payments", "crawler")
RECORDS_PER_LINE = 256
STACK = "".join(
    f'  File "/srv/plugin/app.py", line {n}, in handler_{n}\n    result = step_{n}(payload)\n'
    for n in range(8)
)
BASELINE = "import json, sys\nfor name in sys.argv[1:]:\n    for line in open(name, 'rb'):\n        json.loads(line)\n"


# As a user's shell runs it: buffered output, bytecode cached (a CI or container may set these).
CHILD_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE")}


@dataclass(frozen=True, slots=True)
class Measured:
    name: str
    cpu_seconds: float  # user + system of the reading process: what a shared machine does not blur
    wall_seconds: float
    peak_rss_mib: float


def write_sink(directory: Path, megabytes: float, seed: int = 1) -> tuple[int, int]:
    """(records, bytes) of a sink of about ``megabytes`` MB written by the real FileSink."""
    rng = random.Random(seed)
    resources = {
        name: ResourceInfo({"service.name": name, "plugin.name": name, "process.pid": 1000 + i})
        for i, name in enumerate(PLUGINS)
    }
    sink = FileSink(str(directory / "plugin-logs.otlp.jsonl"), 100 * 1024 * 1024, 5)
    target = int(megabytes * 1_000_000)
    written = records = 0
    now = time.time_ns() - 3_600_000_000_000
    while written < target:
        items = []
        for _ in range(RECORDS_PER_LINE):
            records += 1
            now += 1_000_000
            plugin = rng.choice(PLUGINS)
            attributes: dict[str, object] = {
                "code.file.path": f"/srv/{plugin}/app.py",
                "code.function.name": "handle",
                "code.line.number": rng.randrange(1, 400),
                "order_id": f"ord-{rng.randrange(10**6)}",
                "amount_eur": round(rng.uniform(1, 300), 2),
            }
            level, number = ("INFO", 9) if rng.random() < 0.9 else ("WARNING", 13)
            if records % 50 == 0:
                level, number = "ERROR", 17
                attributes["exception.type"] = "builtins.TimeoutError"
                attributes["exception.stacktrace"] = (
                    f"Traceback (most recent call last):\n{STACK}TimeoutError: late\n"
                )
            trace = rng.randbytes(16) if rng.random() < 0.25 else None
            entry = Entry(
                records,
                now,
                now,
                number,
                level,
                f"handled request {records} for {plugin} in {rng.uniform(1, 90):.1f} ms",
                f"{plugin}.http",
                attributes,
                trace,
                rng.randbytes(8) if trace else None,
                1 if trace else 0,
            )
            items.append(Item(resources[plugin], entry, None, 500))
        assert sink.export(items, 10.0).ok
        written = sum(path.stat().st_size for path in directory.iterdir())
    sink.shutdown()
    return records, written


def measure(name: str, argv: list[str], repeat: int) -> Measured:
    """Best CPU and wall times and the peak RSS of ``argv`` run ``repeat`` times, stdout to /dev/null."""
    best_cpu, best_wall, peak = float("inf"), float("inf"), 0.0
    for _ in range(repeat):
        with open(os.devnull, "wb") as devnull:
            started = time.perf_counter()
            process = subprocess.Popen(argv, stdout=devnull, stderr=subprocess.PIPE, env=CHILD_ENV)
            _, status, usage = os.wait4(process.pid, 0)
            elapsed = time.perf_counter() - started
        assert process.stderr is not None
        errors = process.stderr.read().decode("utf-8", "replace")
        process.stderr.close()
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"{name} failed ({process.returncode}): {errors[-2000:]}")
        best_cpu = min(best_cpu, usage.ru_utime + usage.ru_stime)
        best_wall = min(best_wall, elapsed)
        peak = max(peak, usage.ru_maxrss / 1024)  # KiB on Linux
    return Measured(name, best_cpu, best_wall, peak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.logs", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--megabytes", type=float, default=100.0, help="size of the sink to read (default 100)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each mode; the best is reported")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        directory = Path(tmp)
        records, size = write_sink(directory, args.megabytes)
        base = [sys.executable, "-m", "otel_plugin_logs", "logs", str(directory)]
        files = sorted(directory.iterdir(), key=lambda p: p.name, reverse=True)
        modes = [
            ("baseline: json.loads of every line", [sys.executable, "-c", BASELINE, *map(str, files)]),
            ("logs (console format)", base),
            ("logs --json", [*base, "--json"]),
            ("logs --stats", [*base, "--stats"]),
            ("logs --plugin payments --level ERROR", [*base, "--plugin", "payments", "--level", "ERROR"]),
            ("logs --grep timeouterror", [*base, "--grep", "timeouterror"]),
            ("logs -n 20", [*base, "-n", "20"]),
        ]
        results = [measure(name, command, args.repeat) for name, command in modes]
    print(
        f"sink: {size / 1e6:,.1f} MB, {records:,} records, {RECORDS_PER_LINE} per line; best of {args.repeat}"
    )
    print("records/s and MB/s per CPU second of the reading process (start-up included); wall time beside")
    print(
        f"{'mode':<40} {'CPU s':>7} {'wall s':>7} {'records/s':>11} {'MB/s':>7} {'peak RSS':>10} {'vs baseline':>11}"
    )
    baseline = results[0].cpu_seconds
    for result in results:
        cpu = result.cpu_seconds
        print(
            f"{result.name:<40} {cpu:>7.2f} {result.wall_seconds:>7.2f} {records / cpu:>11,.0f} "
            f"{size / 1e6 / cpu:>7.1f} {result.peak_rss_mib:>7.1f} MiB {cpu / baseline:>10.2f}x"
        )
    if args.json:
        figures = {
            "sink_bytes": size,
            "records": records,
            "modes": {
                r.name: {
                    "cpu_seconds": r.cpu_seconds,
                    "wall_seconds": r.wall_seconds,
                    "peak_rss_mib": r.peak_rss_mib,
                }
                for r in results
            },
        }
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
