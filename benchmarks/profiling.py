"""A burst through ``otel-plugin-logs run`` under cProfile: a pstats file, its top entries, µs per stage.

    .venv/bin/python -m benchmarks profile                  # the host side (run), 60,000 records
    .venv/bin/python -m benchmarks profile --side runner    # the plugin: caller and sender threads
    .venv/bin/python -m benchmarks profile --records 20000 --top 40 --output /tmp/host.pstats

The profiled process runs under ``_profiled.py`` (every thread has its own profiler, merged at
the end). Stage figures are the cumulative time of the functions that enter each stage
(``STAGES``) divided by the records: cProfile adds a fixed cost to every Python call, so they
are inflated, the more so the more small calls a stage makes. Their shares are what to read;
the suite's ``stages`` rows measure the same stages unprofiled.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import PYTHON, ROOT, Rotel
from .user import PLUGIN, child_env, run_command, timed_process

WRAPPER = str(Path(__file__).resolve().parent / "_profiled.py")


@dataclass(frozen=True, slots=True)
class Entry:
    """A function that enters a stage: a fragment of its file's path and its name."""

    path: str
    function: str


@dataclass(frozen=True, slots=True)
class Stage:
    """The cumulative time of ``entries``, less that of ``minus`` (a nested stage shown on its own)."""

    entries: tuple[Entry, ...]
    minus: tuple[Entry, ...] = ()


_HANDLER = "otel_plugin_logs/runner/handler.py"
_ENCODING = "otel_plugin_logs/runner/encoding.py"
_CONSOLE = "otel_plugin_logs/cli/console.py"
# The functions that enter each stage, by side. The entries of one stage must not call each
# other; an entry that a refactor renamed or moved counts 0 (n/a when none matches).
STAGES: dict[str, dict[str, Stage]] = {
    "runner": {
        "caller: Logger.info, whole call": Stage((Entry("logging/__init__.py", "info"),)),
        "caller: the runner's capture": Stage((Entry(_HANDLER, "capture"),)),
        "sender: encode (records to wire)": Stage((Entry(_ENCODING, "build_frames"),)),
        "sender: send (socket, reply wait incl.)": Stage(
            (Entry("otel_plugin_logs/runner/transport.py", "send"),)
        ),
    },
    "host": {
        "decode (frames)": Stage((Entry("otel_plugin_logs/wire/framing.py", "decode_message"),)),
        "validate (pydantic)": Stage(
            (
                Entry("otel_plugin_logs/wire/validate.py", "validate_records"),
                Entry("pydantic/main.py", "model_validate"),
            )
        ),
        "build (entries)": Stage((Entry("otel_plugin_logs/host/entries.py", "build_entry"),)),
        "encode (protobuf)": Stage((Entry("otel_plugin_logs/export/otlp.py", "encode_request"),)),
        "export (gRPC call)": Stage((Entry("grpc/_channel.py", "__call__"),)),
        "replay (into logging, console excl.)": Stage(
            (
                Entry("otel_plugin_logs/host/replay.py", "replay"),
                Entry("otel_plugin_logs/host/replay.py", "replay_all"),
            ),
            minus=(Entry(_CONSOLE, "emit"),),
        ),
        "console (hold, format, write)": Stage((Entry(_CONSOLE, "emit"), Entry(_CONSOLE, "write"))),
    },
}


def _cumulative(table: dict[Any, Any], entries: tuple[Entry, ...]) -> tuple[float, bool]:
    total, matched = 0.0, False
    for (filename, _line, function), (_cc, _nc, _tt, cumulative, _callers) in table.items():
        if any(function == e.function and filename.endswith(e.path) for e in entries):
            total += cumulative
            matched = True
    return total, matched


def stage_micros(stats: pstats.Stats, side: str, records: int) -> dict[str, float | None]:
    """Cumulative µs per record of each stage (None: no entry matched)."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    out: dict[str, float | None] = {}
    for name, stage in STAGES[side].items():
        total, matched = _cumulative(table, stage.entries)
        total -= _cumulative(table, stage.minus)[0]
        out[name] = total / records * 1e6 if matched and records else None
    return out


def profile_side(side: str, records: int, rotel: Rotel, output: str) -> dict[str, Any]:
    """One burst through run, the host or the plugin profiled; returns stages and the file."""
    fd, result = tempfile.mkstemp(prefix="bench-profile-", suffix=".json")
    os.close(fd)
    plugin = [PYTHON, PLUGIN, "burst", result, str(records)]
    if side == "runner":
        plugin = [PYTHON, WRAPPER, output, PLUGIN, "burst", result, str(records)]
    host = (
        [*run_command(), "run"]
        if side == "runner"
        else [PYTHON, WRAPPER, output, "-m", "otel_plugin_logs", "run"]
    )
    argv = [*host, "--stats", "-p", "profiled", "--endpoint", rotel.grpc_endpoint, "--", *plugin]
    for stale in (output, output + ".threads"):
        if os.path.exists(stale):
            os.unlink(stale)
    try:
        finished = timed_process(argv, child_env(), result, 900.0)
    finally:
        os.unlink(result)
    figures: dict[str, Any] = {"side": side, "records": records, "hung": finished["timed_out"]}
    figures["notices"] = finished["notices"]
    if not os.path.exists(output):  # the profiled host was killed before it could write it
        return {**figures, "pstats": None, "threads": [], "stages_us_per_record": dict.fromkeys(STAGES[side])}
    stats = pstats.Stats(output)
    threads = Path(output + ".threads").read_text().split() if os.path.exists(output + ".threads") else []
    return {
        **figures,
        "pstats": output,
        "threads": threads,
        "stages_us_per_record": stage_micros(stats, side, records),
    }


def run_stages(records: int, rotel: Rotel, directory: Path) -> dict[str, Any]:
    """The suite's ``stages``: both sides profiled, one burst each; the pstats files stay."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for side in ("runner", "host"):
        print(
            f"[bench] stages: {side} side of a {records}-record burst under cProfile",
            file=sys.stderr,
            flush=True,
        )
        out[side] = profile_side(side, records, rotel, str(directory / f"profile-{side}.pstats"))
    return out


def top_entries(path: str, top: int) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(path, stream=buffer)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return buffer.getvalue()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks profile", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--side", choices=("host", "runner"), default="host")
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--top", type=int, default=30, help="entries printed, by cumulative and by own time")
    parser.add_argument("--output", help="the pstats file (default: benchmarks/results/profile-SIDE.pstats)")
    args = parser.parse_args(argv)
    output = args.output or str(ROOT / "benchmarks" / "results" / f"profile-{args.side}.pstats")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with Rotel() as rotel:
        figures = profile_side(args.side, args.records, rotel, output)
    if figures["pstats"] is None:
        print(f"the profiled run did not exit and was killed; its threads' stacks:\n{figures['notices']}")
        return 1
    print(top_entries(output, args.top))
    print(f"{args.side}: {args.records} records, threads profiled: {', '.join(figures['threads'])}")
    for stage, micros in figures["stages_us_per_record"].items():
        print(f"  {stage:<40} {'n/a' if micros is None else f'{micros:8.2f}'} us/record (profiled)")
    print(f"pstats: {output}  (python -m pstats {output})")
    return 0
