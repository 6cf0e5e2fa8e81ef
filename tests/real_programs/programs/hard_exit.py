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
elif how == "daemon_thread":
    import time

    def chatter() -> None:
        i = 0
        while True:
            logging.getLogger("daemon").info("tick %d", i)
            i += 1

    threading.Thread(target=chatter, daemon=True).start()
    time.sleep(0.2)  # then the main thread returns: atexit runs while the thread still logs
elif how == "after_shutdown":
    logging.shutdown()
    log.warning("logged after logging.shutdown()")
