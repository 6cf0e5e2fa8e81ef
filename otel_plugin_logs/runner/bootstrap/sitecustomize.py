# Loaded at interpreter start-up in a runner, because the host put this directory first on
# PYTHONPATH (the way opentelemetry-instrument does). It installs the log handler, then runs
# the sitecustomize it shadows, if there is one.
import os
import sys


def _otel_plugin_logs_bootstrap() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        from otel_plugin_logs.runner import _auto_install
    except ImportError:
        # This interpreter does not have the package (another venv): fall back to the host's
        # copy, appended last so that the plugin's own packages keep priority.
        for path in os.environ.get("OTEL_PLUGIN_LOGS_FALLBACK_PATH", "").split(os.pathsep):
            if path and path not in sys.path:
                sys.path.append(path)
        try:
            from otel_plugin_logs.runner import _auto_install
        except ImportError as error:
            print(f"[otel-plugin-logs] log handler not installed: {error}", file=sys.stderr)
        else:
            _auto_install()
    else:
        _auto_install()
    try:
        import importlib.machinery
        import importlib.util

        search = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", search)
        if spec is not None and spec.loader is not None and spec.origin != os.path.abspath(__file__):
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
