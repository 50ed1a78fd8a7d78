"""Opening a connection: active, passive, simultaneous, and what goes wrong on the way."""

from __future__ import annotations

import pytest
from tcp_harness import (
    ACK, LOCAL_ISS, LOCAL_PORT, MS, REMOTE_ISS, REMOTE_PORT, RST, SYN,
    Harness, active_open, config, passive_open, seg,
)

from stack.tcpip.tcp import (
    Closed, Established, Reset, Retransmitted, StateChanged, TcpConfig, TcpConnection, TcpState, TcpStateError,
)

S = TcpState


def new(cfg: TcpConfig | None = None, iss: int = LOCAL_ISS) -> Harness:
    return Harness(TcpConnection(cfg or config(), LOCAL_PORT, REMOTE_PORT, iss))


def test_active_open_sends_syn_with_every_configured_option() -> None:
    h = new(TcpConfig(mss=1460, recv_buffer=65535 * 4, recv_buffer_max=None, time_wait_ns=1))
    h.conn.connect(0)
    assert h.state is S.SYN_SENT
    syn = h.recv_one(flags=SYN, seq=LOCAL_ISS, ack=0, window=65535, mss=1460, wscale=2, sack_permitted=True)
    assert syn.timestamps is not None and syn.timestamps[1] == 0
    assert h.conn.poll_at() == 1000 * MS  # initial RTO


def test_active_handshake_reaches_established_with_events() -> None:
    h = new()
    h.conn.connect(0)
    h.recv_one(flags=SYN)
    h.now = 40 * MS
    h.send(seg(REMOTE_ISS, LOCAL_ISS + 1, SYN | ACK, window=6000, mss=1200))
    h.recv_one(flags=ACK, seq=LOCAL_ISS + 1, ack=REMOTE_ISS + 1, window=8000)
    assert h.state is S.ESTABLISHED
    assert h.take_events() == [
        StateChanged(S.CLOSED, S.SYN_SENT), StateChanged(S.SYN_SENT, S.ESTABLISHED), Established(),
    ]
    assert (h.conn.snd_una, h.conn.snd_nxt, h.conn.rcv_nxt) == (LOCAL_ISS + 1, LOCAL_ISS + 1, REMOTE_ISS + 1)
    assert h.conn.snd_wnd == 6000 and h.conn.mss == 1000  # min(peer 1200, ours 1000)
    assert h.conn.srtt_ns == 40 * MS  # the SYN was timed
    assert h.conn.poll_at() is None


def test_passive_handshake_reaches_established() -> None:
    h = new()
    h.conn.open_passive(seg(REMOTE_ISS, None, SYN, window=5000, mss=900), 0)
    assert h.state is S.SYN_RECEIVED
    h.recv_one(flags=SYN | ACK, seq=LOCAL_ISS, ack=REMOTE_ISS + 1, window=8000, mss=1000)
    h.send(seg(REMOTE_ISS + 1, LOCAL_ISS + 1, window=5000))
    h.recv_nothing()
    assert h.state is S.ESTABLISHED
    assert h.take_events() == [
        StateChanged(S.LISTEN, S.SYN_RECEIVED), StateChanged(S.SYN_RECEIVED, S.ESTABLISHED), Established(),
    ]
    assert h.conn.mss == 900 and h.conn.snd_wnd == 5000


def test_third_ack_carrying_data_completes_handshake_and_delivers() -> None:
    h = new()
    h.conn.open_passive(seg(REMOTE_ISS, None, SYN, mss=1000), 0)
    h.recv_one(flags=SYN | ACK)
    h.send(seg(REMOTE_ISS + 1, LOCAL_ISS + 1, payload=b"GET /"))
    assert h.state is S.ESTABLISHED
    assert b"".join(h.conn.read(100)) == b"GET /"


def test_simultaneous_open() -> None:
    h = new()
    h.conn.connect(0)
    h.recv_one(flags=SYN, seq=LOCAL_ISS)
    h.send(seg(REMOTE_ISS, None, SYN, mss=1000))  # crossing SYN
    assert h.state is S.SYN_RECEIVED
    h.recv_one(flags=SYN | ACK, seq=LOCAL_ISS, ack=REMOTE_ISS + 1, mss=1000)
    h.send(seg(REMOTE_ISS, LOCAL_ISS + 1, SYN | ACK, mss=1000))  # the peer's SYN-ACK
    assert h.state is S.ESTABLISHED
    h.recv_nothing()
    assert h.conn.retransmissions == 0
    h.conn.send(b"x")
    h.recv_one(seq=LOCAL_ISS + 1, ack=REMOTE_ISS + 1, payload=b"x")


def test_simultaneous_open_completed_by_plain_ack() -> None:
    h = new()
    h.conn.connect(0)
    h.recv()
    h.send(seg(REMOTE_ISS, None, SYN, mss=1000))
    h.recv_one(flags=SYN | ACK)
    h.send(seg(REMOTE_ISS + 1, LOCAL_ISS + 1))
    assert h.state is S.ESTABLISHED


def test_syn_sent_answers_unacceptable_ack_with_rst() -> None:
    h = new()
    h.conn.connect(0)
    h.recv()
    h.send(seg(REMOTE_ISS, LOCAL_ISS + 77, SYN | ACK))
    h.recv_one(flags=RST, seq=LOCAL_ISS + 77)
    assert h.state is S.SYN_SENT


def test_syn_sent_rst_with_acceptable_ack_refuses_connection() -> None:
    h = new()
    h.conn.connect(0)
    h.recv()
    h.take_events()
    h.send(seg(0, LOCAL_ISS + 1, RST | ACK))
    assert h.state is S.CLOSED
    assert h.take_events() == [Reset("refused"), StateChanged(S.SYN_SENT, S.CLOSED), Closed()]
    h.recv_nothing()
    assert h.conn.poll_at() is None


def test_syn_sent_ignores_rst_without_ack_and_bare_ack() -> None:
    h = new()
    h.conn.connect(0)
    h.recv()
    h.send(seg(REMOTE_ISS, None, RST))
    assert h.state is S.SYN_SENT
    h.send(seg(REMOTE_ISS, LOCAL_ISS + 1))  # ACK without SYN: dropped
    assert h.state is S.SYN_SENT
    h.recv_nothing()


def test_syn_retransmission_backs_off_then_gives_up() -> None:
    h = new(config(syn_retries=2))
    h.conn.connect(0)
    h.recv_one(flags=SYN)
    h.take_events()
    assert h.fire_next_timer() == 1000 * MS
    h.recv_one(flags=SYN, seq=LOCAL_ISS)
    assert h.fire_next_timer() == 2000 * MS
    h.recv_one(flags=SYN, seq=LOCAL_ISS)
    assert h.take_events() == [Retransmitted(LOCAL_ISS, 1, "rto")] * 2
    assert h.fire_next_timer() == 4000 * MS
    h.recv_nothing()  # nothing to reset: the peer never answered
    assert h.state is S.CLOSED
    assert h.take_events() == [Reset("timeout"), StateChanged(S.SYN_SENT, S.CLOSED), Closed()]
    assert h.conn.timeouts == 2 and h.conn.retransmissions == 2


def test_initial_window_is_one_segment_after_a_lost_syn() -> None:
    h = new()
    h.conn.connect(0)
    h.recv()
    h.fire_next_timer()
    h.recv_one(flags=SYN)
    h.send(seg(REMOTE_ISS, LOCAL_ISS + 1, SYN | ACK, mss=1000))
    h.recv_one(flags=ACK)
    assert h.conn.cwnd == 1000  # RFC 5681 3.1 / RFC 6928
    assert h.conn.srtt_ns is None  # Karn: the retransmitted SYN gives no sample


def test_syn_received_resends_syn_ack_for_a_retransmitted_syn() -> None:
    h = new()
    h.conn.open_passive(seg(REMOTE_ISS, None, SYN, mss=1000), 0)
    h.recv_one(flags=SYN | ACK)
    h.send(seg(REMOTE_ISS, None, SYN, mss=1000))
    h.recv_one(flags=SYN | ACK, seq=LOCAL_ISS, ack=REMOTE_ISS + 1)
    assert h.state is S.SYN_RECEIVED


def test_syn_received_answers_bad_ack_with_rst() -> None:
    h = new()
    h.conn.open_passive(seg(REMOTE_ISS, None, SYN, mss=1000), 0)
    h.recv()
    h.send(seg(REMOTE_ISS + 1, LOCAL_ISS + 500))
    h.recv_one(flags=RST, seq=LOCAL_ISS + 500)
    assert h.state is S.SYN_RECEIVED


def test_syn_ack_retransmission_gives_up_after_syn_retries() -> None:
    h = new(config(syn_retries=1))
    h.conn.open_passive(seg(REMOTE_ISS, None, SYN, mss=1000), 0)
    h.recv_one(flags=SYN | ACK)
    h.fire_next_timer()
    h.recv_one(flags=SYN | ACK)
    h.fire_next_timer()
    h.recv_one(flags=RST, seq=LOCAL_ISS + 1)
    assert h.state is S.CLOSED


def test_connect_twice_is_a_state_error() -> None:
    h = active_open()
    with pytest.raises(TcpStateError):
        h.conn.connect(0)


def test_data_queued_before_established_leaves_after_handshake() -> None:
    h = new()
    h.conn.connect(0)
    h.conn.send(b"early")
    h.recv_one(flags=SYN, payload=b"")
    h.send(seg(REMOTE_ISS, LOCAL_ISS + 1, SYN | ACK, mss=1000))
    h.recv_one(flags=ACK | 0x08, seq=LOCAL_ISS + 1, payload=b"early")


def test_passive_open_established_helper_is_quiet() -> None:
    h = passive_open()
    assert h.conn.poll_at() is None
    expect_state = h.conn.snapshot()
    assert expect_state["state"] == "ESTABLISHED" and expect_state["segments_sent"] == 1
