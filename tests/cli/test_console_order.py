"""The console's time-ordered release: what comes out, in which order, in which runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from otel_plugin_logs.cli.console_order import TimeOrderedRelease


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Runs:
    """What ``release`` was given, run by run; ``wait`` blocks until the next run."""

    def __init__(self) -> None:
        self.runs: list[list[str]] = []
        self._changed = threading.Condition()

    def __call__(self, batch: list[str]) -> None:
        with self._changed:
            self.runs.append(list(batch))
            self._changed.notify_all()

    def wait(self, count: int, timeout_seconds: float = 20.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.runs) >= count, timeout_seconds)

    @property
    def items(self) -> list[str]:
        return [item for run in self.runs for item in run]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runs() -> Runs:
    return Runs()


@pytest.fixture
def order(clock: Clock, runs: Runs) -> Iterator[TimeOrderedRelease[str]]:
    released = TimeOrderedRelease(1.0, runs, clock=clock, tick_seconds=0.01)
    yield released
    released.close()


def test_nothing_is_released_before_its_window_passed(
    clock: Clock, runs: Runs, order: TimeOrderedRelease[str]
) -> None:
    """Items pushed are held while the clock stays inside their window."""
    order.push(5.0, "a")
    clock.now += 0.5
    assert not runs.wait(1, 0.3)
    assert order.held() == 1


def test_items_due_together_are_released_in_one_run_oldest_first(
    clock: Clock, runs: Runs, order: TimeOrderedRelease[str]
) -> None:
    """The release thread gives everything due at once: one run, sorted by the items' time."""
    for index in range(50):
        order.push(1000.0 - index, f"item {index}")  # pushed newest first
    assert order.held() == 50  # all taken in by the release side before any is due
    clock.now += 1.5
    assert runs.wait(1)
    assert runs.runs == [[f"item {index}" for index in reversed(range(50))]]


def test_a_due_item_takes_the_held_items_older_than_it_along(
    clock: Clock, runs: Runs, order: TimeOrderedRelease[str]
) -> None:
    """An item pushed later but older in time comes out with (before) the due item; newer ones stay."""
    order.push(10.0, "due first")
    clock.now += 0.6
    order.push(5.0, "older, pushed later")
    order.push(20.0, "newer, pushed later")
    assert order.held() == 3
    clock.now += 0.6  # only the first push is due
    assert runs.wait(1)
    assert runs.runs == [["older, pushed later", "due first"]]
    assert order.held() == 1


def test_items_of_the_same_time_keep_their_push_order(order: TimeOrderedRelease[str], runs: Runs) -> None:
    """Ties in time come out in the order they were pushed."""
    for name in ("x", "y", "z"):
        order.push(7.0, name)
    order.drain()
    assert runs.items == ["x", "y", "z"]


def test_drain_releases_everything_held_at_once(order: TimeOrderedRelease[str], runs: Runs) -> None:
    """drain (a console's flush) gives every held item in one run, in time order."""
    for at, name in ((3.0, "c"), (1.0, "a"), (2.0, "b")):
        order.push(at, name)
    order.drain()
    assert runs.runs == [["a", "b", "c"]] and order.held() == 0


def test_an_item_pushed_after_close_is_released_at_once(clock: Clock, runs: Runs) -> None:
    """Closed, nothing is held: a push comes out straight away, and close again changes nothing."""
    released = TimeOrderedRelease(1.0, runs, clock=clock)
    released.push(1.0, "held")
    released.close()
    released.push(2.0, "after close")
    released.close()
    assert runs.runs == [["held"], ["after close"]]


def test_the_release_thread_goes_on_after_release_raised(clock: Clock) -> None:
    """A release that raised does not stop later runs."""
    runs = Runs()
    failures: list[list[str]] = []
    failed = threading.Event()

    def release(batch: list[str]) -> None:
        if not failures:
            failures.append(batch)
            failed.set()
            raise OSError("stream gone")
        runs(batch)

    released = TimeOrderedRelease(1.0, release, clock=clock, tick_seconds=0.01)
    try:
        released.push(1.0, "lost to the error")
        clock.now += 1.5
        assert failed.wait(20)
        released.push(2.0, "shown")
        clock.now += 1.5
        assert runs.wait(1)
        assert failures == [["lost to the error"]] and runs.items == ["shown"]
    finally:
        released.close()


def test_items_pushed_from_many_threads_all_come_out_once(clock: Clock, runs: Runs) -> None:
    """Pushes from several threads while the release thread runs: nothing lost, nothing twice."""
    released = TimeOrderedRelease(0.001, runs, tick_seconds=0.001)

    def push(prefix: str) -> None:
        for index in range(2000):
            released.push(float(index), f"{prefix}{index}")

    threads = [threading.Thread(target=push, args=(prefix,)) for prefix in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    released.close()
    assert sorted(runs.items) == sorted(f"{p}{i}" for p in "abcd" for i in range(2000))


def test_items_pushed_together_come_out_as_if_pushed_one_by_one(
    clock: Clock, runs: Runs, order: TimeOrderedRelease[str]
) -> None:
    """push_many holds each item its window from now and merges it, ties in push order, with the rest."""
    order.push(2.0, "single")
    order.push_many([(3.0, "c"), (1.0, "a"), (2.0, "b, pushed after single")])
    assert order.held() == 4 and not runs.wait(1, 0.2)
    clock.now += 1.5
    assert runs.wait(1)
    assert runs.items == ["a", "single", "b, pushed after single", "c"]


def test_items_pushed_together_after_close_are_released_at_once(clock: Clock, runs: Runs) -> None:
    """Closed, a push of several items comes out straight away, in time order."""
    released = TimeOrderedRelease(1.0, runs, clock=clock)
    released.close()
    released.push_many([(2.0, "second"), (1.0, "first")])
    assert runs.runs == [["first", "second"]]
