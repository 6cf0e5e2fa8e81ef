"""Run the benchmarks of issue #7, print the table, write ``benchmarks/results/<timestamp>.json``.

    .venv/bin/python -m benchmarks                 # everything (~10 minutes on 2 cores)
    .venv/bin/python -m benchmarks --quick         # a small subset of every benchmark (~30 s)
    .venv/bin/python -m benchmarks --only emit,encode
    .venv/bin/python -m benchmarks --profile       # also profile one burst with py-spy (if installed)
    .venv/bin/python -m benchmarks --report benchmarks/results/latest.json   # print a saved table

Every measurement runs in a fresh interpreter; every figure is compared with a baseline
measured in the same run. The collector is rotel (from PyPI), started here on free loopback
ports with its blackhole exporter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import ROOT, Rotel, machine_facts, run_worker
from .profiling import run_stages
from .table import format_table, summarize
from .user import run_user

BENCHMARKS = ("user", "stages", "emit", "encode", "throughput", "latency", "scale")
RESULTS_DIR = ROOT / "benchmarks" / "results"


def _plan(quick: bool, repeat: int | None, records: int | None) -> dict[str, dict[str, Any]]:
    plan: dict[str, dict[str, Any]]
    if quick:
        plan = {
            "user": {
                "rounds": 3,
                "round_size": 2_000,
                "records": 3_000,
                "repeat": 1,
                "loss_records": 5_000,
                "startup_repeats": 3,
                "timeout_seconds": 90,
            },
            "stages": {"records": 1_000},
            "emit": {"round_size": 500, "rounds": 20},
            "encode": {"batch_records": 512, "repeats": 5},
            "throughput": {"records": 5_000, "repeat": 1},
            "latency": {"rate": 1000.0, "seconds": 1.5},
            "scale": {"runners": [1, 4, 16], "total_records": 4_800, "repeat": 1},
        }
    else:
        plan = {
            # Issue 15's goals as stated: 20,000-call rounds, 60,000- and 300,000-record bursts.
            "user": {
                "rounds": 11,
                "round_size": 20_000,
                "records": 60_000,
                "repeat": 3,
                "loss_records": 300_000,
                "startup_repeats": 15,
                "timeout_seconds": 300,
            },
            "stages": {"records": 20_000},
            "emit": {"round_size": 1000, "rounds": 150},
            "encode": {"batch_records": 512, "repeats": 30},
            "throughput": {"records": 50_000, "repeat": 3},
            "latency": {"rate": 1000.0, "seconds": 10.0},
            "scale": {"runners": [1, 4, 16, 50], "total_records": 48_000, "repeat": 2},
        }
    if repeat:
        plan["user"]["repeat"] = repeat
        plan["throughput"]["repeat"] = repeat
        plan["scale"]["repeat"] = repeat
    if records:
        plan["throughput"]["records"] = records
    return plan


def _progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    plan = _plan(args.quick, args.repeat, args.records)
    selected = [b for b in BENCHMARKS if b in args.only]
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "machine": machine_facts(),
        "plan": {name: plan[name] for name in selected},
    }
    needs_collector = (
        any(b in selected for b in ("user", "stages", "encode", "throughput", "latency", "scale"))
        or args.profile
    )
    # The per-request "Received logs ... logs=N" lines (basic verbosity) count what arrived.
    rotel = Rotel(debug_log=("logs",), debug_log_verbosity="basic").start() if needs_collector else None
    try:
        common: dict[str, Any] = {}
        if rotel is not None:
            common = {
                "grpc_endpoint": rotel.grpc_endpoint,
                "rotel_pid": rotel.pid,
                # A run whose records stop settling after the runners exited is cut short
                # (records were lost: see "uncounted") instead of waiting for its timeout.
                "stall_seconds": 5.0 if args.quick else 15.0,
            }
        # A failed process of these (run exiting with an error) is reported; the rest still runs.
        try:
            if "user" in selected:
                assert rotel is not None
                results["user"] = run_user(plan["user"], rotel, run_worker)
            if "stages" in selected:
                assert rotel is not None
                results["stages"] = run_stages(plan["stages"]["records"], rotel, Path(args.output_dir))
        except RuntimeError as error:
            _progress(f"FAILED: {str(error)[:500]}")
            results["errors"] = {"user/stages": str(error)[-4000:]}
        if "emit" in selected:
            _progress("emit: logging call through each handler (goal 1)")
            results["emit"] = run_worker("emit", plan["emit"])
        if "encode" in selected:
            _progress("encode: per-record cost of each stage, fast vs SDK encoder")
            assert rotel is not None
            results["encode"] = run_worker(
                "encode", {**plan["encode"], **common, "http_endpoint": rotel.http_endpoint}
            )
        if "throughput" in selected:
            spec = plan["throughput"]
            ours, sdk = [], []
            for index in range(spec["repeat"]):
                _progress(f"throughput {index + 1}/{spec['repeat']}: SDK pipeline, {spec['records']} records")
                sdk.append(run_worker("sdk", {**common, "records": spec["records"]}))
                _progress(
                    f"throughput {index + 1}/{spec['repeat']}: our pipeline, 1 runner, {spec['records']} records"
                )
                ours.append(
                    run_worker("host", {**common, "runners": 1, "records_per_runner": spec["records"]})
                )
            results["throughput"] = {"ours": ours, "sdk": sdk}
        if "latency" in selected:
            spec = plan["latency"]
            count = int(spec["rate"] * spec["seconds"])
            _progress(f"latency: {count} records at {spec['rate']:g}/s, SDK then ours")
            sdk_run = run_worker(
                "sdk", {**common, "records": count, "mode": "paced", "rate": spec["rate"], "latency": True}
            )
            ours_run = run_worker(
                "host",
                {
                    **common,
                    "runners": 1,
                    "records_per_runner": count,
                    "mode": "paced",
                    "rate": spec["rate"],
                    "latency": True,
                },
            )
            results["latency"] = {"ours": ours_run, "sdk": sdk_run}
        if "scale" in selected:
            spec = plan["scale"]
            scale: dict[str, list[dict[str, Any]]] = {}
            for index in range(spec["repeat"]):
                for runners in spec["runners"]:
                    per_runner = spec["total_records"] // runners
                    _progress(f"scale {index + 1}/{spec['repeat']}: {runners} runners x {per_runner} records")
                    scale.setdefault(str(runners), []).append(
                        run_worker("host", {**common, "runners": runners, "records_per_runner": per_runner})
                    )
            results["scale"] = scale
        if args.profile:
            profile_dir = tempfile.mkdtemp(prefix="otel-plugin-logs-profile-")
            records = plan["throughput"]["records"]
            _progress(f"profile: one burst of {records} records under py-spy (not a timed figure)")
            results["profile"] = {
                "ours": run_worker(
                    "host",
                    {**common, "runners": 1, "records_per_runner": records, "profile_dir": profile_dir},
                ).get("profiles"),
                "sdk": run_worker("sdk", {**common, "records": records, "profile_dir": profile_dir}).get(
                    "profiles"
                ),
            }
    finally:
        if rotel is not None:
            rotel.stop()
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["summary"] = summarize(results)
    return results


def save(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = directory / f"{stamp}{'-quick' if results['quick'] else ''}.json"
    text = json.dumps(results, indent=1, default=str)
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: every benchmark in well under a minute"
    )
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of: {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument("--repeat", type=int, help="runs of each throughput/scale figure (median taken)")
    parser.add_argument("--records", type=int, help="records of the throughput/burst runs (default 50000)")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one burst with py-spy (pip install py-spy)"
    )
    parser.add_argument("--output-dir", default=str(RESULTS_DIR), help="where the JSON results go")
    parser.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    parser.add_argument("--report", metavar="JSON", help="print the table of a saved result file and exit")
    args = parser.parse_args(argv)
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        saved["summary"] = summarize(saved)
        print(format_table(saved))
        return 0
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    results = run_all(args)
    print(format_table(results))
    if not args.no_save:
        path = save(results, Path(args.output_dir))
        print(f"\nresults: {path} (and latest.json)")
    return 0
