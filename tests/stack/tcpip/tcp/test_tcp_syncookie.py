"""SYN attack protection in the listener: a full SYN queue switches to SYN cookies
(no state per SYN), the returning ACK is validated, and forged ACKs are refused."""

from __future__ import annotations

import itertools

from tcp_harness import ACK, LOCAL_PORT, REMOTE_ISS, RST, SYN, config, seg

from stack.tcpip.tcp import TcpConnection, TcpListener, TcpSegment, TcpState
from stack.tcpip.tcp.listener import PROTECTION_HOLD_NS
from stack.tcpip.tcp.syncookie import COUNTER_NS, MSS_TABLE, check_cookie, make_cookie, mss_index

SECRET = bytes(range(16))
ADDRS = bytes([10, 0, 0, 2, 10, 0, 0, 1])


def listener(syn_queue: int = 2, backlog: int = 8) -> TcpListener:
    counter = itertools.count(1000, 1000)
    return TcpListener(config(), LOCAL_PORT, backlog=backlog, syn_queue=syn_queue,
                       iss_source=lambda: next(counter), syn_cookie_secret=SECRET)


def syn_from(port: int, isn: int = REMOTE_ISS, mss: int = 1460) -> TcpSegment:
    s = seg(isn, None, SYN, mss=mss, wscale=7, sack_permitted=True, timestamps=(5, 0))
    s.src_port = port
    return s


def ack_from(port: int, isn: int, cookie: int, payload: bytes = b"") -> TcpSegment:
    s = seg(isn + 1, cookie + 1, ACK, payload=payload)
    s.src_port = port
    return s


def fill_syn_queue(lst: TcpListener, now: int = 0) -> None:
    for port in range(1, lst.syn_queue_limit + 1):
        assert lst.on_segment(syn_from(port), now, ADDRS) is not None


def test_cookie_round_trips_the_mss_rounded_down_and_expires_after_two_counters() -> None:
    cookie = make_cookie(SECRET, ADDRS, 40000, 80, 777, 1400, 0)
    assert check_cookie(SECRET, ADDRS, 40000, 80, 777, cookie, 0) == 1400
    assert check_cookie(SECRET, ADDRS, 40000, 80, 777, cookie, COUNTER_NS + 5) == 1400
    assert check_cookie(SECRET, ADDRS, 40000, 80, 777, cookie, 2 * COUNTER_NS) is None
    assert MSS_TABLE[mss_index(1459)] == 1452 and MSS_TABLE[mss_index(100)] == 536


def test_cookie_is_bound_to_addresses_ports_peer_isn_and_secret() -> None:
    cookie = make_cookie(SECRET, ADDRS, 40000, 80, 777, 1460, 0)
    assert check_cookie(SECRET, ADDRS, 40001, 80, 777, cookie, 0) is None
    assert check_cookie(SECRET, ADDRS, 40000, 80, 778, cookie, 0) is None
    assert check_cookie(SECRET, bytes(8), 40000, 80, 777, cookie, 0) is None
    assert check_cookie(bytes(16), ADDRS, 40000, 80, 777, cookie, 0) is None


def test_full_syn_queue_switches_protection_on_and_answers_with_a_stateless_cookie_syn_ack() -> None:
    lst = listener()
    fill_syn_queue(lst)
    assert not lst.protection_active(0)
    assert lst.on_segment(syn_from(99, isn=4242), 0, ADDRS) is None
    assert lst.protection_active(0) and lst.protection_activations == 1
    assert lst.pending_handshakes == 2  # no state was kept for the third SYN
    (reply,) = lst.poll_output(0)
    assert reply.flags == SYN | ACK and reply.ack == 4243 and reply.dst_port == 99
    assert reply.mss == 1000 and reply.wscale is None and not reply.sack_permitted and reply.timestamps is None
    assert check_cookie(SECRET, ADDRS, 99, LOCAL_PORT, 4242, reply.seq, 0) == 1460  # the peer's MSS
    assert lst.syn_cookies_sent == 1 and lst.syns_dropped_syn_queue_full == 0


def test_ack_of_a_valid_cookie_creates_an_established_connection_ready_to_accept() -> None:
    lst = listener()
    fill_syn_queue(lst)
    lst.on_segment(syn_from(99, isn=4242, mss=1400), 0, ADDRS)
    (reply,) = lst.poll_output(0)
    conn = lst.on_segment(ack_from(99, 4242, reply.seq), 5, ADDRS)
    assert isinstance(conn, TcpConnection) and conn.state is TcpState.ESTABLISHED
    assert conn.iss == reply.seq and conn.irs == 4242 and conn.mss == 1000  # min(ours 1000, cookie's 1400)
    assert not conn.timestamps_enabled and not conn.sack_enabled and conn.snd_wscale == 0
    assert lst.syn_cookies_accepted == 1 and lst.accept() is conn
    assert conn.poll_output(5) == []  # nothing to resend: the handshake is complete


def test_cookie_ack_with_data_delivers_the_data() -> None:
    lst = listener()
    fill_syn_queue(lst)
    lst.on_segment(syn_from(99, isn=4242), 0, ADDRS)
    (reply,) = lst.poll_output(0)
    conn = lst.on_segment(ack_from(99, 4242, reply.seq, b"GET / HTTP/1.0\r\n\r\n"), 5, ADDRS)
    assert conn is not None and conn.recv_available() == 18


def test_forged_or_stale_cookie_ack_is_answered_with_rst_and_creates_nothing() -> None:
    lst = listener()
    fill_syn_queue(lst)
    lst.on_segment(syn_from(99, isn=4242), 0, ADDRS)
    (reply,) = lst.poll_output(0)
    assert lst.on_segment(ack_from(99, 4242, reply.seq ^ 0x55), 5, ADDRS) is None
    (rst,) = lst.poll_output(5)
    assert rst.flags & RST and lst.syn_cookies_rejected == 1
    assert lst.on_segment(ack_from(99, 4242, reply.seq), 2 * COUNTER_NS, ADDRS) is None  # too old
    assert lst.ready_to_accept == 0


def test_protection_switches_off_after_the_hold_time_and_counts_each_activation() -> None:
    lst = listener(syn_queue=1)
    fill_syn_queue(lst)
    lst.on_segment(syn_from(50), 0, ADDRS)
    lst.on_segment(syn_from(51), 1000, ADDRS)
    assert lst.protection_activations == 1
    assert not lst.protection_active(PROTECTION_HOLD_NS + 1000)
    lst.on_segment(syn_from(52), PROTECTION_HOLD_NS + 1000, ADDRS)  # queue still full: on again
    assert lst.protection_activations == 2


def test_without_a_secret_a_full_syn_queue_still_drops_syns() -> None:
    counter = itertools.count(1000, 1000)
    lst = TcpListener(config(), LOCAL_PORT, backlog=4, syn_queue=1, iss_source=lambda: next(counter))
    assert lst.on_segment(syn_from(1), 0) is not None
    assert lst.on_segment(syn_from(2), 0) is None
    assert lst.syns_dropped_syn_queue_full == 1 and lst.poll_output(0) == []


def test_syn_ack_retransmission_timer_adds_the_jitter_it_is_given() -> None:
    plain = TcpConnection(config(), LOCAL_PORT, 40000, 1000)
    jittered = TcpConnection(config(), LOCAL_PORT, 40000, 1000, syn_jitter=lambda rto: rto // 4)
    for conn in (plain, jittered):
        conn.open_passive(syn_from(40000), 0)
        conn.poll_output(0)
    assert jittered.poll_at() == plain.poll_at() + plain.poll_at() // 4
    for conn in (plain, jittered):
        conn.on_timer(conn.poll_at())
        conn.poll_output(conn.poll_at())
    assert jittered.poll_at() > plain.poll_at()


def test_cookie_ack_finding_the_backlog_full_is_reset_not_dropped() -> None:
    # With SYN attack protection on, the handshake completes first; Windows then finds the backlog
    # exceeded and resets the connection (the client's next call fails with WSAECONNRESET).
    lst = listener(backlog=1)
    fill_syn_queue(lst)
    lst.on_segment(syn_from(99, isn=4242), 0, ADDRS)
    (first,) = lst.poll_output(0)
    lst.on_segment(syn_from(98, isn=5000), 0, ADDRS)
    (second,) = lst.poll_output(0)
    assert lst.on_segment(ack_from(99, 4242, first.seq), 5, ADDRS) is not None  # the backlog's one place
    assert lst.on_segment(ack_from(98, 5000, second.seq), 5, ADDRS) is None
    (rst,) = lst.poll_output(5)
    assert rst.flags == RST and rst.seq == second.seq + 1 and rst.dst_port == 98
    assert lst.resets_backlog_full == 1 and lst.syns_refused_backlog_full == 0
