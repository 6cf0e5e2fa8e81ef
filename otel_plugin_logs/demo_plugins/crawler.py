"""crawler: crawls sites in bursts and logs every page, far faster than the other plugins.

Every two seconds it fetches 100 x --rate pages as fast as it can, one record per page. The
demo host exports and counts every one of them; its console shows only a sample.
"""

from __future__ import annotations

import logging
import random
import time

from otel_plugin_logs.demo_plugins._common import every, parser, stop

log = logging.getLogger("crawler.fetch")
SITES = ("docs.example.org", "shop.example.com", "blog.example.net")
STATUSES = (200, 200, 200, 200, 200, 200, 200, 200, 301, 404)


def crawl(rng: random.Random, site: str, pages: int) -> None:
    started = time.monotonic()
    log.info("crawling %s: %d pages", site, pages, extra={"site": site, "pages": pages})
    for page in range(pages):
        if stop.is_set():
            break
        url = f"https://{site}/page/{page}"
        if rng.random() < 0.002:
            log.warning("server error on %s", url, extra={"url": url, "status": 500})
            continue
        status = rng.choice(STATUSES)
        size = rng.randint(800, 90_000)
        log.info("fetched %s", url, extra={"url": url, "status": status, "bytes": size})
    elapsed = time.monotonic() - started
    log.info("crawled %s in %.2f s", site, elapsed, extra={"site": site, "seconds": round(elapsed, 3)})


def main() -> None:
    args = parser(__doc__).parse_args()
    logging.basicConfig(level=logging.INFO)
    rng = random.Random(args.seed)
    for _ in every(2.0):
        crawl(rng, rng.choice(SITES), int(100 * args.rate))


if __name__ == "__main__":
    main()
