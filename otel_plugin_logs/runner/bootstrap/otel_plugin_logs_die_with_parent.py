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
    """Ask for SIGKILL when the parent ends; exit at once if it already has. False: not armed.

    A process whose parent is not ``parent_pid`` while that process still lives was not started
    by it (a ``python3`` wrapper that forks, say): the request is not for it, and it is withdrawn.
    """
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return False
    prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
    if os.getppid() == parent_pid:
        return True
    if not _alive(parent_pid):
        os._exit(_EXIT_ORPHANED)
    prctl(_PR_SET_PDEATHSIG, 0, 0, 0, 0)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def arm_from_environment() -> None:
    """Arm if the host asked; the variable is removed so that this plugin's own children do not."""
    value = os.environ.pop(ENV_DIE_WITH_PARENT, "")
    if value.isdigit():
        arm(int(value))


def _launch(argv: list[str]) -> None:
    parent_pid, report_fd, program = int(argv[1]), int(argv[2]), argv[3:]
    arm(parent_pid)
    # What this interpreter set up at its start and exec keeps: Popen had reset these
    # (restore_signals), a shell pipeline in the command expects them at their default.
    import signal  # only here: the bootstrap imports this file in every Python plugin

    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.set_inheritable(report_fd, False)  # closed by a successful exec: the host reads its end
    try:
        os.execvpe(program[0], program, _given_environment())  # noqa: S606 (the host's command line)
    except OSError as error:
        # The host raises it as Popen would have (the same exception, the same message).
        os.write(report_fd, str(error.errno or 0).encode("ascii"))
        os._exit(_EXIT_NOT_FOUND if isinstance(error, FileNotFoundError) else _EXIT_NOT_EXECUTABLE)


def _given_environment() -> dict[bytes, bytes]:
    """The environment this process was started with, before the interpreter changed it.

    In a C locale the interpreter sets LC_CTYPE=C.UTF-8 in its own environment (PEP 538), which
    the command would inherit; the kernel keeps the environment exec was given as it was.
    """
    try:
        with open("/proc/self/environ", "rb") as given:
            entries = given.read().split(b"\0")
    except OSError:
        return dict(os.environb)
    pairs = (entry.partition(b"=") for entry in entries if entry)
    return {name: value for name, _, value in pairs if name}


if __name__ == "__main__":
    # A SIGINT that `run` forwards before the exec ends this process as it would end the command,
    # without a KeyboardInterrupt traceback; one the host ignored stays ignored.
    import signal

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    _launch(sys.argv)
