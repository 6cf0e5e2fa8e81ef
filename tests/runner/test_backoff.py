"""Backoff: doubling waits up to a cap, measured on an injected clock."""

from __future__ import annotations

from otel_plugin_logs.runner.backoff import MIN_BACKOFF_SECONDS, Backoff

from .clocks import FrozenClock


def test_ready_until_the_first_failure() -> None:
    """A fresh backoff lets the first attempt go at once."""
    assert Backoff(FrozenClock(), cap_seconds=5.0).ready()


def test_each_failure_doubles_the_wait_up_to_the_cap() -> None:
    """0.05, 0.1, 0.2 ... seconds, never more than the cap."""
    backoff = Backoff(FrozenClock(), cap_seconds=0.3)
    waits = []
    for _ in range(5):
        backoff.failed()
        waits.append(backoff.seconds)
    assert waits == [MIN_BACKOFF_SECONDS, 0.1, 0.2, 0.3, 0.3]


def test_not_ready_until_the_clock_passed_the_jittered_wait() -> None:
    """After a failure the next attempt waits at least 0.8x and at most 1.2x the backoff."""
    clock = FrozenClock()
    backoff = Backoff(clock, cap_seconds=5.0)
    backoff.failed()
    clock.advance(MIN_BACKOFF_SECONDS * 0.79)
    assert not backoff.ready()
    clock.advance(MIN_BACKOFF_SECONDS * 0.42)
    assert backoff.ready()


def test_reset_starts_over_from_the_minimum() -> None:
    """An acknowledgement resets it: the next failure waits the minimum again."""
    backoff = Backoff(FrozenClock(), cap_seconds=5.0)
    for _ in range(4):
        backoff.failed()
    backoff.reset()
    backoff.failed()
    assert backoff.seconds == MIN_BACKOFF_SECONDS
