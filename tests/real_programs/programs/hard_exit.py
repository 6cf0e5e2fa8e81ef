"""Logs N records, then ends the way argv[2] says: os._exit, SIGKILL, SIGTERM, thread error."""

import logging
import os
import signal
import sys
import threading

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
log = logging.getLogger("job")
count, how = int(sys.argv[1]), sys.argv[2]
for i in range(count):
    log.info("step %d", i)
if how == "os_exit":
    os._exit(7)
elif how == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
elif how == "sigterm":
    os.kill(os.getpid(), signal.SIGTERM)
elif how == "thread_error":

    def fail() -> None:
        log.error("worker about to fail")
        raise RuntimeError("uncaught in a thread")

    thread = threading.Thread(target=fail, name="worker")
    thread.start()
    thread.join()
    os._exit(0)
elif how == "after_shutdown":
    logging.shutdown()
    log.warning("logged after logging.shutdown()")
