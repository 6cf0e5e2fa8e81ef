"""Workers of every multiprocessing start method log; Process and Pool."""

import logging
import multiprocessing
import sys

PER_WORKER = 50
# At import: spawn and forkserver children import this module again, and log at INFO too.
logging.basicConfig(level=logging.INFO, stream=sys.stderr)


def work(tag: str) -> int:
    log = logging.getLogger(f"worker.{tag}")
    for i in range(PER_WORKER):
        log.info("item %d of %s", i, tag)
    return PER_WORKER


def main() -> None:
    method = sys.argv[1]
    context = multiprocessing.get_context(method)
    processes = [context.Process(target=work, args=(f"{method}-p{n}",)) for n in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    with context.Pool(2) as pool:
        done = sum(pool.map(work, [f"{method}-pool{n}" for n in range(4)]))
    logging.getLogger("parent").info("pool done: %d", done)


if __name__ == "__main__":
    main()
