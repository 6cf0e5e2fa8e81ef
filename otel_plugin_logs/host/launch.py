"""How a runner is started: the command and environment handed to ``subprocess.Popen``.

No runner is started with a ``preexec_fn``. That would make ``subprocess`` fork the host, and
a fork of a threaded host runs every library's at-fork handlers in the child: gRPC's restart a
poller thread there, which aborts the child (SIGABRT before exec) once ``subprocess`` closes its
descriptors. Measured: 35 of 150 spawns beside a busy OTLP/gRPC exporter on a loaded machine.
Without one, ``subprocess`` uses ``vfork``, which runs no handler. ``die_with_parent`` is
therefore requested after exec, by the plugin (see the bootstrap's
``otel_plugin_logs_die_with_parent``): a Python plugin that loads the bootstrap arms itself as
it starts; any other command is started through that file run as a launcher, which arms and
execs the command in its own place (about 20 ms more at start). ``Launch.popen`` waits for that
exec, so that a command that cannot start raises in the host as ``Popen`` would. Only an
interpreter binary takes the first way: a ``python3`` wrapper script may fork it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from otel_plugin_logs.config.runner import ENV_AUTO_INSTALL

PACKAGE_DIR: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A directory put on a runner's PYTHONPATH, not a module the host imports.
BOOTSTRAP_DIR: Final = os.path.join(PACKAGE_DIR, "runner", "bootstrap")
DIE_WITH_PARENT_LAUNCHER: Final = os.path.join(BOOTSTRAP_DIR, "otel_plugin_logs_die_with_parent.py")
ENV_DIE_WITH_PARENT: Final = "OTEL_PLUGIN_LOGS_DIE_WITH_PARENT"
_PYTHON_NAME: Final = re.compile(r"^python(\d+(\.\d+)?)?$")
# Flags with which an interpreter skips sitecustomize or ignores PYTHONPATH: no bootstrap runs.
_NO_BOOTSTRAP_FLAGS: Final = frozenset("IES")
_FLAGS_WITH_VALUE: Final = frozenset("XW")
_ELF_MAGIC: Final = b"\x7fELF"
_LAUNCHER_WORDS: Final = 6  # interpreter, -I, -S, launcher, parent pid, report fd; then the command


@dataclass(frozen=True, slots=True)
class Launch:
    """What ``Popen`` is given for one runner.

    A command started through the launcher gets the write end of a pipe (``child_fd``) on which
    the launcher reports a failed exec: ``popen`` waits for the exec and raises as ``Popen``
    would have, with the same error and the same message.
    """

    argv: list[str]
    env: dict[str, str]
    report_fd: int | None = None  # the host's read end of that pipe
    child_fd: int | None = None

    def popen(self, **options: Any) -> subprocess.Popen[bytes]:
        """``subprocess.Popen(argv, env=env, **options)``, with the launcher's exec checked."""
        if self.report_fd is None or self.child_fd is None:
            return subprocess.Popen(self.argv, env=self.env, **options)
        try:
            popen: subprocess.Popen[bytes] = subprocess.Popen(
                self.argv, env=self.env, pass_fds=(self.child_fd,), **options
            )
        except BaseException:
            os.close(self.report_fd)
            raise
        finally:
            os.close(self.child_fd)
        report = _read_all(self.report_fd)
        # Nothing at all: the exec happened (or a signal ended the launcher before it).
        if report.isdigit():
            popen.wait()
            for stream in (popen.stdin, popen.stdout, popen.stderr):
                if stream is not None:
                    stream.close()
            code = int(report)
            raise OSError(code, os.strerror(code), self.argv[_LAUNCHER_WORDS])
        return popen


def plan_launch(
    argv: Sequence[str], env: Mapping[str, str], *, cwd: str | None = None, die_with_parent: bool
) -> Launch:
    """The command and environment that start ``argv``, armed to die with this thread if asked.

    Nothing is checked here: a command that cannot run raises from ``Launch.popen``. A request
    inherited by the host (or its caller's ``env``) is never passed on: it names some
    other process, and a Python plugin that read it would exit at once.
    """
    command, environment = list(argv), dict(env)
    environment.pop(ENV_DIE_WITH_PARENT, None)
    # An embedded interpreter without an executable has no launcher to offer: nothing is armed.
    if not die_with_parent or not sys.platform.startswith("linux") or not sys.executable or not command:
        return Launch(command, environment)
    if (
        environment.get(ENV_AUTO_INSTALL) == "1"
        and loads_bootstrap(command)
        and _is_binary(command[0], environment, cwd)
    ):
        environment[ENV_DIE_WITH_PARENT] = str(os.getpid())
        return Launch(command, environment)
    report_fd, child_fd = os.pipe()  # both close-on-exec; Popen passes the child's end on
    launcher = [sys.executable, "-I", "-S", DIE_WITH_PARENT_LAUNCHER, str(os.getpid()), str(child_fd)]
    return Launch([*launcher, *command], environment, report_fd, child_fd)


def _is_binary(program: str, env: Mapping[str, str], cwd: str | None) -> bool:
    """Whether ``program`` resolves to an executable file (not a wrapper script that may fork)."""
    if os.sep in program:
        path: str | None = os.path.join(cwd or os.curdir, program)
    else:
        path = shutil.which(program, path=env.get("PATH", os.defpath))
    try:
        with open(path or "", "rb") as executable:
            return executable.read(4) == _ELF_MAGIC
    except OSError:
        return False


def _read_all(fd: int) -> str:
    chunks = []
    try:
        while chunk := os.read(fd, 64):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", "replace").strip()


def loads_bootstrap(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is a Python interpreter that will run the bootstrap's sitecustomize."""
    if not argv or not _PYTHON_NAME.match(os.path.basename(argv[0])):
        return False
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            return True
        if arg.startswith("--"):  # --version, --help, --check-hash-based-pycs VALUE: none skips site
            index += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        letters = arg[1:]
        for position, letter in enumerate(letters):
            if letter in _NO_BOOTSTRAP_FLAGS:
                return False
            if letter in "cm":  # the rest of the command line belongs to the code or module
                return True
            if letter in _FLAGS_WITH_VALUE:
                index += 1 if position < len(letters) - 1 else 2
                break
        else:
            index += 1
    return True
