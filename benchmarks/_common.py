"""Shared pieces: statistics, machine facts, the rotel collector, running a benchmark in a fresh process."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Self

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RECEIVED = re.compile(r"Received logs\..*?\blogs=(\d+)")
ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


# --- statistics -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return float(ordered[rank - 1])


def ratio(value: float, baseline: float) -> float:
    if not baseline or baseline != baseline or value != value:
        return float("nan")
    return value / baseline


# --- machine facts ----------------------------------------------------------------------------


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_facts() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    dirty = bool(_git("status", "--porcelain", "--", "otel_plugin_logs"))
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "--short=12", "HEAD"),
        "package_dirty": dirty,
        "versions": {
            name: _version(name)
            for name in (
                "otel-plugin-logs",
                "opentelemetry-sdk",
                "opentelemetry-exporter-otlp-proto-grpc",
                "opentelemetry-proto",
                "grpcio",
                "protobuf",
                "pydantic",
                "msgpack",
                "rotel",
            )
        },
    }


# --- process CPU ------------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """user+system CPU of a process (not its children), from /proc; NaN if unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, ValueError, IndexError):
        return float("nan")


def thread_cpu_seconds(pid: int | None = None) -> dict[str, float]:
    """CPU seconds of each thread of a process (self by default), summed by thread name."""
    base = f"/proc/{pid or os.getpid()}/task"
    python_names: dict[str, str] = {}
    if pid is None:
        import threading

        python_names = {str(t.native_id): t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    try:
        tids = os.listdir(base)
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"{base}/{tid}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = python_names.get(tid) or stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(
            errors="replace"
        )
        fields = stat[stat.rindex(b")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICKS
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per-thread-name CPU spent between two ``thread_cpu_seconds`` readings (exited threads lost)."""
    names = set(before) | set(after)
    delta = {name: round(after.get(name, 0.0) - before.get(name, 0.0), 3) for name in names}
    return {name: value for name, value in sorted(delta.items(), key=lambda kv: -kv[1]) if value > 0}


def system_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat), to tell how much others used."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
        return (user + nice + system + irq + softirq + steal) / _TICKS
    except (OSError, ValueError):
        return float("nan")


def rss_bytes(pid: int | None = None) -> int:
    path = "/proc/self/statm" if pid is None else f"/proc/{pid}/statm"
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# --- the collector ----------------------------------------------------------------------------


def otel_logging_handler(provider: Any) -> Any:
    """The OpenTelemetry logging handler a program would use today, on ``provider``.

    ``opentelemetry-instrumentation-logging``'s (what ``opentelemetry-instrument`` installs);
    the SDK's own, deprecated since 1.40, only where that package is missing.
    """
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
    except ImportError:
        import warnings

        from opentelemetry.sdk._logs import LoggingHandler as SdkLoggingHandler

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return SdkLoggingHandler(logger_provider=provider)
    return LoggingHandler(logger_provider=provider)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def rotel_binary() -> str:
    import rotel

    path = Path(rotel.__file__).parent / "rotel-agent"
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


class Rotel:
    """rotel (the collector from PyPI) on free loopback ports, exporting to its blackhole.

    The benchmarks use it as it is (printing nothing per record: printing would make the
    collector the bottleneck); the tests pass ``debug_log=("logs",)`` to read every record
    it receives from its output. Stopped by its pid; a directory it made itself is removed.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        debug_log: Sequence[str] = (),
        receive_traces: bool = False,
        debug_log_verbosity: str = "detailed",
    ) -> None:
        self._own_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="otel-plugin-logs-rotel-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.debug_log = tuple(debug_log)
        self.receive_traces = receive_traces
        self.debug_log_verbosity = debug_log_verbosity
        self.log_file = self.directory / "rotel.log"
        self.pid_file = self.directory / "rotel.pid"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/logs"

    def start(self) -> Self:
        argv = [rotel_binary(), "start", "--exporter", "blackhole"]
        for signal_name in self.debug_log:
            argv += ["--debug-log", signal_name]
        if self.debug_log:
            argv += ["--debug-log-verbosity", self.debug_log_verbosity]
        argv += [
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.http_port}",
            "--otlp-receiver-metrics-disabled",
            "--log-file",
            str(self.log_file),
            "--pid-file",
            str(self.pid_file),
        ]
        if not self.receive_traces:
            argv.append("--otlp-receiver-traces-disabled")
        self._out = open(self.directory / "rotel.stdout", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, cwd=self.directory)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if _port_open(self.grpc_port) and _port_open(self.http_port):
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        output = self.output()
        self.stop()
        raise RuntimeError(f"rotel did not start: {output[-2000:]}")

    @property
    def pid(self) -> int:
        if self.pid_file.exists():
            try:
                return int(self.pid_file.read_text().strip())
            except ValueError:
                pass
        return self.process.pid if self.process is not None else 0

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def received_logs(self) -> int:
        """Log records received so far, from the per-request lines of ``--debug-log logs`` (basic)."""
        text = _ANSI.sub("", self.output())
        return sum(int(count) for count in _RECEIVED.findall(text))

    def output(self) -> str:
        text = ""
        for path in (self.directory / "rotel.stdout", self.log_file):
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def stop(self) -> None:
        targets = {self.pid, self.process.pid if self.process else 0} - {0}
        for target in targets:
            try:
                os.kill(target, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.process is not None:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if hasattr(self, "_out"):
            self._out.close()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- running one benchmark in a fresh interpreter ----------------------------------------------


def run_worker(kind: str, params: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """Run ``benchmarks._worker <kind>`` in a fresh interpreter; returns the JSON it wrote.

    A fresh process per measurement keeps GC state, threads and imported modules of one
    benchmark from skewing the next.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".json", prefix="bench-", delete=False) as out:
        path = out.name
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("OTEL_"):
            del env[name]  # the benchmark sets what it needs; nothing from the caller's shell
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    argv = [PYTHON, "-m", "benchmarks._worker", kind, json.dumps(params), path]
    try:
        completed = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"benchmark {kind} failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}"
            )
        with open(path, encoding="utf-8") as handle:
            return dict(json.load(handle))
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
