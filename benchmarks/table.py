"""The table of a run: one row per figure, each against its same-run baseline; and its text form."""

from __future__ import annotations

import math
from typing import Any

from ._common import median, ratio
from .user_table import summarize_stages, summarize_user


def _median_of(runs: list[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in runs if r.get(key) is not None and not math.isnan(float(r[key]))]
    return median(values) if values else float("nan")


def _best_of(runs: list[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in runs if r.get(key) is not None and not math.isnan(float(r[key]))]
    return max(values) if values else float("nan")


# --- the table ------------------------------------------------------------------------------------


def _row(
    rows: list[dict[str, Any]],
    section: str,
    figure: str,
    value: float,
    unit: str,
    baseline: float | None = None,
    baseline_label: str = "",
    goal: str = "",
    met: bool | None = None,
) -> None:
    rows.append(
        {
            "section": section,
            "figure": figure,
            "value": value,
            "unit": unit,
            "baseline": baseline,
            "baseline_label": baseline_label,
            "ratio": ratio(value, baseline) if baseline else None,
            "goal": goal,
            "met": met,
        }
    )


def _emit_rows(results: dict[str, Any], rows: list[dict[str, Any]], goals: dict[str, Any]) -> None:
    emit = results.get("emit")
    if emit:
        variants = emit["variants"]
        order = [
            "tuple_deque",
            "pydantic",
            "queue_handler",
            "otel_sdk_handler",
            "runner",
            "runner_span",
            "capture_hook",
            "runner_capture",
            "runner_capture_span",
            "runner_default",
            "runner_stalled",
        ]
        base = variants["baseline"]["median_ns"]
        _row(rows, "1 emit", "logger.info, do-nothing handler", base / 1000, "us/call")
        for name in order:
            v = variants.get(name)
            if v is None:
                continue  # a saved run from before this variant existed
            goal, met = "", None
            if name == "runner_span":
                goal, met = "<= 1.25x", v["ratio"] <= 1.25
                goals["1_emit_overhead"] = {"ratio": v["ratio"], "target": 1.25, "met": met}
            _row(
                rows,
                "1 emit",
                v["label"],
                v["median_ns"] / 1000,
                "us/call",
                v["baseline_median_ns"] / 1000,
                "do-nothing handler" + (" (span)" if v["span"] else ""),
                goal,
                met,
            )


def _throughput_rows(results: dict[str, Any], rows: list[dict[str, Any]], goals: dict[str, Any]) -> None:
    throughput = results.get("throughput")
    if throughput:
        ours, sdk = throughput["ours"], throughput["sdk"]
        ours_rate, sdk_rate = _median_of(ours, "records_per_second"), _median_of(sdk, "records_per_second")
        met = ratio(ours_rate, sdk_rate) >= 5
        goals["2_throughput"] = {
            "ours": ours_rate,
            "sdk": sdk_rate,
            "ratio": ratio(ours_rate, sdk_rate),
            "ours_best": _best_of(ours, "records_per_second"),
            "sdk_best": _best_of(sdk, "records_per_second"),
            "target": 5.0,
            "met": met,
        }
        _row(
            rows,
            "2 throughput",
            "records/s exported, 1 runner (median)",
            ours_rate,
            "rec/s",
            sdk_rate,
            "SDK pipeline",
            ">= 5x",
            met,
        )
        _row(
            rows,
            "2 throughput",
            "records/s exported, best run",
            _best_of(ours, "records_per_second"),
            "rec/s",
            _best_of(sdk, "records_per_second"),
            "SDK pipeline, best run",
        )
        _row(
            rows,
            "2 throughput",
            "host CPU per record",
            _median_of(ours, "host_cpu_us_per_record"),
            "us",
            _median_of(sdk, "host_cpu_us_per_record"),
            "SDK process CPU per record",
        )
        _row(
            rows,
            "2 throughput",
            "runner CPU per record (emit + sender)",
            _median_of(ours, "runner_cpu_us_per_record"),
            "us",
        )
        _row(
            rows,
            "2 throughput",
            "collector CPU per record",
            _median_of(ours, "collector_cpu_us_per_record"),
            "us",
            _median_of(sdk, "collector_cpu_us_per_record"),
            "with the SDK pipeline",
        )
        # Goal 3 from the same runs: one runner, default settings, the whole burst.
        worst = max(ours, key=lambda r: sum(r["dropped"].values()))
        sdk_worst = max(sdk, key=lambda r: sum(r["dropped"].values()))
        dropped = sum(worst["dropped"].values())
        silent = max(r.get("uncounted", 0) for r in ours)  # lost without a count, worst run
        silent_runs = sum(1 for r in ours if r.get("uncounted", 0))
        rss_growth = max(r["host_rss_growth_bytes"] for r in ours)
        rss_ok = rss_growth < worst["rss_bound_bytes"]
        met3 = silent == 0 and rss_ok
        goals["3_burst"] = {
            "records": worst["records_per_runner"],
            "emitted": worst["emitted"],
            "exported": worst["exported"],
            "dropped": worst["dropped"],
            "uncounted": worst.get("uncounted", 0),
            "uncounted_max": silent,
            "runs_with_uncounted": silent_runs,
            "runs": len(ours),
            "rss_growth_bytes": rss_growth,
            "rss_bound_bytes": worst["rss_bound_bytes"],
            "sdk_emitted": sdk_worst["emitted"],
            "sdk_exported": sdk_worst["exported"],
            "sdk_dropped": sdk_worst["dropped"],
            "met_no_silent_drop": met3,
            "met_no_drop_at_all": dropped == 0 and met3,
        }
        n = worst["records_per_runner"]
        _row(
            rows,
            "3 burst",
            f"{n}-record burst: exported (run with most drops)",
            worst["exported"],
            "records",
            sdk_worst["exported"],
            "SDK exported",
        )
        drop_text = ", ".join(f"{k}={v}" for k, v in sorted(worst["dropped"].items())) or "none"
        _row(
            rows,
            "3 burst",
            f"dropped, counted by reason: {drop_text}",
            dropped,
            "records",
            sum(sdk_worst["dropped"].values()),
            "SDK dropped (silently)",
            "0 (ideal)",
            dropped == 0,
        )
        _row(
            rows,
            "3 burst",
            f"lost without a count, worst of {len(ours)} runs ({silent_runs} had some)",
            silent,
            "records",
            goal="0",
            met=silent == 0,
        )
        _row(
            rows,
            "3 burst",
            "host RSS growth during the burst",
            rss_growth / 2**20,
            "MiB",
            worst["rss_bound_bytes"] / 2**20,
            "configured export queue bound",
            "< bound",
            rss_ok,
        )
        _row(
            rows,
            "3 burst",
            "SDK process RSS growth during the burst",
            sdk_worst["host_rss_growth_bytes"] / 2**20,
            "MiB",
        )
        _row(
            rows,
            "3 burst",
            "runner RSS growth (its queue holds the backlog)",
            max(r.get("runner_peak_rss_growth_bytes", 0) for r in ours) / 2**20,
            "MiB",
        )


def _noise_rows(results: dict[str, Any], rows: list[dict[str, Any]], goals: dict[str, Any]) -> None:
    timed_runs = [
        *results.get("throughput", {}).get("ours", []),
        *results.get("throughput", {}).get("sdk", []),
    ]
    for runs in results.get("scale", {}).values():
        timed_runs.extend(runs)
    if timed_runs:
        other = sum(r.get("other_processes_cpu_seconds", 0.0) for r in timed_runs)
        wall = sum(r.get("elapsed_seconds", 0.0) for r in timed_runs)
        capacity = wall * (results["machine"]["cpus_usable"] or 1)
        goals["noise"] = {
            "other_processes_cpu_seconds": other,
            "timed_seconds": wall,
            "capacity_seconds": capacity,
        }
        _row(
            rows,
            "noise",
            "CPU used by other processes during timed runs",
            other,
            "s",
            capacity,
            "CPU seconds the machine had",
        )


def _latency_rows(results: dict[str, Any], rows: list[dict[str, Any]], goals: dict[str, Any]) -> None:
    latency = results.get("latency")
    if latency:
        ours_l, sdk_l = latency["ours"].get("latency_ms", {}), latency["sdk"].get("latency_ms", {})
        goals["4_latency"] = {"ours": ours_l, "sdk": sdk_l}
        rate = results["plan"]["latency"]["rate"]
        for key in ("p50", "p99"):
            _row(
                rows,
                "4 latency",
                f"emit -> collector ack {key} at {rate:g} rec/s",
                ours_l.get(key, float("nan")),
                "ms",
                sdk_l.get(key, float("nan")),
                "SDK pipeline",
            )
        dropped_l = sum(latency["ours"]["dropped"].values())
        _row(
            rows,
            "4 latency",
            "records dropped",
            dropped_l,
            "records",
            sum(latency["sdk"]["dropped"].values()),
            "SDK dropped",
        )


def _scale_rows(results: dict[str, Any], rows: list[dict[str, Any]], goals: dict[str, Any]) -> None:
    scale = results.get("scale")
    if scale:
        one = median([r["records_per_second"] for r in scale.get("1", [])]) if "1" in scale else float("nan")
        one_cpu = (
            median([r["host_cpu_us_per_record"] for r in scale.get("1", [])])
            if "1" in scale
            else float("nan")
        )
        sdk_rate = goals.get("2_throughput", {}).get("sdk")
        goals["5_scale"] = {}
        for runners, runs in scale.items():
            rate_k = median([r["records_per_second"] for r in runs])
            cpu_k = median([r["host_cpu_us_per_record"] for r in runs])
            runner_cpu_k = median([r["runner_cpu_us_per_record"] for r in runs])
            drops = sum(sum(r["dropped"].values()) for r in runs)
            lost = sum(r.get("uncounted", 0) for r in runs)
            goals["5_scale"][runners] = {
                "records_per_second": rate_k,
                "host_cpu_us_per_record": cpu_k,
                "runner_cpu_us_per_record": runner_cpu_k,
                "dropped": drops,
                "uncounted": lost,
                "vs_sdk": ratio(rate_k, sdk_rate) if sdk_rate else None,
            }
            _row(rows, "5 scale", f"{runners:>2} runner(s): records/s", rate_k, "rec/s", one, "1 runner")
            if sdk_rate:
                _row(
                    rows,
                    "5 scale",
                    f"{runners:>2} runner(s): records/s vs SDK",
                    rate_k,
                    "rec/s",
                    sdk_rate,
                    "SDK pipeline",
                )
            _row(
                rows,
                "5 scale",
                f"{runners:>2} runner(s): host CPU per record",
                cpu_k,
                "us",
                one_cpu,
                "1 runner",
            )
            _row(rows, "5 scale", f"{runners:>2} runner(s): runner CPU per record", runner_cpu_k, "us")
            if drops:
                _row(
                    rows, "5 scale", f"{runners:>2} runner(s): dropped (counted), all runs", drops, "records"
                )
            if lost:
                _row(
                    rows,
                    "5 scale",
                    f"{runners:>2} runner(s): lost without a count, all runs",
                    lost,
                    "records",
                )


def _encoder_rows(results: dict[str, Any], rows: list[dict[str, Any]], goals: dict[str, Any]) -> None:
    encode = results.get("encode")
    if encode:
        stages = encode["stages_ns_per_record"]
        fast, sdk_encode = stages["host_encode_fast"], stages["sdk_encode"]
        goals["encoder"] = {"fast_ns": fast, "sdk_ns": sdk_encode, "speedup": ratio(sdk_encode, fast)}
        _row(
            rows,
            "encoder",
            "encode_request (fast path)",
            fast / 1000,
            "us/record",
            sdk_encode / 1000,
            "SDK build+encode_logs+serialize",
        )
        if "sink_grpc_fast" in stages:
            _row(
                rows,
                "encoder",
                "OtlpGrpcSink.export to rotel",
                stages["sink_grpc_fast"] / 1000,
                "us/record",
                stages["sink_grpc_sdk"] / 1000,
                "SdkExporterSink(gRPC exporter)",
            )
        if "sink_http_fast" in stages:
            _row(
                rows, "encoder", "OtlpHttpSink.export to rotel", stages["sink_http_fast"] / 1000, "us/record"
            )
        labels = {
            "runner_to_wire_msgpack": "runner sender: _to_wire + msgpack",
            "host_decode_msgpack": "host: decode frame (msgpack)",
            "host_validate_pydantic": "host: validate (pydantic)",
            "host_build_entry": "host: build_entry",
            "host_replay": "host: replay into logging",
            "host_encode_fast": "host: encode_request",
        }
        for key, label in labels.items():
            _row(rows, "stages", label, stages[key] / 1000, "us/record")


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    goals: dict[str, Any] = {}
    if results.get("user"):
        summarize_user(results["user"], lambda *a, **k: _row(rows, *a, **k), goals)
    if results.get("stages"):
        summarize_stages(results["stages"], lambda *a, **k: _row(rows, *a, **k), goals)
    _emit_rows(results, rows, goals)
    _throughput_rows(results, rows, goals)
    _noise_rows(results, rows, goals)
    _latency_rows(results, rows, goals)
    _scale_rows(results, rows, goals)
    _encoder_rows(results, rows, goals)
    return {"rows": rows, "goals": goals}


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = machine["versions"]
    lines = [
        f"otel-plugin-logs benchmarks  {results['started']}  {'quick' if results['quick'] else 'full'} run",
        f"machine: {machine['cpu_count']} CPUs ({machine['cpus_usable']} usable), {machine['cpu_model']}, "
        f"load {machine['load_average_at_start']}",
        f"python {machine['python']}  otel-plugin-logs {versions['otel-plugin-logs']} (commit {machine['git_commit']}"
        f"{', modified' if machine['package_dirty'] else ''})  opentelemetry-sdk {versions['opentelemetry-sdk']}  "
        f"grpcio {versions['grpcio']}  protobuf {versions['protobuf']}  pydantic {versions['pydantic']}  "
        f"msgpack {versions['msgpack']}  rotel {versions['rotel']}",
        "",
    ]
    header = ("section", "figure", "value", "unit", "baseline (same run)", "", "ratio", "goal", "met")
    table = [header]
    for row in results["summary"]["rows"]:
        met = "" if row["met"] is None else ("yes" if row["met"] else "NO")
        table.append(
            (
                row["section"],
                row["figure"],
                _fmt(row["value"]),
                row["unit"],
                row["baseline_label"],
                _fmt(row["baseline"]),
                "" if row["ratio"] is None else f"{row['ratio']:.2f}x",
                row["goal"],
                met,
            )
        )
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    right = {2, 5, 6}
    for index, row in enumerate(table):
        cells = [
            str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    for name, error in results.get("errors", {}).items():
        lines += ["", f"FAILED: {name}:", error]
    profile = results.get("profile")
    if profile:
        lines.append("")
        lines.append("profiles (py-spy, share of samples; not timed figures):")
        for who, profiles in profile.items():
            for name, data in (profiles or {}).items():
                if not data:
                    continue
                lines.append(
                    f"  {who}/{name}: {data['samples']} samples; threads: "
                    + ", ".join(f"{t} {s:.0%}" for t, s in data["threads"][:5])
                )
                for function, share in data["self_by_function"][:12]:
                    lines.append(f"      self {share:6.1%}  {function}")
    return "\n".join(lines)
