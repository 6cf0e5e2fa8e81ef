"""SendWindow: frames kept until acknowledged, resent after a reconnect, given up once."""

from __future__ import annotations

from otel_plugin_logs.runner.window import SendWindow, SentFrame


def _window_with(*last_seqs: int) -> SendWindow:
    window = SendWindow()
    window.add([SentFrame(seq, b"x" * 10) for seq in last_seqs], created_seq=last_seqs[-1])
    return window


def test_an_acknowledgement_releases_the_frames_it_covers() -> None:
    """Frames whose last record is at or below the acknowledged number are let go, with their bytes."""
    window = _window_with(3, 6, 9)
    assert window.release(6)
    assert len(window) == 1 and window.held_bytes == 10 and window.acked_seq == 6
    assert not window.release(4)  # an older acknowledgement changes nothing


def test_after_a_reconnect_every_unacknowledged_frame_is_resent() -> None:
    """to_resend gives the kept frames in order and rewinds what counts as transmitted."""
    window = _window_with(3, 6)
    window.mark_transmitted(6)
    window.release(3)
    assert [frame.last_seq for frame in window.to_resend()] == [6]
    assert window.transmitted_seq == 3 and not window.all_transmitted


def test_frames_sent_on_an_earlier_connection_are_not_given_up() -> None:
    """Only frames that never went out are handed back to be counted as dropped."""
    window = _window_with(3, 6, 9)
    window.mark_transmitted(3)
    window.connection_lost()
    assert [frame.last_seq for frame in window.give_up_untransmitted()] == [6, 9]
    assert window.all_transmitted
