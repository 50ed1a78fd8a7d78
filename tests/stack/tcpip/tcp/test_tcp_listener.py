"""The passive side: SYN queue, accept backlog, resets to stray segments."""

from __future__ import annotations

import itertools

import pytest
from tcp_harness import ACK, FIN, LOCAL_PORT, REMOTE_ISS, RST, SYN, config, expect, seg

from stack.tcpip.tcp import TcpConfigError, TcpListener, TcpSegment, TcpState


def listener(backlog: int = 2, syn_queue: int = 2) -> TcpListener:
    counter = itertools.count(1000, 1000)
    return TcpListener(config(), LOCAL_PORT, backlog=backlog, syn_queue=syn_queue, iss_source=lambda: next(counter))


def syn_from(port: int) -> TcpSegment:
    s = seg(REMOTE_ISS, None, SYN, mss=1000)
    s.src_port = port
    return s


def complete(conn_ack_port: int, conn) -> None:  # type: ignore[no-untyped-def]
    out = conn.poll_output(0)
    assert len(out) == 1 and out[0].flags == SYN | ACK
    ack = seg(REMOTE_ISS + 1, out[0].seq + 1)
    ack.src_port = conn_ack_port
    conn.on_segment(ack, 0)


def test_syn_creates_connection_in_syn_received() -> None:
    lst = listener()
    conn = lst.on_segment(syn_from(40000), 0)
    assert conn is not None and conn.state is TcpState.SYN_RECEIVED
    assert conn.iss == 1000 and conn.remote_port == 40000 and conn.local_port == LOCAL_PORT
    assert lst.pending_handshakes == 1 and lst.accept() is None
    complete(40000, conn)
    assert conn.state is TcpState.ESTABLISHED
    assert lst.ready_to_accept == 1
    assert lst.accept() is conn and lst.accept() is None


def test_syn_queue_full_drops_new_syns() -> None:
    lst = listener(backlog=5, syn_queue=2)
    assert lst.on_segment(syn_from(1), 0) is not None
    assert lst.on_segment(syn_from(2), 0) is not None
    assert lst.on_segment(syn_from(3), 0) is None
    assert lst.syns_dropped_syn_queue_full == 1
    assert lst.poll_output(0) == []  # dropped silently: the client retries


def test_backlog_full_refuses_new_syns_with_rst_until_accept() -> None:
    # Windows answers a SYN that finds the accept backlog full with RST|ACK (SEQ=0, ACK=SYN+1): the
    # client's connect fails with WSAECONNREFUSED (KB 113576; Linux would drop the SYN instead).
    lst = listener(backlog=1, syn_queue=4)
    conn = lst.on_segment(syn_from(1), 0)
    assert conn is not None
    complete(1, conn)
    assert lst.on_segment(syn_from(2), 0) is None
    assert lst.syns_refused_backlog_full == 1
    [rst] = lst.poll_output(0)
    assert rst.flags == RST | ACK and rst.seq == 0 and rst.ack == REMOTE_ISS + 1 and rst.dst_port == 2
    assert lst.accept() is conn
    assert lst.on_segment(syn_from(2), 0) is not None


def test_connection_dead_in_the_backlog_frees_its_place() -> None:
    lst = listener(backlog=1, syn_queue=4)
    conn = lst.on_segment(syn_from(1), 0)
    assert conn is not None
    complete(1, conn)
    conn.abort(0)  # the peer reset it before anyone accepted it
    assert lst.on_segment(syn_from(2), 0) is not None
    assert lst.syns_refused_backlog_full == 0


def test_failed_handshake_leaves_the_syn_queue() -> None:
    lst = listener(syn_queue=1)
    conn = lst.on_segment(syn_from(1), 0)
    assert conn is not None
    conn.poll_output(0)
    rst = seg(REMOTE_ISS + 1, None, RST)
    rst.src_port = 1
    conn.on_segment(rst, 0)
    assert conn.state is TcpState.CLOSED
    assert lst.pending_handshakes == 0
    assert lst.on_segment(syn_from(2), 0) is not None
    assert lst.accept() is None


def test_ack_to_listener_gets_rst() -> None:
    lst = listener()
    assert lst.on_segment(seg(5, 4242, ACK), 0) is None
    (rst,) = lst.poll_output(0)
    expect(rst, flags=RST, seq=4242)
    assert lst.resets_sent == 1


@pytest.mark.parametrize("flags", [RST, RST | ACK, FIN, 0])
def test_listener_ignores_rst_and_flagless_segments(flags: int) -> None:
    lst = listener()
    assert lst.on_segment(seg(5, 1 if flags & ACK else None, flags), 0) is None
    assert lst.poll_output(0) == []


def test_listener_rejects_bad_limits() -> None:
    with pytest.raises(TcpConfigError):
        TcpListener(config(), 80, backlog=0, syn_queue=1, iss_source=lambda: 0)
