#!/usr/bin/env python3
"""Set up and run the project's two jobs on a fresh machine, with nothing but Python 3.11.

    python3 tasks.py demo [demo options]   # create .venv, install, run `otel-plugin-logs demo`
    python3 tasks.py test [pytest options] # create .venv, install with test extras, lint, type-check, test
    python3 tasks.py test-oldest [options] # the export tests in .venv-oldest, on the oldest supported SDK
    python3 tasks.py test-under-load [options]  # tests/reliability beside two busy-loop processes

`test` without options also runs `test-oldest` and `test-under-load` once the main suite
passed (CI does that).

Each command creates the virtualenv `.venv` next to this file when it is missing and
(re)installs the project when pyproject.toml changed since the last install. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
OLDEST_VENV = ROOT / ".venv-oldest"
OLDEST_CONSTRAINTS = ROOT / "constraints" / "oldest-sdk.txt"
# The tests that touch the SDK: export, encoding against the SDK's path, its conventions.
OLDEST_TESTS = (
    "tests/test_otlp_sdk_internals.py",
    "tests/test_otlp_encoding.py",
    "tests/test_otlp_export.py",
    "tests/test_otlp_conventions.py",
    "tests/test_export_behaviour.py",
    "tests/export",
)


def _run(*argv: str | os.PathLike[str], check: bool = True) -> int:
    print("+", " ".join(str(a) for a in argv), flush=True)
    code = subprocess.call([str(a) for a in argv], cwd=ROOT)
    if check and code != 0:
        sys.exit(code)
    return code


def _ensure_venv(extra: str, where: Path = VENV, constraints: Path | None = None) -> Path:
    """The python of the virtualenv ``where``, (re)installed when pyproject or constraints changed."""
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    python = where / ("Scripts" if os.name == "nt" else "bin") / "python"
    if not python.exists():
        print(f"creating {where}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(where)
    pinned = constraints.read_bytes() if constraints is not None else b""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extra.encode() + pinned).hexdigest()
    stamp = where / ".installed"
    if stamp.exists() and stamp.read_text() == digest:
        return python
    target = f".[{extra}]" if extra else "."
    pins = ["-c", str(constraints)] if constraints is not None else []
    _run(python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *pins, "-e", target)
    stamp.write_text(digest)
    return python


def demo(args: list[str]) -> int:
    _ensure_venv("")
    return _run(BIN / "otel-plugin-logs", "demo", *args, check=False)


def test(args: list[str]) -> int:
    _ensure_venv("test")
    _run(PYTHON, "-m", "ruff", "check", ".")
    _run(PYTHON, "-m", "ruff", "format", "--check", ".")
    _run(PYTHON, "-m", "mypy")
    _run(BIN / "lint-imports", "--no-cache")  # the dependency rules of pyproject's [tool.importlinter]
    # pytest exits 5 when it collected nothing: that is a failure here, like any non-zero code.
    code = _run(PYTHON, "-m", "pytest", *args, check=False)
    if code != 0 or args:
        return code
    code = test_oldest([])
    if code != 0:
        return code
    return test_under_load([])


def test_under_load(args: list[str]) -> int:
    """The reliability tests again, beside two busy-loop processes: a test that fails when the
    machine is loaded is a bug in the test or in the code."""
    _ensure_venv("test")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        return _run(PYTHON, "-m", "pytest", "-q", "tests/reliability", *args, check=False)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_oldest(args: list[str]) -> int:
    """The SDK-touching tests again, on the oldest supported SDK (constraints/oldest-sdk.txt)."""
    python = _ensure_venv("test", OLDEST_VENV, OLDEST_CONSTRAINTS)
    _run(
        python,
        "-c",
        "from importlib.metadata import version; print('opentelemetry-sdk', version('opentelemetry-sdk'))",
    )
    return _run(python, "-m", "pytest", *(args or ["-q", *OLDEST_TESTS]), check=False)


def main() -> int:
    jobs = {"demo": demo, "test": test, "test-oldest": test_oldest, "test-under-load": test_under_load}
    if len(sys.argv) < 2 or sys.argv[1] not in jobs:
        print(__doc__)
        return 2
    return jobs[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
