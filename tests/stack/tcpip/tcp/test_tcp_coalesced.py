"""A segment the NIC coalesced (RSC) stands for several wire segments: ACK it as them."""

from __future__ import annotations

from tcp_harness import ACK, LOCAL_ISS, MS, REMOTE_ISS, active_open, seg

L1 = LOCAL_ISS + 1
R1 = REMOTE_ISS + 1


def test_coalesced_segment_of_two_or_more_is_acked_at_once() -> None:
    h = active_open()
    unit = seg(R1, L1, payload=b"x" * 3000)
    unit.segments = 3
    h.send(unit)
    h.recv_one(flags=ACK, ack=R1 + 3000)
    assert h.conn.poll_at() is None


def test_single_large_segment_still_waits_for_the_delayed_ack() -> None:
    h = active_open()
    h.send(seg(R1, L1, payload=b"x" * 3000))  # one wire segment, however big
    h.recv_nothing()
    assert h.conn.poll_at() == 200 * MS


def test_coalesced_unit_counts_toward_the_next_ack_with_earlier_segments() -> None:
    h = active_open()
    h.send(seg(R1, L1, payload=b"x" * 1000))
    h.recv_nothing()
    unit = seg(R1 + 1000, L1, payload=b"y" * 2000)
    unit.segments = 2
    h.send(unit)
    h.recv_one(flags=ACK, ack=R1 + 3000)
