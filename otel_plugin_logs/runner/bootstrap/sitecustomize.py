# Loaded at interpreter start-up in a runner, because the host put this directory first on
# PYTHONPATH (the way opentelemetry-instrument does). It installs the log handler, then runs
# the sitecustomize it shadows, if there is one.
#
# Every plugin start pays for what runs here, so the handler is installed when `logging` is
# first imported (at once if it already is): no record can exist before, and a plugin that
# never logs never loads it. Only the package itself is imported now, which is cheap, so that
# a broken or missing package is reported at start.
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any


def _otel_plugin_logs_find_package() -> bool:
    try:
        import otel_plugin_logs
    except ImportError:
        # This interpreter does not have the package (another venv): fall back to the host's
        # copy, appended last so that the plugin's own packages keep priority.
        for path in os.environ.get("OTEL_PLUGIN_LOGS_FALLBACK_PATH", "").split(os.pathsep):
            if path and path not in sys.path:
                sys.path.append(path)
        try:
            import otel_plugin_logs  # noqa: F401
        except ImportError as error:
            print(f"[otel-plugin-logs] log handler not installed: {error}", file=sys.stderr)
            return False
    return True


def _otel_plugin_logs_install() -> None:
    try:
        from otel_plugin_logs.runner import _auto_install
    except ImportError as error:
        print(f"[otel-plugin-logs] log handler not installed: {error}", file=sys.stderr)
    else:
        _auto_install()


class _OtelPluginLogsAfterLogging:
    """A finder that lets `logging` load as it would, then installs the handler: once."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "logging":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            return None
        import importlib.util

        spec = importlib.util.find_spec(name)  # what the other finders would have found
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _OtelPluginLogsInstallingLoader(spec.loader)  # type: ignore[assignment]
        return spec


class _OtelPluginLogsInstallingLoader:
    def __init__(self, loader: Loader) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        # The module keeps the loader it would have had (linecache, reload and pkgutil read it).
        module.__loader__ = self.loader
        spec = getattr(module, "__spec__", None)
        if spec is not None:
            spec.loader = self.loader
        try:
            _otel_plugin_logs_install()
        except Exception as error:
            print(f"[otel-plugin-logs] log handler not installed: {error}", file=sys.stderr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def _otel_plugin_logs_bootstrap() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if "OTEL_PLUGIN_LOGS_DIE_WITH_PARENT" in os.environ:  # first: the host may already be gone
        import otel_plugin_logs_die_with_parent  # type: ignore[import-not-found]  # on PYTHONPATH beside it

        otel_plugin_logs_die_with_parent.arm_from_environment()
    if os.environ.get("OTEL_PLUGIN_LOGS_AUTO_INSTALL") == "1" and _otel_plugin_logs_find_package():
        # Before any plugin code (and before a shadowed sitecustomize): what exists now is the
        # interpreter's start-up, alive until exit. Frozen, no collection walks it again, and
        # the exit's collections cost a plugin ~8 ms less. Words as config.fields.parse_bool's.
        freeze = os.environ.get("OTEL_PLUGIN_LOGS_FREEZE_STARTUP_OBJECTS", "true").strip().lower()
        if freeze not in ("0", "false", "no", "off", ""):
            import gc

            gc.freeze()
        if "logging" in sys.modules:
            _otel_plugin_logs_install()
        else:
            sys.meta_path.insert(0, _OtelPluginLogsAfterLogging())
    try:
        import importlib.machinery

        search = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", search)
        if spec is not None and spec.loader is not None and spec.origin != os.path.abspath(__file__):
            import importlib.util  # only now: it loads contextlib, functools and collections

            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
    except Exception as error:
        print(f"[otel-plugin-logs] the shadowed sitecustomize failed: {error}", file=sys.stderr)


try:
    _otel_plugin_logs_bootstrap()
except Exception as _error:
    # One line instead of Python's "Error in sitecustomize" and a traceback in the plugin's
    # stderr (an older Python than the package supports, say).
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    sys.stderr.write(
        f"[otel-plugin-logs] log handler not installed (Python {version}, {sys.executable}): "
        f"{type(_error).__name__}: {_error}\n"
    )
    del _error, version
del _otel_plugin_logs_bootstrap
