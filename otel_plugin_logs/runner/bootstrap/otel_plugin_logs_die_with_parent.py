# Makes this process get SIGKILL when the host thread that started it ends (Linux
# PR_SET_PDEATHSIG), so a host killed by SIGKILL leaves no plugin behind.
#
# The host starts plugins without fork() (no preexec_fn): a fork of a threaded host runs every
# library's at-fork handlers in the child, and gRPC's restart a poller thread there that aborts
# the child when subprocess closes its descriptors (seen under load: SIGABRT before exec). So
# the request is made after exec, by the plugin itself, in one of two ways, both here:
# - a Python plugin's sitecustomize (the runner bootstrap) calls `arm_from_environment` first;
# - any other program is started through this file run as a script: it arms, then execs the
#   program in its own place (same pid; the request survives exec).
# It imports nothing of the package: it must work in an interpreter that lacks it.
from __future__ import annotations

import os
import sys

ENV_DIE_WITH_PARENT = "OTEL_PLUGIN_LOGS_DIE_WITH_PARENT"
_PR_SET_PDEATHSIG = 1
_SIGKILL = 9
_EXIT_ORPHANED = 137  # as if the SIGKILL had come: the host ended before the request took effect
_EXIT_NOT_FOUND = 127  # the shell's codes: no such command, and a command that cannot run
_EXIT_NOT_EXECUTABLE = 126


def arm(parent_pid: int) -> bool:
    """Ask for SIGKILL when the parent ends; exit at once if it already has. False: no prctl here."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return False
    prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(_EXIT_ORPHANED)
    return True


def arm_from_environment() -> None:
    """Arm if the host asked; the variable is removed so that this plugin's own children do not."""
    value = os.environ.pop(ENV_DIE_WITH_PARENT, "")
    if value.isdigit():
        arm(int(value))


def _launch(argv: list[str]) -> None:
    parent_pid, program = int(argv[1]), argv[2:]
    arm(parent_pid)
    try:
        os.execvp(program[0], program)  # noqa: S606 (the host's own command line, as given)
    except OSError as error:
        sys.stderr.write(f"[otel-plugin-logs] cannot start {program[0]!r}: {error}\n")
        sys.stderr.flush()
        os._exit(_EXIT_NOT_FOUND if isinstance(error, FileNotFoundError) else _EXIT_NOT_EXECUTABLE)


if __name__ == "__main__":
    _launch(sys.argv)
