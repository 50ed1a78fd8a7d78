"""Resets: accepted only in window (RFC 9293 3.10.7.4, RFC 5961 3.2), sent
for segments nobody expects (3.10.7.1), and by abort()."""

from __future__ import annotations

import pytest
from states_driver import L1, R1, S, drive_to, expected_rcv_nxt, expected_snd_nxt
from tcp_harness import (
    ACK, FIN, LOCAL_ISS, LOCAL_PORT, MS, REMOTE_ISS, REMOTE_PORT, RST, SYN, Harness, config, expect, seg,
)

from stack.tcpip.tcp import Closed, Reset, StateChanged, TcpConnection, TcpSegment, rst_for_unexpected

RESETTABLE = [S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK]
SYNCHRONIZED = RESETTABLE + [S.TIME_WAIT]


@pytest.mark.parametrize("state", RESETTABLE, ids=str)
def test_rst_at_rcv_nxt_resets_in_every_synchronized_state(state: S) -> None:
    h = drive_to(state)
    h.send(seg(expected_rcv_nxt(state), None, RST))
    assert h.state is S.CLOSED
    events = h.take_events()
    assert events[0] == Reset("peer_reset") and events[-1] == Closed()
    h.recv_nothing()
    assert h.conn.poll_at() is None


def test_rst_in_time_wait_is_ignored_rfc1337() -> None:
    h = drive_to(S.TIME_WAIT)
    deadline = h.conn.poll_at()
    h.send(seg(R1 + 1, None, RST))
    h.recv_nothing()
    assert h.state is S.TIME_WAIT and h.conn.poll_at() == deadline


@pytest.mark.parametrize("state", SYNCHRONIZED, ids=str)
def test_rst_outside_the_window_is_ignored(state: S) -> None:
    h = drive_to(state)
    h.send(seg(expected_rcv_nxt(state) + 100_000, None, RST))
    h.send(seg(expected_rcv_nxt(state) - 1, None, RST))
    h.recv_nothing()
    assert h.state is state


@pytest.mark.parametrize("state", [S.ESTABLISHED, S.FIN_WAIT_2, S.CLOSE_WAIT], ids=str)
def test_rst_in_window_but_not_exact_gets_a_challenge_ack(state: S) -> None:
    h = drive_to(state)
    h.send(seg(expected_rcv_nxt(state) + 10, None, RST))
    h.recv_one(flags=ACK, seq=expected_snd_nxt(state), ack=expected_rcv_nxt(state))
    assert h.state is state and h.conn.challenge_acks == 1


def test_rst_in_window_accepted_without_rfc5961() -> None:
    h = drive_to(S.ESTABLISHED, config(challenge_ack=False))
    h.send(seg(R1 + 10, None, RST))
    assert h.state is S.CLOSED


def test_rst_in_simultaneous_open_syn_received_means_refused() -> None:
    h = drive_to(S.SYN_SENT)
    h.send(seg(REMOTE_ISS, None, SYN, mss=1000))
    h.recv_one(flags=SYN | ACK)
    h.take_events()
    h.send(seg(R1, None, RST))
    assert h.take_events()[0] == Reset("refused")


def test_syn_in_established_gets_a_challenge_ack() -> None:
    h = drive_to(S.ESTABLISHED)
    h.send(seg(R1 + 5, None, SYN, mss=1000))
    h.recv_one(flags=ACK, seq=L1, ack=R1)
    assert h.state is S.ESTABLISHED


def test_segment_without_ack_in_established_is_dropped() -> None:
    h = drive_to(S.ESTABLISHED)
    h.send(seg(R1, None, 0, payload=b"noack"))
    h.recv_nothing()
    assert h.conn.recv_available() == 0


def test_implausibly_old_ack_gets_a_challenge_ack() -> None:
    h = drive_to(S.ESTABLISHED)
    h.send(seg(R1, L1 - 100_000))
    h.recv_one(flags=ACK, seq=L1, ack=R1)


def test_abort_sends_rst_and_closes() -> None:
    h = drive_to(S.ESTABLISHED)
    h.conn.send(b"pending")
    h.recv()
    h.conn.abort(0)
    h.recv_one(flags=RST, seq=L1 + 7, ack=0)
    assert h.take_events() == [Reset("aborted"), StateChanged(S.ESTABLISHED, S.CLOSED), Closed()]
    assert h.conn.poll_at() is None


def test_abort_in_syn_sent_sends_nothing() -> None:
    h = drive_to(S.SYN_SENT)
    h.conn.abort(0)
    h.recv_nothing()
    assert h.state is S.CLOSED


def test_closed_connection_answers_segments_with_rst() -> None:
    h = Harness(TcpConnection(config(), LOCAL_PORT, REMOTE_PORT, LOCAL_ISS))
    h.send(seg(1234, 777, ACK, payload=b"x"))
    h.recv_one(flags=RST, seq=777)
    h.send(seg(1234, None, SYN))
    h.recv_one(flags=RST | ACK, seq=0, ack=1235)
    h.send(seg(1234, None, RST))
    h.recv_nothing()


def peer(flags: int, seq: int = 100, ack: int = 0, payload: bytes = b"") -> TcpSegment:
    return seg(seq, ack if flags & ACK else None, flags, payload=payload)


def test_rst_for_unexpected_never_answers_a_rst() -> None:
    assert rst_for_unexpected(peer(RST)) is None
    assert rst_for_unexpected(peer(RST | ACK, ack=5)) is None


def test_rst_for_unexpected_takes_seq_from_the_ack() -> None:
    rst = rst_for_unexpected(peer(ACK | FIN, seq=100, ack=0xFFFFFFFF))
    assert rst is not None
    expect(rst, flags=RST, seq=0xFFFFFFFF, ack=0, window=0)


def test_rst_for_unexpected_acks_the_segment_length_without_ack() -> None:
    rst = rst_for_unexpected(peer(SYN | FIN, seq=0xFFFFFFFF, payload=b"abc"))
    assert rst is not None
    expect(rst, flags=RST | ACK, seq=0, ack=4)  # 3 bytes + SYN + FIN, wrapped


def test_replies_to_unacceptable_pure_acks_are_rate_limited() -> None:
    h = drive_to(S.ESTABLISHED)
    h.send(seg(R1 - 5000, L1))  # a stale duplicate ACK: answered once
    h.recv_one(flags=ACK, ack=R1)
    h.send(seg(R1 - 5000, L1))
    h.recv_nothing()  # again within 500 ms: silence, so two ends cannot feed an ACK storm
    h.send(seg(R1 - 5000, L1, payload=b"old data"))
    h.recv_one(flags=ACK, ack=R1)  # segments with data are always answered
    h.advance(500 * MS)
    h.send(seg(R1 - 5000, L1))
    h.recv_one(flags=ACK, ack=R1)
