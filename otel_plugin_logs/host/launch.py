"""How a runner is started: the command and environment handed to ``subprocess.Popen``.

No runner is started with a ``preexec_fn``. That would make ``subprocess`` fork the host, and
a fork of a threaded host runs every library's at-fork handlers in the child: gRPC's restart a
poller thread there, which aborts the child (SIGABRT before exec) once ``subprocess`` closes its
descriptors. Measured: 35 of 150 spawns beside a busy OTLP/gRPC exporter on a loaded machine.
Without one, ``subprocess`` uses ``vfork``, which runs no handler. ``die_with_parent`` is
therefore requested after exec, by the plugin (see the bootstrap's
``otel_plugin_logs_die_with_parent``): a Python plugin that loads the bootstrap arms itself as
it starts; any other command is started through that file run as a launcher, which arms and
execs the command in its own place (about 20 ms more at start).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

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


@dataclass(frozen=True, slots=True)
class Launch:
    """What ``Popen`` is given for one runner."""

    argv: list[str]
    env: dict[str, str]


def plan_launch(
    argv: Sequence[str], env: Mapping[str, str], *, cwd: str | None = None, die_with_parent: bool
) -> Launch:
    """The command and environment that start ``argv``, armed to die with this thread if asked.

    A command started through the launcher is checked here first, so that one that cannot run
    raises ``FileNotFoundError`` or ``PermissionError`` in the host, as ``Popen`` would.
    """
    command, environment = list(argv), dict(env)
    # An embedded interpreter without an executable has no launcher to offer: nothing is armed.
    if not die_with_parent or not sys.platform.startswith("linux") or not sys.executable:
        return Launch(command, environment)
    if environment.get(ENV_AUTO_INSTALL) == "1" and loads_bootstrap(command):
        environment[ENV_DIE_WITH_PARENT] = str(os.getpid())
        return Launch(command, environment)
    _check_runnable(command[0] if command else "", environment, cwd)
    launcher = [sys.executable, "-I", "-S", DIE_WITH_PARENT_LAUNCHER, str(os.getpid())]
    return Launch([*launcher, *command], environment)


def _check_runnable(program: str, env: Mapping[str, str], cwd: str | None) -> None:
    if os.sep not in program:
        if not program or shutil.which(program, path=env.get("PATH", os.defpath)) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        return
    path = os.path.join(cwd or os.curdir, program)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)


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
