"""Goals 2-5: the whole pipeline to a real collector, ours and the OTel SDK's own.

``run_host``: this process is the host. A ``HostLogBridge`` exports over OTLP/gRPC to rotel
and replays into the host's logging (the ``plugin`` logger at INFO with one handler that
discards, so the replay's own cost counts). It spawns ``runners`` plugin processes
(``_plugin.py``; the handler is auto-installed as for any plugin), waits until each is
connected and warm, says ``go`` to all at once, and polls ``bridge.stats()`` until every
record is settled (``exported`` counts records whose export request the collector accepted;
dropped records are counted by reason). Throughput is records exported / (settled - go).

``run_sdk``: the baseline. One process: ``logging`` → the OTel ``LoggingHandler``
(opentelemetry-instrumentation-logging's, as ``opentelemetry-instrument`` installs it) →
``BatchLogRecordProcessor`` (SDK defaults) → the SDK's gRPC ``OTLPLogExporter`` → the same
rotel. Records are logged the same way; then ``force_flush``; the exporter is wrapped to count
the records of successful export calls. Records logged but never exported are its drops.

Both optionally stamp each record's latency: time of the successful export call's return
minus the record's own timestamp (``LogRecord.created``, carried as ``time_unix_nano``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import (
    cpu_delta,
    otel_logging_handler,
    percentile,
    process_cpu_seconds,
    rss_bytes,
    system_busy_seconds,
    thread_cpu_seconds,
)

PLUGIN_SCRIPT = str(Path(__file__).resolve().parent / "_plugin.py")
MESSAGE = "request %d handled in %.1f ms"
EXTRA = {"user_id": "u-1234", "http.status_code": 200}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds; ``peak`` is the highest seen."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.start_rss = rss_bytes()
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        return self.peak - self.start_rss


class Profiler:
    """py-spy on a process (sampling, all threads, does not pause the target), if installed."""

    def __init__(self, pid: int, output: str, rate: int = 250) -> None:
        self.output = output
        exe = Path(sys.executable).with_name("py-spy")
        argv = [str(exe), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
        argv += ["--output", output, "--nonblocking", "--threads"]
        self.process: subprocess.Popen[bytes] | None = None
        if exe.exists():
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)  # let it attach

    def stop(self) -> str | None:
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return None
        return self.output if os.path.exists(self.output) else None


def summarize_profile(path: str | None, top: int = 20) -> dict[str, Any] | None:
    """Self and inclusive shares per function, and per thread, from py-spy's raw output."""
    if path is None:
        return None
    self_counts: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            try:
                count = int(count_text)
            except ValueError:
                continue
            frames = stack.split(";")
            total += count
            thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
            if thread.startswith("process") and len(frames) > 1 and frames[1].startswith("thread"):
                thread = frames[1]
            threads[thread] = threads.get(thread, 0) + count
            functions = [f for f in frames if not f.startswith(("thread", "process"))]
            if not functions:
                continue
            leaf = functions[-1]
            self_counts[leaf] = self_counts.get(leaf, 0) + count
            for function in set(functions):
                inclusive[function] = inclusive.get(function, 0) + count
    if not total:
        return None
    by_function: dict[str, int] = {}
    for name, count in self_counts.items():
        function = re.sub(r":\d+\)$", ")", name)  # "f (file.py:12)" -> "f (file.py)"
        by_function[function] = by_function.get(function, 0) + count
    inclusive_by_function: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            try:
                count = int(count_text)
            except ValueError:
                continue
            unique = {
                re.sub(r":\d+\)$", ")", f)
                for f in stack.split(";")
                if not f.startswith(("thread", "process"))
            }
            for function in unique:
                inclusive_by_function[function] = inclusive_by_function.get(function, 0) + count

    def share(table: dict[str, int]) -> list[tuple[str, float]]:
        return [
            (name, round(count / total, 4))
            for name, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]
        ]

    return {
        "samples": total,
        "threads": share(threads),
        "self_by_function": share(by_function),
        "inclusive_by_function": share(inclusive_by_function),
        "self_by_line": share(self_counts),
    }


# --- our pipeline -------------------------------------------------------------------------------


class TimedSink:
    """Wraps a sink: for every record of a successful export, now - the record's own timestamp."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.description = f"timed {inner.description}"
        self.latencies_ns: list[int] = []

    def export(self, items: Sequence[Any], timeout_seconds: float) -> Any:
        outcome = self.inner.export(items, timeout_seconds)
        if outcome.ok:
            now = time.time_ns()
            append = self.latencies_ns.append
            for item in items:
                entry = item.entry
                if entry.seq > 1:  # 0: bridge notices and stderr lines; 1: the warm-up record
                    append(now - entry.time)
        return outcome

    def shutdown(self) -> None:
        self.inner.shutdown()


class _Discard(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        return None


def _read_line(stream: Any, timeout: float) -> bytes:
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else b""


def _stream_state(bridge: Any) -> list[dict[str, Any]]:
    """The bridge's private per-stream counters, to diagnose records that went uncounted."""
    out = []
    with bridge._lock:
        for plugin in bridge._plugins.values():
            for stream in plugin.streams.values():
                out.append(
                    {
                        "plugin": plugin.name,
                        **{
                            name: getattr(stream, name, None)
                            for name in (
                                "base",
                                "high",
                                "settled",
                                "acked",
                                "accepted",
                                "received",
                                "gap",
                                "closed",
                                "flushed",
                            )
                        },
                        "runner_dropped": dict(stream.runner_dropped),
                        "tickets": len(stream.tickets),
                        "conn": None
                        if stream.conn is None
                        else {"closed": stream.conn.closed, "said_bye": stream.conn.said_bye},
                    }
                )
    return out


def run_host(params: dict[str, Any]) -> dict[str, Any]:
    endpoint = params["grpc_endpoint"]
    runners = int(params.get("runners", 1))
    count = int(params.get("records_per_runner", 10_000))
    mode = params.get("mode", "burst")
    rate = float(params.get("rate", 1000.0))
    timeout = float(params.get("timeout", 300.0))
    stall_seconds = float(params.get("stall_seconds", 15.0))
    switch_interval = params.get("switch_interval")
    if switch_interval:
        sys.setswitchinterval(float(switch_interval))
    settings = dict(params.get("settings", {}))
    replay = bool(params.get("replay", True))
    rotel_pid = int(params.get("rotel_pid", 0))
    profile_dir = params.get("profile_dir")

    preload = params.get("preload")
    if preload:
        # Experiment hook: a file that patches the package in this host process, to measure a
        # proposed change without editing the package (see benchmarks/README.md).
        import runpy

        runpy.run_path(str(preload))

    from otel_plugin_logs import HostLogBridge
    from otel_plugin_logs.export.otlp_sinks import OtlpGrpcSink

    plugin_logger = logging.getLogger("plugin")
    plugin_logger.handlers[:] = [_Discard()]
    plugin_logger.setLevel(logging.INFO)
    plugin_logger.propagate = False

    timed = TimedSink(OtlpGrpcSink(endpoint)) if params.get("latency") else None
    bridge = HostLogBridge(
        otlp_endpoint=endpoint, exporter="otlp", sink=timed, replay=replay, **settings
    ).start()
    names = [f"bench{i:02d}" for i in range(runners)]
    runner_env = dict(os.environ)
    runner_env.update({str(k): str(v) for k, v in params.get("runner_env", {}).items()})
    processes = [
        bridge.spawn_plugin(
            name,
            [sys.executable, PLUGIN_SCRIPT, mode, str(count), str(rate), str(switch_interval or 0)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=runner_env,
        )
        for name in names
    ]
    result: dict[str, Any] = {
        "runners": runners,
        "records_per_runner": count,
        "mode": mode,
        "settings": settings,
        "runner_env": params.get("runner_env", {}),
    }
    try:
        for process in processes:
            line = _read_line(process.popen.stdout, 60)
            if line.strip() != b"ready":
                raise RuntimeError(f"runner {process.name} did not get ready: {line!r}")
        expected = runners * (count + 1)  # + the warm-up record of each runner
        sampler = RssSampler(0.025)
        profilers = []
        if profile_dir:
            profilers.append(("host", Profiler(os.getpid(), os.path.join(profile_dir, "host.txt"))))
            profilers.append(("runner", Profiler(processes[0].pid, os.path.join(profile_dir, "runner.txt"))))
        rotel_cpu0 = process_cpu_seconds(rotel_pid) if rotel_pid else float("nan")
        threads0 = thread_cpu_seconds()
        busy0 = system_busy_seconds()
        cpu0 = _own_cpu()
        t0 = time.monotonic()
        for process in processes:
            assert process.popen.stdin is not None
            process.popen.stdin.write(b"go\n")
            process.popen.stdin.flush()
        settled_at = None
        timeline: list[
            tuple[float, int, int, int]
        ] = []  # (seconds since go, received, settled, export queue)
        last_settled, last_progress, busy_at_progress = -1, time.monotonic(), busy0
        while time.monotonic() - t0 < timeout:
            stats = bridge.stats()
            settled = sum(p.exported + p.dropped_total for n, p in stats.plugins.items() if n in names)
            now = time.monotonic()
            if len(timeline) < 4000:
                received = sum(p.received for n, p in stats.plugins.items() if n in names)
                timeline.append((round(now - t0, 3), received, settled, stats.queue_records))
            if settled >= expected:
                settled_at = now
                break
            if settled != last_settled:
                last_settled, last_progress = settled, now
                busy_at_progress = system_busy_seconds()
            elif now - last_progress > stall_seconds and all(p.popen.poll() is not None for p in processes):
                break  # the runners are gone and nothing moved for a while: records were lost
            time.sleep(0.01)
        cpu1 = _own_cpu()
        # An incomplete run is timed to its last progress; so is the machine's busy time.
        busy1 = system_busy_seconds() if settled_at is not None else busy_at_progress
        threads1 = thread_cpu_seconds()
        rotel_cpu1 = process_cpu_seconds(rotel_pid) if rotel_pid else float("nan")
        profiles = {name: summarize_profile(profiler.stop()) for name, profiler in profilers}
        rss_growth = sampler.stop()
        emit_phases = []
        for process in processes:
            line = _read_line(process.popen.stdout, 30)
            try:
                emit_phases.append(json.loads(line))
            except ValueError:
                emit_phases.append({})
        for process in processes:
            process.wait(30)
        stats = bridge.stats()
        # An incomplete run (records lost, see "uncounted") is timed to its last progress.
        elapsed = (settled_at or last_progress) - t0
        plugins = [stats.plugins[name] for name in names if name in stats.plugins]
        exported = sum(p.exported for p in plugins) - runners  # without the warm-up records
        dropped: dict[str, int] = {}
        for plugin in plugins:
            for reason, number in plugin.dropped.items():
                dropped[reason] = dropped.get(reason, 0) + number
        emit_seconds = max(
            (phase.get("emit_seconds", float("nan")) for phase in emit_phases), default=float("nan")
        )
        runner_cpu = sum(phase.get("cpu_seconds", float("nan")) for phase in emit_phases)
        ours_cpu = (cpu1 - cpu0) + runner_cpu + (rotel_cpu1 - rotel_cpu0 if rotel_pid else 0.0)
        result.update(
            {
                "complete": settled_at is not None,
                "elapsed_seconds": elapsed,
                "emitted": sum(p.emitted for p in plugins) - runners,
                "exported": exported,
                "dropped": dropped,
                "uncounted": sum(p.uncounted for p in plugins),
                "pending": sum(p.pending for p in plugins),
                "records_per_second": exported / elapsed if elapsed > 0 else float("nan"),
                "emit_seconds": emit_seconds,
                "emit_records_per_second": count / emit_seconds if emit_seconds else float("nan"),
                "runner_sent_seconds": max(
                    (phase.get("sent_seconds", float("nan")) for phase in emit_phases), default=float("nan")
                ),
                "runner_handler_stats": [phase.get("handler", {}) for phase in emit_phases][:4],
                "runner_peak_rss_growth_bytes": max(
                    (phase.get("peak_rss_growth_bytes", 0) for phase in emit_phases), default=0
                ),
                "host_cpu_seconds": cpu1 - cpu0,
                "host_cpu_us_per_record": (cpu1 - cpu0) / max(1, exported) * 1e6,
                "host_thread_cpu_seconds": cpu_delta(threads0, threads1),
                "runner_thread_cpu_seconds": emit_phases[0].get("thread_cpu_seconds", {})
                if emit_phases
                else {},
                "runner_cpu_us_per_record": runner_cpu / max(1, exported) * 1e6,
                "collector_cpu_us_per_record": (rotel_cpu1 - rotel_cpu0) / max(1, exported) * 1e6,
                "machine_busy_seconds": busy1 - busy0,
                "other_processes_cpu_seconds": max(0.0, (busy1 - busy0) - ours_cpu),
                "host_rss_growth_bytes": rss_growth,
                "host_rss_start_bytes": sampler.start_rss,
                "rss_bound_bytes": bridge.config.export_max_queue_bytes,
                "profiles": profiles,
                "bridge_stats": stats.as_dict(),
                "timeline": timeline[:: max(1, len(timeline) // 100)],
            }
        )
        if result["uncounted"]:
            result["debug_streams"] = _stream_state(bridge)
        if timed is not None:
            latencies = [x / 1e6 for x in timed.latencies_ns]
            result["latency_ms"] = {
                "count": len(latencies),
                "p50": percentile(latencies, 0.50),
                "p99": percentile(latencies, 0.99),
                "max": max(latencies) if latencies else float("nan"),
            }
    finally:
        for process in processes:
            process.kill()
        bridge.shutdown(10_000)
    return result


# --- the SDK's own pipeline (baseline) ------------------------------------------------------------


def run_sdk(params: dict[str, Any]) -> dict[str, Any]:
    endpoint = params["grpc_endpoint"]
    count = int(params.get("records", 10_000))
    mode = params.get("mode", "burst")
    rate = float(params.get("rate", 1000.0))
    rotel_pid = int(params.get("rotel_pid", 0))
    profile_dir = params.get("profile_dir")

    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
    from opentelemetry.sdk.resources import Resource

    class Counting:
        """The SDK's gRPC exporter, counting (and timing) the records of successful exports."""

        def __init__(self, inner: Any, latency: bool) -> None:
            self.inner = inner
            self.exported = 0
            self.failed_calls = 0
            self.latency = latency
            self.latencies_ns: list[int] = []

        def export(self, batch: Sequence[Any]) -> Any:
            result = self.inner.export(batch)
            if result == LogRecordExportResult.SUCCESS:
                self.exported += len(batch)
                if self.latency:
                    now = time.time_ns()
                    for record in batch:
                        stamp = record.log_record.timestamp
                        if record.log_record.body != "warm-up" and stamp:
                            self.latencies_ns.append(now - stamp)
            else:
                self.failed_calls += 1
            return result

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            self.inner.shutdown(timeout_millis=timeout_millis)

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return True

    # The SDK warns "Queue full, dropping" on its own logger; keep that off the console.
    logging.getLogger("opentelemetry").addHandler(logging.NullHandler())
    logging.getLogger("opentelemetry").propagate = False
    exporter = Counting(OTLPLogExporter(endpoint=endpoint, insecure=True), bool(params.get("latency")))
    provider = LoggerProvider(resource=Resource({"service.name": "bench-sdk"}), shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))  # type: ignore[arg-type]
    handler = otel_logging_handler(provider)
    log = logging.getLogger("bench.plugin")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    log.info("warm-up")
    provider.force_flush()
    exporter.exported = 0

    sampler = RssSampler()
    profiler = Profiler(os.getpid(), os.path.join(profile_dir, "sdk.txt")) if profile_dir else None
    rotel_cpu0 = process_cpu_seconds(rotel_pid) if rotel_pid else float("nan")
    busy0 = system_busy_seconds()
    cpu0 = _own_cpu()
    t0 = time.monotonic()
    if mode == "paced":
        interval = 1.0 / rate
        for i in range(count):
            delay = t0 + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            log.info(MESSAGE, i, 12.5, extra=EXTRA)
    else:
        info = log.info
        for i in range(count):
            info(MESSAGE, i, 12.5, extra=EXTRA)
    t_emitted = time.monotonic()
    provider.force_flush()
    t_done = time.monotonic()
    cpu1 = _own_cpu()
    busy1 = system_busy_seconds()
    rotel_cpu1 = process_cpu_seconds(rotel_pid) if rotel_pid else float("nan")
    profile = summarize_profile(profiler.stop()) if profiler is not None else None
    rss_growth = sampler.stop()
    provider.shutdown()
    elapsed = t_done - t0
    exported = exporter.exported
    result: dict[str, Any] = {
        "mode": mode,
        "records": count,
        "complete": True,
        "elapsed_seconds": elapsed,
        "emitted": count,
        "exported": exported,
        "dropped": {"sdk_silent": count - exported} if count - exported else {},
        "failed_export_calls": exporter.failed_calls,
        "records_per_second": exported / elapsed if elapsed > 0 else float("nan"),
        "emit_seconds": t_emitted - t0,
        "emit_records_per_second": count / (t_emitted - t0),
        "host_cpu_seconds": cpu1 - cpu0,
        "host_cpu_us_per_record": (cpu1 - cpu0) / max(1, exported) * 1e6,
        "collector_cpu_us_per_record": (rotel_cpu1 - rotel_cpu0) / max(1, exported) * 1e6,
        "machine_busy_seconds": busy1 - busy0,
        "other_processes_cpu_seconds": max(
            0.0, (busy1 - busy0) - (cpu1 - cpu0) - (rotel_cpu1 - rotel_cpu0 if rotel_pid else 0.0)
        ),
        "host_rss_growth_bytes": rss_growth,
        "profiles": {"sdk": profile} if profile else {},
    }
    if params.get("latency"):
        latencies = [x / 1e6 for x in exporter.latencies_ns]
        result["latency_ms"] = {
            "count": len(latencies),
            "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies) if latencies else float("nan"),
        }
    return result
