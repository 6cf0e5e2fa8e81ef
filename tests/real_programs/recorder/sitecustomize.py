# Ground truth for the real-program tests: every record any logger handles, one JSON line
# each, written with one unbuffered append so that it survives SIGKILL and os._exit. Loaded
# as a sitecustomize (PYTHONPATH), alone or after the bridge's own bootstrap.
import json
import logging
import os

_path = os.environ.get("GROUND_TRUTH_FILE")
# Under `otel-plugin-logs run` the host inherits this too: only the plugin (it has a token) counts.
_host = os.environ.get("GROUND_TRUTH_RUNNERS_ONLY") and not os.environ.get("OTEL_PLUGIN_LOGS_TOKEN")
if _path and not _host:
    _original = logging.Logger.callHandlers

    def _record(self, record):
        if not record.name.startswith("otel_plugin_logs"):
            msg = record.msg
            body = msg.get("event") if isinstance(msg, dict) else record.getMessage()
            exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
            line = {"logger": record.name, "level": record.levelname, "body": str(body), "exc": exc}
            fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (json.dumps(line) + "\n").encode())
            finally:
                os.close(fd)
        _original(self, record)

    logging.Logger.callHandlers = _record
