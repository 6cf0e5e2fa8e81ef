"""payments: charges orders; logs declines, exceptions with their cause, and crashes once.

With --crash-after SECONDS it dies of an unhandled exception after that long (the demo host
starts it again). The uncaught exception is logged (sys.excepthook), so it reaches the host as
a CRITICAL record with its stack trace rather than as loose stderr lines.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from types import TracebackType

from otel_plugin_logs.demo_plugins._common import every, parser

log = logging.getLogger("payments.charge")


class PaymentError(Exception):
    """A charge that could not be made."""


def log_uncaught(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    log.critical("payments crashed: %s", error, exc_info=(kind, error, tb))


def charge(rng: random.Random, order: str, amount: float) -> bool:
    """True when the card was charged, False when it was declined."""
    if rng.random() < 0.08:
        try:
            raise TimeoutError("the card gateway did not answer within 2 s")
        except TimeoutError as error:
            raise PaymentError(f"charging {amount:.2f} EUR for {order} failed") from error
    return rng.random() > 0.1


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--crash-after", type=float, default=0.0, help="crash after this many seconds")
    args = options.parse_args()
    logging.basicConfig(level=logging.INFO)
    sys.excepthook = log_uncaught
    rng = random.Random(args.seed)
    started = time.monotonic()
    for _ in every(1.0 / args.rate):
        order, amount = f"ord-{rng.randrange(10**6):06d}", round(rng.uniform(3, 250), 2)
        fields = {"order_id": order, "amount_eur": amount}
        try:
            charged = charge(rng, order, amount)
        except PaymentError:
            log.exception("could not charge order %s", order, extra=fields)
            continue
        if charged:
            log.info("charged %.2f EUR for order %s", amount, order, extra=fields)
        else:
            log.warning("card declined for order %s", order, extra={**fields, "decline_code": "51"})
        if args.crash_after and time.monotonic() - started > args.crash_after:
            raise ConnectionResetError("lost the connection to the ledger database")


if __name__ == "__main__":
    main()
