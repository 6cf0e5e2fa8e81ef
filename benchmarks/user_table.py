"""The table rows of issue 15's goals (``benchmarks/user.py``'s figures), each against its same-run baseline."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._common import median, ratio

Row = Callable[..., None]


def _median(runs: list[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in runs if r.get(key) is not None and not math.isnan(float(r[key]))]
    return median(values)


def _emit(user: dict[str, Any], row: Row, goals: dict[str, Any]) -> None:
    insitu = user["insitu"]
    size = insitu["round_size"]
    wall, cpu = insitu["wall_ratio"], insitu["cpu_ratio"]
    goals["g1_emit_in_situ"] = {
        "wall_ratio": wall,
        "wall_ratio_paired_median": insitu["wall_ratio_paired_median"],
        "cpu_ratio": cpu,
        "wall_target": 1.25,
        "cpu_target": 1.5,
        "met": wall <= 1.25 and cpu <= 1.5,
    }
    section = "G1 emit in situ"
    label = f"under run, {size}-call rounds x {insitu['rounds']}: wall per call"
    base_label = "do-nothing handler, same plugin"
    row(
        section,
        label,
        insitu["runner_wall_us_per_call"],
        "us/call",
        insitu["baseline_wall_us_per_call"],
        base_label,
        "<= 1.25x",
        wall <= 1.25,
    )
    row(
        section,
        "runner process CPU per record (sender included)",
        insitu["runner_cpu_us_per_record"],
        "us",
        insitu["baseline_cpu_us_per_record"],
        base_label,
        "<= 1.5x",
        cpu <= 1.5,
    )


def _throughput(user: dict[str, Any], row: Row, goals: dict[str, Any]) -> None:
    runs = user["throughput"]
    sdk_rate = _median(runs["sdk"], "records_per_second")
    section = "G2 throughput"
    records = runs["sdk"][0]["records"] if runs["sdk"] else 0
    complete = all(r["complete"] for kind in runs.values() for r in kind)
    goals["g2_throughput"] = {"sdk": sdk_rate, "target": 5.0, "all_complete": complete}
    for name, label in (("console_on", "console on"), ("console_off", "console off (--level WARNING)")):
        rate = _median(runs[name], "records_per_second")
        met = ratio(rate, sdk_rate) >= 5 and complete
        goals["g2_throughput"][name] = {
            "records_per_second": rate,
            "ratio": ratio(rate, sdk_rate),
            "met": met,
        }
        row(
            section,
            f"{records} records via run, {label}: first record -> exit",
            rate,
            "rec/s",
            sdk_rate,
            "SDK pipeline (BLRP, gRPC)",
            ">= 5x" if name == "console_on" else "",
            met,
        )
    worst = min(
        (r["collector_received"] - 1 for kind in ("console_on", "console_off") for r in runs[kind]), default=0
    )
    sdk_worst = min((r["collector_received"] - 1 for r in runs["sdk"]), default=0)
    row(
        section,
        "records the collector received, worst run",
        float(worst),
        "records",
        float(sdk_worst),
        "SDK pipeline, worst run",
        f"= {records}",
        complete,
    )
    row(
        section,
        "runner CPU per record in the burst (console on)",
        _median(runs["console_on"], "runner_cpu_us_per_record"),
        "us",
        _median(runs["sdk"], "runner_cpu_us_per_record"),
        "SDK process CPU per record",
    )


def _loss(user: dict[str, Any], row: Row, goals: dict[str, Any]) -> None:
    loss, bounds = user["loss"], user["bounds"]
    stats = loss.get("stats", {})
    dropped = int(stats.get("dropped", -1))
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(stats.get("dropped_by_reason", {}).items())) or "none"
    host_bound = float(bounds.get("export_max_queue_bytes", 0)) or None
    runner_bound = float(bounds.get("runner_max_queue_bytes", 0)) or None
    host_ok = host_bound is not None and loss["host_rss_growth_bytes"] < host_bound
    runner_ok = runner_bound is not None and loss["runner_rss_growth_bytes"] < runner_bound
    goals["g3_zero_loss"] = {
        "records": loss["records"],
        "dropped": dropped,
        "dropped_by_reason": stats.get("dropped_by_reason", {}),
        "collector_received": loss["collector_received"],
        "host_rss_growth_bytes": loss["host_rss_growth_bytes"],
        "runner_rss_growth_bytes": loss["runner_rss_growth_bytes"],
        "met": dropped == 0 and loss["complete"] and host_ok and runner_ok,
    }
    section = "G3 zero loss"
    n = loss["records"]
    row(
        section,
        f"{n}-record burst via run, defaults: dropped ({reasons})",
        float(dropped),
        "records",
        goal="0",
        met=dropped == 0,
    )
    row(
        section,
        "records the collector received",
        float(loss["collector_received"] - 1),
        "records",
        float(n),
        "records logged",
        f"= {n}",
        loss["complete"],
    )
    row(
        section,
        "host (run) peak RSS growth",
        loss["host_rss_growth_bytes"] / 2**20,
        "MiB",
        (host_bound or math.nan) / 2**20,
        "export_max_queue_bytes",
        "< bound",
        host_ok,
    )
    row(
        section,
        "runner peak RSS growth",
        loss["runner_rss_growth_bytes"] / 2**20,
        "MiB",
        (runner_bound or math.nan) / 2**20,
        "runner max_queue_bytes",
        "< bound",
        runner_ok,
    )


def _startup(user: dict[str, Any], row: Row, goals: dict[str, Any]) -> None:
    start = user["startup"]
    added = start["added_start_millis"]
    exits = [r["exit_after_acked_millis"] for r in user["throughput"]["console_on"]]
    exit_millis = median(exits)
    goals["g4_startup_exit"] = {
        "added_start_millis": added,
        "exit_after_acked_millis": exit_millis,
        "met": added <= 25 and exit_millis <= 50,
    }
    section = "G4 start, exit"
    row(
        section,
        f"trivial plugin: start -> its first line (added {added:.0f} ms)",
        start["auto_install_start_millis"],
        "ms",
        start["plain_start_millis"],
        "same command, no auto-install",
        "<= +25 ms",
        added <= 25,
    )
    row(
        section,
        "trivial plugin: start -> exit (one record sent and acked)",
        start["auto_install_whole_millis"],
        "ms",
        start["plain_whole_millis"],
        "same command, no auto-install",
    )
    row(
        section,
        "run's exit after its last record was acknowledged",
        exit_millis,
        "ms",
        goal="<= 50 ms",
        met=exit_millis <= 50,
    )
    hung = sum(1 for kind in user["throughput"].values() for r in kind if r.get("timed_out"))
    hung += 1 if user.get("loss", {}).get("timed_out") else 0
    row(
        section,
        "bursts whose run did not exit (killed at the timeout)",
        float(hung),
        "runs",
        goal="0",
        met=hung == 0,
    )


def summarize_user(user: dict[str, Any], row: Row, goals: dict[str, Any]) -> None:
    """Adds the rows of issue 15's goals 1-4 (each part only if it was measured)."""
    for part, function in (("insitu", _emit), ("throughput", _throughput), ("loss", _loss)):
        if part in user:
            function(user, row, goals)
    if "startup" in user and "throughput" in user:
        _startup(user, row, goals)


def summarize_stages(stages: dict[str, Any], row: Row, goals: dict[str, Any]) -> None:
    """Per-stage µs per record of a profiled burst (cProfile: inflated; read the shares)."""
    goals["g6_stages"] = {side: data["stages_us_per_record"] for side, data in stages.items()}
    for side, data in stages.items():
        section = f"G6 stages {side}"
        if data.get("hung"):
            row(
                section,
                "the profiled run did not exit (killed; see notices)",
                1.0,
                "runs",
                goal="0",
                met=False,
            )
        for stage, micros in data["stages_us_per_record"].items():
            value = math.nan if micros is None else micros
            row(section, f"{stage} (cProfile, {data['records']} rec)", value, "us/record")
