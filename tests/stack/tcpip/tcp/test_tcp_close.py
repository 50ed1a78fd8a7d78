"""Closing: active, passive, simultaneous, TIME_WAIT, and the FIN in every state."""

from __future__ import annotations

import pytest
from states_driver import L1, R1, S, drive_to, expected_rcv_nxt, expected_snd_nxt
from tcp_harness import ACK, FIN, LOCAL_ISS, MS, PSH, REMOTE_ISS, SYN, active_open, config, seg

from stack.tcpip.tcp import Closed, DataReceived, PeerClosed, StateChanged


def test_active_close_walks_fin_wait_to_time_wait_to_closed() -> None:
    h = active_open()
    h.conn.close(0)
    assert h.state is S.FIN_WAIT_1
    h.recv_one(flags=FIN | ACK, seq=L1, ack=R1)
    h.send(seg(R1, L1 + 1))
    assert h.state is S.FIN_WAIT_2
    h.now = 50 * MS
    h.send(seg(R1, L1 + 1, FIN | ACK))
    h.recv_one(flags=ACK, seq=L1 + 1, ack=R1 + 1)
    assert h.state is S.TIME_WAIT
    assert h.conn.poll_at() == 50 * MS + 10_000 * MS
    h.advance(9_999 * MS)
    assert h.state is S.TIME_WAIT
    h.advance(1 * MS)
    assert h.state is S.CLOSED
    assert h.take_events() == [
        StateChanged(S.ESTABLISHED, S.FIN_WAIT_1), StateChanged(S.FIN_WAIT_1, S.FIN_WAIT_2), PeerClosed(),
        StateChanged(S.FIN_WAIT_2, S.TIME_WAIT), StateChanged(S.TIME_WAIT, S.CLOSED), Closed(),
    ]
    assert h.conn.poll_at() is None


def test_default_time_wait_is_two_msl() -> None:
    h = drive_to(S.TIME_WAIT, config(time_wait_ns=2 * 120_000 * MS))
    assert h.conn.poll_at() == h.now + 240_000 * MS


def test_passive_close_walks_close_wait_and_last_ack() -> None:
    h = active_open()
    h.send(seg(R1, L1, FIN | ACK | PSH, payload=b"bye"))
    h.recv_one(flags=ACK, ack=R1 + 4)  # the FIN is acknowledged at once
    assert h.state is S.CLOSE_WAIT
    assert h.take_events() == [DataReceived(3, True), PeerClosed(), StateChanged(S.ESTABLISHED, S.CLOSE_WAIT)]
    assert not h.conn.at_eof
    assert b"".join(h.conn.read(10)) == b"bye" and h.conn.at_eof
    h.conn.send(b"reply")  # still allowed in CLOSE_WAIT
    h.conn.close(0)
    assert h.state is S.LAST_ACK
    h.recv_one(flags=ACK | PSH | FIN, seq=L1, payload=b"reply")
    h.send(seg(R1 + 4, L1 + 6))
    assert h.state is S.CLOSED
    assert h.take_events()[-2:] == [StateChanged(S.LAST_ACK, S.CLOSED), Closed()]


def test_simultaneous_close_goes_through_closing() -> None:
    h = drive_to(S.FIN_WAIT_1)
    h.send(seg(R1, L1, FIN | ACK))  # the peer's FIN crosses ours
    assert h.state is S.CLOSING
    h.recv_one(flags=ACK, seq=L1 + 1, ack=R1 + 1)
    h.send(seg(R1 + 1, L1 + 1))
    assert h.state is S.TIME_WAIT


def test_fin_with_ack_of_our_fin_goes_straight_to_time_wait() -> None:
    h = drive_to(S.FIN_WAIT_1)
    h.send(seg(R1, L1 + 1, FIN | ACK))
    assert h.state is S.TIME_WAIT
    assert h.take_events() == [
        StateChanged(S.FIN_WAIT_1, S.FIN_WAIT_2), PeerClosed(), StateChanged(S.FIN_WAIT_2, S.TIME_WAIT)]
    h.recv_one(flags=ACK, ack=R1 + 1)


def test_time_wait_acks_retransmitted_fin_and_restarts_timer() -> None:
    h = drive_to(S.TIME_WAIT)
    h.advance(6_000 * MS)
    h.send(seg(R1, L1 + 1, FIN | ACK))
    h.recv_one(flags=ACK, seq=L1 + 1, ack=R1 + 1)
    assert h.conn.poll_at() == h.now + 10_000 * MS
    h.advance(9_000 * MS)
    assert h.state is S.TIME_WAIT
    h.advance(1_000 * MS)
    assert h.state is S.CLOSED


def test_last_ack_retransmits_fin_on_timeout() -> None:
    h = drive_to(S.LAST_ACK)
    h.fire_next_timer()
    h.recv_one(flags=FIN | ACK, seq=L1, ack=R1 + 1)
    h.send(seg(R1 + 1, L1 + 1))
    assert h.state is S.CLOSED


def test_fin_rides_on_the_last_data_segment() -> None:
    h = active_open()
    h.conn.send(b"abc")
    h.conn.close(0)
    h.recv_one(flags=ACK | PSH | FIN, seq=L1, payload=b"abc")
    assert h.conn.snd_nxt == L1 + 4


def test_fin_waits_for_queued_data_beyond_the_window() -> None:
    h = active_open(window=1000)
    h.conn.send(b"q" * 1500)
    h.conn.close(0)
    h.recv_one(flags=ACK, payload=b"q" * 1000)
    h.send(seg(R1, L1 + 1000, window=1000))
    h.recv_one(flags=ACK | PSH | FIN, seq=L1 + 1000, payload=b"q" * 500)


def test_out_of_order_fin_is_held_until_the_gap_fills() -> None:
    h = active_open()
    h.send(seg(R1 + 5, L1, FIN | ACK, payload=b"world"))
    h.recv_one(flags=ACK, ack=R1)
    assert h.state is S.ESTABLISHED
    h.send(seg(R1, L1, payload=b"hello"))
    h.recv_one(flags=ACK, ack=R1 + 11)
    assert h.state is S.CLOSE_WAIT
    assert b"".join(h.conn.read(100)) == b"helloworld"


def test_data_is_still_received_in_fin_wait_2() -> None:
    h = drive_to(S.FIN_WAIT_2)
    h.send(seg(R1, L1 + 1, payload=b"late data"))
    assert h.conn.recv_available() == 9


def test_close_in_syn_sent_deletes_the_connection() -> None:
    h = drive_to(S.SYN_SENT)
    h.conn.close(0)
    assert h.state is S.CLOSED
    h.recv_nothing()
    assert h.conn.poll_at() is None


def test_close_in_syn_received_sends_fin_after_handshake() -> None:
    h = drive_to(S.SYN_RECEIVED)
    h.conn.close(0)
    assert h.state is S.SYN_RECEIVED
    h.recv_nothing()
    h.send(seg(R1, LOCAL_ISS + 1))
    assert h.state is S.FIN_WAIT_1
    h.recv_one(flags=FIN | ACK, seq=L1)


def test_close_twice_is_harmless() -> None:
    h = drive_to(S.FIN_WAIT_1)
    h.conn.close(0)
    h.recv_nothing()
    assert h.state is S.FIN_WAIT_1


FIN_TRANSITIONS = [
    (S.ESTABLISHED, S.CLOSE_WAIT),
    (S.FIN_WAIT_1, S.CLOSING),
    (S.FIN_WAIT_2, S.TIME_WAIT),
]


@pytest.mark.parametrize("before, after", FIN_TRANSITIONS, ids=lambda s: str(s))
def test_fin_in_order_moves_the_state(before: S, after: S) -> None:
    h = drive_to(before)
    h.send(seg(R1, expected_snd_nxt(before) - (1 if before is S.FIN_WAIT_1 else 0), FIN | ACK))
    h.recv_one(flags=ACK, ack=R1 + 1)
    assert h.state is after
    assert PeerClosed() in h.take_events()


@pytest.mark.parametrize("state", [S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT], ids=str)
def test_repeated_fin_after_peer_closed_is_acked_and_changes_nothing(state: S) -> None:
    h = drive_to(state)
    h.send(seg(R1, L1, FIN | ACK))
    h.recv_one(flags=ACK, seq=expected_snd_nxt(state), ack=expected_rcv_nxt(state))
    assert h.state is state
    assert PeerClosed() not in h.take_events()


def test_fin_in_syn_sent_without_syn_is_ignored() -> None:
    h = drive_to(S.SYN_SENT)
    h.send(seg(REMOTE_ISS, None, FIN))
    h.recv_nothing()
    assert h.state is S.SYN_SENT


def test_fin_completing_handshake_in_syn_received_goes_to_close_wait() -> None:
    h = drive_to(S.SYN_RECEIVED)
    h.send(seg(R1, L1, FIN | ACK))
    assert h.state is S.CLOSE_WAIT
    h.recv_one(flags=ACK, ack=R1 + 1)


def test_syn_with_fin_in_syn_sent_ends_in_close_wait() -> None:
    h = drive_to(S.SYN_SENT)
    h.send(seg(REMOTE_ISS, L1, SYN | ACK | FIN, mss=1000))
    assert h.state is S.CLOSE_WAIT
    h.recv_one(flags=ACK, ack=REMOTE_ISS + 2)


def test_fin_wait_2_waits_forever_by_default() -> None:
    h = drive_to(S.FIN_WAIT_2)
    assert h.conn.poll_at() is None


def test_fin_wait_2_timeout_closes_when_configured() -> None:
    h = drive_to(S.FIN_WAIT_2, config(fin_wait_2_timeout_ns=60_000 * MS))
    assert h.fire_next_timer() == 60_000 * MS
    assert h.state is S.CLOSED
    h.recv_nothing()
