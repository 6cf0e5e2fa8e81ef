#!/usr/bin/env python3
"""Set up and run the project's two jobs on a fresh machine, with nothing but Python 3.11.

    python3 tasks.py demo [demo options]   # create .venv, install, run `otel-plugin-logs demo`
    python3 tasks.py test [pytest options] # create .venv, install with test extras, lint, type-check, test

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


def _run(*argv: str | os.PathLike[str], check: bool = True) -> int:
    print("+", " ".join(str(a) for a in argv), flush=True)
    code = subprocess.call([str(a) for a in argv], cwd=ROOT)
    if check and code != 0:
        sys.exit(code)
    return code


def _ensure_venv(extra: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extra.encode()).hexdigest()
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == digest:
        return
    target = f".[{extra}]" if extra else "."
    _run(PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", target)
    stamp.write_text(digest)


def demo(args: list[str]) -> int:
    _ensure_venv("")
    return _run(BIN / "otel-plugin-logs", "demo", *args, check=False)


def test(args: list[str]) -> int:
    _ensure_venv("test")
    _run(PYTHON, "-m", "ruff", "check", ".")
    _run(PYTHON, "-m", "ruff", "format", "--check", ".")
    _run(PYTHON, "-m", "mypy")
    # pytest exits 5 when it collected nothing: that is a failure here, like any non-zero code.
    return _run(PYTHON, "-m", "pytest", *args, check=False)


def main() -> int:
    jobs = {"demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in jobs:
        print(__doc__)
        return 2
    return jobs[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
